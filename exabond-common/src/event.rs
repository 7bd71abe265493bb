//! Records sent by the eBPF programs to the agent through the `EVENTS` ring buffer.
//!
//! Every record starts with an [`EventHeader`] whose `kind` says which payload follows; the userspace
//! decoder checks the size and the kind before it reinterprets the bytes.

/// Kinds of records. The numbers are part of the eBPF/userspace contract: never reuse one.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// `bond_change_active_slave` entered with a new active slave different from the current one
    /// (payload: [`FailoverEvent`]).
    Failover = 1,
    /// A BPF LSM program refused an operation on a managed bond (payload: [`VetoEvent`]).
    Veto = 2,
    /// `bond_option_mode_set` entered for a managed bond (payload: [`ModeSetEvent`]).
    ModeSet = 3,
}

impl EventKind {
    /// The kind for a raw tag, if known.
    #[must_use]
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Failover),
            2 => Some(Self::Veto),
            3 => Some(Self::ModeSet),
            _ => None,
        }
    }
}

/// Common header of every ring-buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EventHeader {
    /// An [`EventKind`] as `u32`.
    pub kind: u32,
    /// Thread-group id of the task that was running when the hook fired.
    pub tgid: u32,
    /// `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) when the hook fired.
    pub ktime_ns: u64,
    /// `comm` of that task, NUL padded.
    pub comm: [u8; 16],
}

/// The bonding driver is switching the active slave of a bond (probe at the entry of
/// `bond_change_active_slave`, so before the kernel's own rtnetlink notification).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FailoverEvent {
    /// Header; `kind` is [`EventKind::Failover`].
    pub header: EventHeader,
    /// ifindex of the bond master.
    pub bond_ifindex: u32,
    /// ifindex of the active slave before the change, 0 if there was none.
    pub old_ifindex: u32,
    /// ifindex of the new active slave, 0 if none (all slaves down).
    pub new_ifindex: u32,
    /// Explicit padding, always 0.
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a repr(C) record, public for struct literals"
    )]
    pub _pad: u32,
}

/// What a veto refused (`VetoEvent::what`). Fixed ids, never reused.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VetoWhat {
    /// A write of a mode other than active-backup to sysfs `bonding/mode`.
    ModeSysfs = 1,
    /// An rtnetlink `IFLA_BOND_MODE` other than active-backup.
    ModeNetlink = 2,
    /// `+dev` written to sysfs `bonding/slaves` for a device the policy refuses.
    MemberSysfs = 3,
    /// rtnetlink `IFLA_MASTER` naming a managed bond for a device the policy refuses.
    MemberNetlink = 4,
    /// The SIOCBONDENSLAVE ioctl for a device the policy refuses.
    MemberIoctl = 5,
    /// A write to a guarded sysfs file through a path whose content cannot be checked (splice,
    /// `io_uring`, sendfile, ...): write(2), pwrite64(2), writev(2), pwritev(2) and pwritev2(2) are inspected.
    UncheckedWritePath = 6,
    /// A bond page opened for writing by a process other than the agent.
    PageOpenWrite = 7,
    /// A bond page's attributes (mode, owner, size: chmod, chown, truncate) changed by another process.
    PageSetattr = 8,
    /// A bond page unlinked by another process.
    PageUnlink = 9,
    /// A bond page renamed, or replaced by a rename, by another process.
    PageRename = 10,
    /// A writable mapping of a bond page (mmap or mprotect) by another process.
    PageMapWrite = 11,
    /// A request about a guarded object that the veto could not read or parse completely (user memory
    /// not faulted in, more messages or attributes than it reads, a batch that renames or re-numbers
    /// devices before enslaving one, a namespace move together with a master): refused, fail closed.
    Unparseable = 12,
    /// A writable mapping of the fast words (`FAST_WORDS`) by a process other than the agent.
    FastMapWrite = 13,
}

impl VetoWhat {
    /// From the raw value.
    #[must_use]
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::ModeSysfs),
            2 => Some(Self::ModeNetlink),
            3 => Some(Self::MemberSysfs),
            4 => Some(Self::MemberNetlink),
            5 => Some(Self::MemberIoctl),
            6 => Some(Self::UncheckedWritePath),
            7 => Some(Self::PageOpenWrite),
            8 => Some(Self::PageSetattr),
            9 => Some(Self::PageUnlink),
            10 => Some(Self::PageRename),
            11 => Some(Self::PageMapWrite),
            12 => Some(Self::Unparseable),
            13 => Some(Self::FastMapWrite),
            _ => None,
        }
    }

    /// A short description for logs.
    #[must_use]
    pub const fn describe(self) -> &'static str {
        match self {
            Self::ModeSysfs => "mode change via sysfs",
            Self::ModeNetlink => "mode change via rtnetlink",
            Self::MemberSysfs => "member added via sysfs",
            Self::MemberNetlink => "member added via rtnetlink",
            Self::MemberIoctl => "member added via SIOCBONDENSLAVE",
            Self::UncheckedWritePath => "write to a guarded file by an uncheckable path",
            Self::PageOpenWrite => "bond page opened for writing",
            Self::PageSetattr => "bond page attributes changed (chmod/chown/truncate)",
            Self::PageUnlink => "bond page removed",
            Self::PageRename => "bond page renamed or replaced",
            Self::PageMapWrite => "writable mapping of a bond page",
            Self::Unparseable => "request that cannot be inspected completely (fail closed)",
            Self::FastMapWrite => "writable mapping of the fast words",
        }
    }
}

/// A BPF LSM program refused an operation; the caller's syscall failed with `-errno`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VetoEvent {
    /// Header; `kind` is [`EventKind::Veto`].
    pub header: EventHeader,
    /// A [`VetoWhat`].
    pub what: u32,
    /// ifindex of the managed bond concerned (0 if unknown).
    pub bond_ifindex: u32,
    /// ifindex of the refused member (0 if unknown or not applicable).
    pub member_ifindex: u32,
    /// The errno returned.
    pub errno: u32,
    /// The refused value: member name, or the mode as written (NUL padded; for netlink the mode number
    /// in the first byte).
    pub detail: [u8; 16],
}

/// The bonding driver is setting a managed bond's mode (audit; the change is not refused here).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModeSetEvent {
    /// Header; `kind` is [`EventKind::ModeSet`].
    pub header: EventHeader,
    /// ifindex of the bond.
    pub bond_ifindex: u32,
    /// The new mode (1 = active-backup).
    pub mode: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::{EventHeader, EventKind, FailoverEvent, ModeSetEvent, VetoEvent};

    // SAFETY: plain `#[repr(C)]` integers and byte arrays with no implicit padding.
    unsafe impl aya::Pod for EventHeader {}
    // SAFETY: as above; `_pad` makes the padding explicit.
    unsafe impl aya::Pod for FailoverEvent {}
    // SAFETY: u32 fields and a byte array after a 32-byte header: no padding.
    unsafe impl aya::Pod for VetoEvent {}
    // SAFETY: two u32 after a 32-byte header: no padding.
    unsafe impl aya::Pod for ModeSetEvent {}

    /// A decoded ring-buffer record.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Event {
        /// See [`FailoverEvent`].
        Failover(FailoverEvent),
        /// See [`VetoEvent`].
        Veto(VetoEvent),
        /// See [`ModeSetEvent`].
        ModeSet(ModeSetEvent),
    }

    /// Why a ring-buffer record could not be decoded.
    #[derive(Debug, thiserror::Error, PartialEq, Eq)]
    pub enum DecodeError {
        /// Shorter than the header or than its kind's payload.
        #[error("event record of {got} bytes is shorter than the {need} bytes its kind needs")]
        TooShort {
            /// Bytes received.
            got: usize,
            /// Bytes needed.
            need: usize,
        },
        /// The kind tag is not one this agent knows (eBPF object and agent out of sync).
        #[error("unknown event kind {0}: the eBPF object and the agent are out of sync")]
        UnknownKind(u32),
    }

    fn read<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
        let need = core::mem::size_of::<T>();
        if bytes.len() < need {
            return Err(DecodeError::TooShort { got: bytes.len(), need });
        }
        // SAFETY: the length was checked; `T` is a Pod record (any bit pattern is valid) and
        // read_unaligned does not need alignment.
        Ok(unsafe { core::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
    }

    impl Event {
        /// Decode one ring-buffer record, checking its size and kind.
        ///
        /// # Errors
        /// [`DecodeError`] when the record is too short or of an unknown kind.
        pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
            let header: EventHeader = read(bytes)?;
            match EventKind::from_u32(header.kind) {
                Some(EventKind::Failover) => Ok(Self::Failover(read(bytes)?)),
                Some(EventKind::Veto) => Ok(Self::Veto(read(bytes)?)),
                Some(EventKind::ModeSet) => Ok(Self::ModeSet(read(bytes)?)),
                None => Err(DecodeError::UnknownKind(header.kind)),
            }
        }

        /// The common header.
        #[must_use]
        pub const fn header(&self) -> &EventHeader {
            match self {
                Self::Failover(f) => &f.header,
                Self::Veto(v) => &v.header,
                Self::ModeSet(m) => &m.header,
            }
        }
    }
}

#[cfg(feature = "user")]
pub use user::{DecodeError, Event};

#[cfg(all(test, feature = "user"))]
mod tests {
    use super::*;

    fn bytes<T>(v: &T) -> &[u8] {
        // SAFETY: test helper over Pod records.
        unsafe { core::slice::from_raw_parts(core::ptr::from_ref(v).cast::<u8>(), core::mem::size_of::<T>()) }
    }

    #[test]
    fn failover_round_trip() {
        let ev = FailoverEvent {
            header: EventHeader {
                kind: EventKind::Failover as u32,
                tgid: 7,
                ktime_ns: 42,
                comm: *b"kworker/0:1\0\0\0\0\0",
            },
            bond_ifindex: 3,
            old_ifindex: 4,
            new_ifindex: 5,
            _pad: 0,
        };
        assert_eq!(Event::decode(bytes(&ev)), Ok(Event::Failover(ev)));
        assert_eq!(Event::decode(bytes(&ev)).unwrap().header().ktime_ns, 42);
    }

    #[test]
    fn rejects_short_and_unknown() {
        let ev = FailoverEvent { header: EventHeader { kind: 1, ..Default::default() }, ..Default::default() };
        let b = bytes(&ev);
        assert_eq!(
            Event::decode(&b[..40]),
            Err(DecodeError::TooShort { got: 40, need: core::mem::size_of::<FailoverEvent>() })
        );
        assert!(matches!(Event::decode(&b[..10]), Err(DecodeError::TooShort { .. })));
        let mut other = ev;
        other.header.kind = 99;
        assert_eq!(Event::decode(bytes(&other)), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn layout_is_fixed() {
        assert_eq!(core::mem::size_of::<EventHeader>(), 32);
        assert_eq!(core::mem::size_of::<FailoverEvent>(), 48);
        assert_eq!(core::mem::offset_of!(FailoverEvent, bond_ifindex), 32);
        assert_eq!(core::mem::offset_of!(FailoverEvent, new_ifindex), 40);
        assert_eq!(core::mem::size_of::<VetoEvent>(), 64);
        assert_eq!(core::mem::offset_of!(VetoEvent, detail), 48);
    }
}
