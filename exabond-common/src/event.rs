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
}

impl EventKind {
    /// The kind for a raw tag, if known.
    #[must_use]
    pub const fn from_u32(v: u32) -> Option<Self> {
        match v {
            1 => Some(Self::Failover),
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
    /// `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) when the hook fired.
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
    pub _pad: u32,
}

#[cfg(feature = "user")]
mod user {
    use super::{EventHeader, EventKind, FailoverEvent};

    // SAFETY: plain `#[repr(C)]` integers and byte arrays with no implicit padding.
    unsafe impl aya::Pod for EventHeader {}
    // SAFETY: as above; `_pad` makes the padding explicit.
    unsafe impl aya::Pod for FailoverEvent {}

    /// A decoded ring-buffer record.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Event {
        /// See [`FailoverEvent`].
        Failover(FailoverEvent),
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
            return Err(DecodeError::TooShort {
                got: bytes.len(),
                need,
            });
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
                None => Err(DecodeError::UnknownKind(header.kind)),
            }
        }

        /// The common header.
        #[must_use]
        pub const fn header(&self) -> &EventHeader {
            match self {
                Self::Failover(f) => &f.header,
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
        unsafe {
            core::slice::from_raw_parts((v as *const T).cast::<u8>(), core::mem::size_of::<T>())
        }
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
        let ev = FailoverEvent {
            header: EventHeader {
                kind: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let b = bytes(&ev);
        assert_eq!(
            Event::decode(&b[..40]),
            Err(DecodeError::TooShort {
                got: 40,
                need: core::mem::size_of::<FailoverEvent>()
            })
        );
        assert!(matches!(
            Event::decode(&b[..10]),
            Err(DecodeError::TooShort { .. })
        ));
        let mut other = ev;
        other.header.kind = 99;
        assert_eq!(
            Event::decode(bytes(&other)),
            Err(DecodeError::UnknownKind(99))
        );
    }

    #[test]
    fn layout_is_fixed() {
        assert_eq!(core::mem::size_of::<EventHeader>(), 32);
        assert_eq!(core::mem::size_of::<FailoverEvent>(), 48);
        assert_eq!(core::mem::offset_of!(FailoverEvent, bond_ifindex), 32);
        assert_eq!(core::mem::offset_of!(FailoverEvent, new_ifindex), 40);
    }
}
