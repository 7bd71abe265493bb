//! The fast word: the kernel publishes each managed bond's legacy word itself.
//!
//! The failover probe (`exabond-ebpf/src/failover.rs`), at the entry of `bond_change_active_slave`,
//! writes the bond's new legacy word, active ifindex, the kernel's time of the change and a sequence into
//! the bond's [`FastSlot`] of `FAST_WORDS`, a `BPF_F_MMAPABLE` array map that readers map read-only. No
//! user-space hop: a reader sees the change one cache-line transfer after the kernel decided it. The agent
//! hands readers a descriptor of the map over its reader socket ([`READER_SOCKET`], since unprivileged
//! `bpf()` is off on Debian), with the slot and epoch of the bond asked for. The descriptor is not a
//! read-only one: the kernel maps no read-only BPF map descriptor (`mmap` drops `VM_SHARED` for a file
//! without `FMODE_WRITE` and `bpf_map_mmap` then says EINVAL, on 6.1 and 6.12). The agent's page guard
//! (BPF LSM `mmap_file`) refuses anyone else a writable mapping of the map; without the BPF LSM only root
//! readers get it.
//!
//! # Who writes what
//!
//! A slot has a kernel half and an agent half, written by different parties, never the same bytes:
//!
//! | offset | field | writer |
//! |---|---|---|
//! | 0 | `word` | kernel: the legacy word, as the page's (bits 0–15 flags, 16–23 `SmartNIC` id, 24–31 port) |
//! | 4 | `epoch` | agent: odd while the slot belongs to the bond it was handed out for; changed (to even) when the bond is unmanaged or the slot cannot be trusted |
//! | 8 | `seq` | kernel: odd while the kernel half is written |
//! | 16 | `active_ifindex` | kernel: the active slave as the page shows it (0: none, or one the agent has not judged allowed) |
//! | 20 | `flags` | kernel: [`FAST_ACTIVE`], [`FAST_UNJUDGED`] |
//! | 24 | `kernel_ns` | kernel: `bpf_ktime_get_ns()` (`CLOCK_MONOTONIC`) of the last change |
//! | 32 | `changes` | kernel: changes written since the slot was handed out |
//! | 40 | `kernel_ifindex` | kernel: the kernel's own active slave (0: none), judged or not |
//! | 44 | `bond_ifindex` | agent |
//! | 48 | `netns` | agent: the bond's network namespace (inode number) |
//! | 52 | reserved | |
//!
//! Every kernel write runs under RTNL (the failover probe inside `bond_change_active_slave`, and the refresh
//! probe at the bonding driver's `ETHTOOL_GDRVINFO` handler, called by `dev_ethtool` under RTNL and checked to
//! be), so there is one kernel writer at a time per slot and it never races the kernel's own change of
//! `curr_active_slave`. The agent corrects a slot only by asking the kernel: an `ETHTOOL_GDRVINFO` ioctl
//! on the bond makes the refresh probe re-derive the slot from `curr_active_slave` (after the agent placed a
//! bond under management, or changed a member's word in `MEMBER_WORDS`).
//!
//! # Semantics
//!
//! - The word is the page's legacy word, computed by the kernel from the agent's `MEMBER_WORDS` (the word
//!   each judged-allowed member of a managed bond shows when active). A member with no entry (refused, or
//!   not judged yet) is shown as "no active slave" ([`FAST_UNJUDGED`]), as the page shows it; no active
//!   slave clears the flags and keeps the last id and port, as the original did.
//! - The word can lead the kernel's own state by the few microseconds `bond_change_active_slave` takes to
//!   swap the pointer after the probe fired at its entry, and it leads the page by the agent's latency.
//! - Hot loops compare the 64-bit value at offset 0 (word and epoch) with the one they saw last: one load.
//!   A change of epoch means the slot no longer speaks for the bond: read the page instead.

/// Number of slots in `FAST_WORDS` (one per managed bond; a slot is handed out again only after every
/// never-used one, so a reader that still maps a retired slot sees a changed epoch).
pub const FAST_SLOTS: u32 = 1024;
/// Size of one slot: one cache line.
pub const FAST_SLOT_SIZE: usize = 64;
/// [`FAST_SLOT_SIZE`] as the replies carry it.
pub const FAST_SLOT_SIZE_U32: u32 = 64;
const _: () = assert!(FAST_SLOT_SIZE_U32 as usize == FAST_SLOT_SIZE);
/// Bytes a reader maps: every slot (the map's values start at offset 0 of its mapping).
pub const FAST_MAP_BYTES: usize = FAST_SLOTS as usize * FAST_SLOT_SIZE;

/// `flags`: an active slave exists and is shown (the word has its ACTIVE bit).
pub const FAST_ACTIVE: u32 = 1;
/// `flags`: the kernel's active slave has no word in `MEMBER_WORDS` (refused, or not judged yet): shown as
/// no active slave until the agent judges it.
pub const FAST_UNJUDGED: u32 = 2;

/// The reader socket: a stream socket any local process may connect to; it answers a [`FastRequest`] with
/// a [`FastReply`] and, on success, a descriptor of `FAST_WORDS` (`SCM_RIGHTS`) to map read-only.
pub const READER_SOCKET: &str = "/run/exabond/reader.sock";

/// One bond's slot in `FAST_WORDS`.
#[repr(C, align(64))]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastSlot {
    /// Kernel: the legacy word.
    pub word: u32,
    /// Agent: odd while the slot speaks for the bond it was handed out for.
    pub epoch: u32,
    /// Kernel: odd while the kernel half is written.
    pub seq: u64,
    /// Kernel: the active slave as the page shows it, 0 if none.
    pub active_ifindex: u32,
    /// Kernel: [`FAST_ACTIVE`], [`FAST_UNJUDGED`].
    pub flags: u32,
    /// Kernel: `CLOCK_MONOTONIC` ns of the last change (the probe's `bpf_ktime_get_ns()`).
    pub kernel_ns: u64,
    /// Kernel: changes written since the slot was handed out.
    pub changes: u64,
    /// Kernel: the kernel's active slave, judged or not (0: none).
    pub kernel_ifindex: u32,
    /// Agent: the bond's ifindex.
    pub bond_ifindex: u32,
    /// Agent: the bond's network namespace (inode number).
    pub netns: u32,
    /// Reserved, zero.
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a repr(C) record, public for struct literals"
    )]
    pub _reserved: [u32; 3],
}

const _: () = assert!(core::mem::size_of::<FastSlot>() == FAST_SLOT_SIZE);
const _: () = assert!(core::mem::offset_of!(FastSlot, word) == 0 && core::mem::offset_of!(FastSlot, epoch) == 4);
const _: () = assert!(core::mem::offset_of!(FastSlot, seq) == 8);
const _: () = assert!(core::mem::offset_of!(FastSlot, active_ifindex) == 16);
const _: () = assert!(core::mem::offset_of!(FastSlot, flags) == 20);
const _: () = assert!(core::mem::offset_of!(FastSlot, kernel_ns) == 24);
const _: () = assert!(core::mem::offset_of!(FastSlot, changes) == 32);
const _: () = assert!(core::mem::offset_of!(FastSlot, kernel_ifindex) == 40);
const _: () = assert!(core::mem::offset_of!(FastSlot, bond_ifindex) == 44);
const _: () = assert!(core::mem::offset_of!(FastSlot, netns) == 48);

/// Magic of a [`FastRequest`] and a [`FastReply`]: the bytes `EXFW`.
pub const FAST_MAGIC: u32 = u32::from_le_bytes(*b"EXFW");
/// Version of the reader socket's messages.
pub const FAST_PROTOCOL: u32 = 1;

/// What a reader sends: the bond whose slot it wants (a name in the agent's network namespace).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastRequest {
    /// [`FAST_MAGIC`].
    pub magic: u32,
    /// [`FAST_PROTOCOL`].
    pub version: u32,
    /// The bond's name, NUL padded.
    pub bond: [u8; 16],
}

/// [`FastReply::status`]: the descriptor follows.
pub const FAST_OK: i32 = 0;
/// [`FastReply::status`]: the request is not one this agent understands (magic, version, name).
pub const FAST_ERR_REQUEST: i32 = 1;
/// [`FastReply::status`]: no managed bond has that name.
pub const FAST_ERR_NOT_MANAGED: i32 = 2;
/// [`FastReply::status`]: the kernel does not publish the word now (eBPF off, or the failover probe
/// detached): read the page.
pub const FAST_ERR_UNAVAILABLE: i32 = 3;
/// [`FastReply::status`]: the agent runs without the BPF LSM, so nothing would stop a reader from mapping
/// the words writable: it gives them to root only.
pub const FAST_ERR_ROOT_ONLY: i32 = 4;

/// What the agent answers.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FastReply {
    /// [`FAST_MAGIC`].
    pub magic: u32,
    /// [`FAST_PROTOCOL`].
    pub version: u32,
    /// [`FAST_OK`] or a `FAST_ERR_*`.
    pub status: i32,
    /// The bond's slot.
    pub slot: u32,
    /// The slot's epoch now: the slot speaks for the bond while its epoch stays this.
    pub epoch: u32,
    /// The bond's ifindex.
    pub bond_ifindex: u32,
    /// Slots in the map ([`FAST_SLOTS`]).
    pub slots: u32,
    /// Bytes per slot ([`FAST_SLOT_SIZE`]).
    pub slot_size: u32,
}

const _: () = assert!(core::mem::size_of::<FastRequest>() == 24 && core::mem::size_of::<FastReply>() == 32);

impl FastRequest {
    /// A request for `bond` (`None` if the name does not fit).
    #[must_use]
    pub fn new(bond: &str) -> Option<Self> {
        let b = bond.as_bytes();
        if b.is_empty() || b.len() > 15 {
            return None;
        }
        let mut name = [0u8; 16];
        name[..b.len()].copy_from_slice(b);
        Some(Self { magic: FAST_MAGIC, version: FAST_PROTOCOL, bond: name })
    }

    /// The bytes sent.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 24] {
        let mut out = [0u8; 24];
        out[0..4].copy_from_slice(&self.magic.to_ne_bytes());
        out[4..8].copy_from_slice(&self.version.to_ne_bytes());
        out[8..24].copy_from_slice(&self.bond);
        out
    }

    /// Read a request (any bytes: checked by the agent with [`Self::bond_name`]).
    #[must_use]
    pub fn from_bytes(b: &[u8; 24]) -> Self {
        let u = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        let mut bond = [0u8; 16];
        bond.copy_from_slice(&b[8..24]);
        Self { magic: u(0), version: u(4), bond }
    }

    /// The bond name, if the request is well formed (magic, version, a NUL-terminated UTF-8 name).
    #[must_use]
    pub fn bond_name(&self) -> Option<&str> {
        if self.magic != FAST_MAGIC || self.version != FAST_PROTOCOL {
            return None;
        }
        let n = self.bond.iter().position(|&c| c == 0)?;
        core::str::from_utf8(&self.bond[..n]).ok().filter(|s| !s.is_empty())
    }
}

impl FastReply {
    /// A reply with `status` and nothing else.
    #[must_use]
    pub const fn error(status: i32) -> Self {
        Self {
            magic: FAST_MAGIC,
            version: FAST_PROTOCOL,
            status,
            slot: 0,
            epoch: 0,
            bond_ifindex: 0,
            slots: FAST_SLOTS,
            slot_size: FAST_SLOT_SIZE_U32,
        }
    }

    /// The bytes sent.
    #[must_use]
    pub fn to_bytes(&self) -> [u8; 32] {
        let mut out = [0u8; 32];
        let fields = [
            self.magic,
            self.version,
            u32::from_ne_bytes(self.status.to_ne_bytes()),
            self.slot,
            self.epoch,
            self.bond_ifindex,
            self.slots,
            self.slot_size,
        ];
        for (i, f) in fields.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&f.to_ne_bytes());
        }
        out
    }

    /// Read a reply.
    #[must_use]
    pub fn from_bytes(b: &[u8; 32]) -> Self {
        let u = |i: usize| u32::from_ne_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        Self {
            magic: u(0),
            version: u(1),
            status: i32::from_ne_bytes(u(2).to_ne_bytes()),
            slot: u(3),
            epoch: u(4),
            bond_ifindex: u(5),
            slots: u(6),
            slot_size: u(7),
        }
    }
}

#[cfg(feature = "user")]
// SAFETY: u32/u64 fields and explicit reserved words: 64 bytes, no implicit padding (asserted above).
unsafe impl aya::Pod for FastSlot {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_round_trip() {
        let r = FastRequest::new("bond0").unwrap();
        assert_eq!(FastRequest::from_bytes(&r.to_bytes()), r);
        assert_eq!(r.bond_name(), Some("bond0"));
        assert!(FastRequest::new("").is_none() && FastRequest::new("sixteen-bytes-xx").is_none());
        let mut bad = r;
        bad.version = 9;
        assert_eq!(bad.bond_name(), None);
        let mut unterminated = r;
        unterminated.bond = [b'a'; 16];
        assert_eq!(unterminated.bond_name(), None, "a name without its NUL is refused");
        let rep = FastReply { status: FAST_OK, slot: 7, epoch: 3, bond_ifindex: 12, ..FastReply::error(0) };
        assert_eq!(FastReply::from_bytes(&rep.to_bytes()), rep);
        assert_eq!(FastReply::from_bytes(&FastReply::error(-5).to_bytes()).status, -5);
    }
}
