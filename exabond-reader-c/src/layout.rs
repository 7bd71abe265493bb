//! The page layout as the C header shows it: `EXABOND_`-prefixed constants and `#[repr(C)]` mirrors of
//! [`PageData`] (`struct exabond_snapshot`) and [`SlaveRecord`] (`struct exabond_slave`).
//!
//! Why mirrors rather than cbindgen reading `exabond-common` itself: C has one namespace, and the Rust names
//! collide there (`IFNAMSIZ` is `<net/if.h>`'s, `PAGE_SIZE` is `<sys/user.h>`'s); cbindgen writes only
//! literal constants, not `u32::from_le_bytes(*b"EXBD")` or `size_of::<PageData>()`; and the Rust doc
//! comments carry rustdoc links. The values below are literals so cbindgen can print them, and every one
//! of them, and every field offset and size, is checked against `exabond-common` at compile time (the
//! `const _` blocks at the end of this file): the crate does not build if the two disagree.

use core::mem::{align_of, offset_of, size_of};

use exabond_common::page::{self, legacy, ChangeSource, LinkState, PageData, SlaveRecord, SlaveRole};

/// Size of the page and of the page file, in bytes.
pub const EXABOND_PAGE_SIZE: usize = 4096;
/// Offset of the exasock-compatible legacy word (`uint32_t`, one atomic store, written after the block).
pub const EXABOND_LEGACY_WORD_OFFSET: usize = 0;
/// Offset of the 64-bit sequence: odd while the writer updates copy 0 (then copy 1 is the one to read),
/// even otherwise (then copy 0 is).
pub const EXABOND_SEQ_OFFSET: usize = 64;
/// Offset of copy 0 of the block, whose layout is `struct exabond_snapshot`.
pub const EXABOND_DATA_OFFSET: usize = 72;
/// Offset of `latch_seq` (`uint64_t`): the odd sequence at which copy 1 holds the block to read.
pub const EXABOND_LATCH_SEQ_OFFSET: usize = 640;
/// Offset of copy 1 of the block (same layout as copy 0).
pub const EXABOND_LATCH_DATA_OFFSET: usize = 648;
/// Size of the seqlocked block: `sizeof(struct exabond_snapshot)`.
pub const EXABOND_DATA_SIZE: usize = 520;
/// Number of slave records in the block.
pub const EXABOND_MAX_SLAVES: usize = 8;
/// Size of an interface name buffer, NUL included (the kernel's `IFNAMSIZ`).
pub const EXABOND_IFNAMSIZ: usize = 16;
/// `magic` of a valid page: the bytes `"EXBD"` read as a little-endian `uint32_t` (0x44425845).
pub const EXABOND_PAGE_MAGIC: u32 = 0x4442_5845;
/// Layout version described by this header; `exabond_open` refuses pages of another version.
pub const EXABOND_LAYOUT_VERSION: u32 = 1;
/// Prefix of a page file name: the page of bond `B` is `<page_dir>/exabond-B`. (cbindgen does not print
/// string constants: the header defines it in its trailer, see cbindgen.toml; a test compares.)
pub const EXABOND_PAGE_FILE_PREFIX: &str = "exabond-";
/// Default directory of the pages (in the header's trailer, like [`EXABOND_PAGE_FILE_PREFIX`]).
pub const EXABOND_DEFAULT_PAGE_DIR: &str = "/dev";
/// `active_slot` when no slave is active (or the active slave is not listed).
pub const EXABOND_NO_SLOT: u32 = u32::MAX;

/// `flags` of the block: an active slave exists.
pub const EXABOND_FLAG_ACTIVE: u32 = 1;
/// `flags` of the block: the bond is no longer managed; the page will not change again.
pub const EXABOND_FLAG_RETIRED: u32 = 2;
/// `flags` of the block: the bond has more than `EXABOND_MAX_SLAVES` slaves; only the first are listed.
pub const EXABOND_FLAG_SLAVES_TRUNCATED: u32 = 4;

/// Legacy word, bits 0-15 (flags): an active slave exists.
pub const EXABOND_LEGACY_ACTIVE: u32 = 1;
/// Legacy word: mask of the flag bits (0-15).
pub const EXABOND_LEGACY_FLAGS_MASK: u32 = 0x0000_FFFF;
/// Legacy word: shift of the `SmartNIC` id (bits 16-23, the `N` of `exanicN`).
pub const EXABOND_LEGACY_ID_SHIFT: u32 = 16;
/// Legacy word: shift of the port (bits 24-31).
pub const EXABOND_LEGACY_PORT_SHIFT: u32 = 24;
/// `SmartNIC` id in the legacy word of members that are not `SmartNIC` ports (their port is their slot).
pub const EXABOND_LEGACY_NON_SMARTNIC_ID: u8 = 0xFF;

/// `link` of a slave: not known yet.
pub const EXABOND_LINK_UNKNOWN: u32 = 0;
/// `link` of a slave: up.
pub const EXABOND_LINK_UP: u32 = 1;
/// `link` of a slave: down.
pub const EXABOND_LINK_DOWN: u32 = 2;

/// `role` of a slave: backup.
pub const EXABOND_ROLE_BACKUP: u32 = 0;
/// `role` of a slave: the active slave.
pub const EXABOND_ROLE_ACTIVE: u32 = 1;

/// `last_change_source`: nothing changed since the page was created.
pub const EXABOND_SOURCE_NONE: u32 = 0;
/// `last_change_source`: the eBPF probe on `bond_change_active_slave`.
pub const EXABOND_SOURCE_EBPF: u32 = 1;
/// `last_change_source`: an rtnetlink notification.
pub const EXABOND_SOURCE_NETLINK: u32 = 2;
/// `last_change_source`: the agent's periodic poll.
pub const EXABOND_SOURCE_POLL: u32 = 3;
/// `last_change_source`: the initial read when the bond was placed under management.
pub const EXABOND_SOURCE_MANAGE: u32 = 4;

/// `source` of `struct exabond_active`: read from the fast word (the kernel's own publication).
pub const EXABOND_ACTIVE_FAST: u32 = 1;
/// `source` of `struct exabond_active`: read from the page.
pub const EXABOND_ACTIVE_PAGE: u32 = 2;

/// The active slave as the hot-loop calls see it (filled by `exabond_active`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct exabond_active {
    /// The legacy word.
    pub word: u32,
    /// ifindex of the active slave (0: none shown).
    pub ifindex: u32,
    /// `CLOCK_MONOTONIC` ns of the kernel's change behind it (0 when unknown).
    pub kernel_ns: u64,
    /// `EXABOND_ACTIVE_FAST` or `EXABOND_ACTIVE_PAGE`.
    pub source: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

/// One member of the bond (48 bytes; mirrors `exabond_common::page::SlaveRecord`).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct exabond_slave {
    /// Interface name, NUL padded.
    pub name: [u8; EXABOND_IFNAMSIZ],
    /// ifindex.
    pub ifindex: u32,
    /// `EXABOND_LINK_*`.
    pub link: u32,
    /// `EXABOND_ROLE_*`.
    pub role: u32,
    /// The bonding driver's link failure count for this slave.
    pub link_failures: u32,
    /// Permanent MAC address (6 bytes used).
    pub mac: [u8; 8],
    /// `SmartNIC` id in the legacy word when this slave is active.
    pub smartnic_id: u8,
    /// Port in the legacy word when this slave is active.
    pub port: u8,
    /// Reserved, zero.
    pub reserved: [u8; 6],
}

/// A consistent copy of the page's seqlocked block (520 bytes, at `EXABOND_DATA_OFFSET` in the page;
/// mirrors `exabond_common::page::PageData`). Filled by `exabond_snapshot`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct exabond_snapshot {
    /// `EXABOND_PAGE_MAGIC`.
    pub magic: u32,
    /// `EXABOND_LAYOUT_VERSION`.
    pub version: u32,
    /// `EXABOND_FLAG_*`.
    pub flags: u32,
    /// ifindex of the bond.
    pub bond_ifindex: u32,
    /// Name of the bond, NUL padded.
    pub bond_name: [u8; EXABOND_IFNAMSIZ],
    /// ifindex of the active slave, 0 if none.
    pub active_ifindex: u32,
    /// Index of the active slave in `slaves`, `EXABOND_NO_SLOT` if none or not listed.
    pub active_slot: u32,
    /// Name of the active slave, NUL padded (empty if none).
    pub active_name: [u8; EXABOND_IFNAMSIZ],
    /// Permanent MAC of the active slave (6 bytes used).
    pub active_mac: [u8; 8],
    /// Changes of the active slave since the bond was placed under management (a change to "none" and
    /// back counts too).
    pub failover_count: u64,
    /// `CLOCK_MONOTONIC` ns when the agent published the last change of the active slave.
    pub last_change_mono_ns: u64,
    /// `CLOCK_REALTIME` ns of the same moment.
    pub last_change_real_ns: u64,
    /// `CLOCK_MONOTONIC` ns of the kernel event behind the last change, 0 when the probe did not see it.
    pub kernel_event_ns: u64,
    /// `EXABOND_SOURCE_*`: which source saw the last change first.
    pub last_change_source: u32,
    /// pid of the writing agent.
    pub agent_pid: u32,
    /// `CLOCK_MONOTONIC` ns of the agent's last heartbeat.
    pub heartbeat_mono_ns: u64,
    /// Copy of the legacy word that goes with this block.
    pub legacy_word: u32,
    /// Number of valid entries in `slaves`.
    pub slave_count: u32,
    /// Members, ordered by ifindex.
    pub slaves: [exabond_slave; EXABOND_MAX_SLAVES],
    /// `CLOCK_MONOTONIC` ns of the last publication that changed anything but the heartbeat.
    pub last_update_mono_ns: u64,
    /// `EXABOND_SOURCE_*`: which source made that publication.
    pub last_update_source: u32,
    /// Reserved, zero.
    pub reserved: u32,
}

impl From<&SlaveRecord> for exabond_slave {
    fn from(s: &SlaveRecord) -> Self {
        Self {
            name: s.name,
            ifindex: s.ifindex,
            link: s.link,
            role: s.role,
            link_failures: s.link_failures,
            mac: s.mac,
            smartnic_id: s.smartnic_id,
            port: s.port,
            reserved: s._reserved,
        }
    }
}

impl From<&PageData> for exabond_snapshot {
    fn from(d: &PageData) -> Self {
        Self {
            magic: d.magic,
            version: d.version,
            flags: d.flags,
            bond_ifindex: d.bond_ifindex,
            bond_name: d.bond_name,
            active_ifindex: d.active_ifindex,
            active_slot: d.active_slot,
            active_name: d.active_name,
            active_mac: d.active_mac,
            failover_count: d.failover_count,
            last_change_mono_ns: d.last_change_mono_ns,
            last_change_real_ns: d.last_change_real_ns,
            kernel_event_ns: d.kernel_event_ns,
            last_change_source: d.last_change_source,
            agent_pid: d.agent_pid,
            heartbeat_mono_ns: d.heartbeat_mono_ns,
            legacy_word: d.legacy_word,
            slave_count: d.slave_count,
            slaves: d.slaves.each_ref().map(exabond_slave::from),
            last_update_mono_ns: d.last_update_mono_ns,
            last_update_source: d.last_update_source,
            reserved: d._reserved,
        }
    }
}

// ---- Compile-time checks: the header's constants and structs are exabond-common's. ----

const _: () = {
    assert!(EXABOND_PAGE_SIZE == page::PAGE_SIZE);
    assert!(EXABOND_LEGACY_WORD_OFFSET == page::LEGACY_WORD_OFFSET);
    assert!(EXABOND_SEQ_OFFSET == page::SEQ_OFFSET);
    assert!(EXABOND_DATA_OFFSET == page::DATA_OFFSET);
    assert!(EXABOND_LATCH_SEQ_OFFSET == page::LATCH_SEQ_OFFSET);
    assert!(EXABOND_LATCH_DATA_OFFSET == page::LATCH_DATA_OFFSET);
    assert!(EXABOND_DATA_SIZE == page::DATA_SIZE);
    assert!(EXABOND_MAX_SLAVES == page::MAX_SLAVES);
    assert!(EXABOND_IFNAMSIZ == page::IFNAMSIZ);
    assert!(EXABOND_PAGE_MAGIC == page::PAGE_MAGIC);
    assert!(EXABOND_LAYOUT_VERSION == page::LAYOUT_VERSION);
    assert!(EXABOND_NO_SLOT == page::NO_SLOT);
    assert!(EXABOND_FLAG_ACTIVE == page::FLAG_ACTIVE);
    assert!(EXABOND_FLAG_RETIRED == page::FLAG_RETIRED);
    assert!(EXABOND_FLAG_SLAVES_TRUNCATED == page::FLAG_SLAVES_TRUNCATED);
    assert!(EXABOND_LEGACY_ACTIVE == legacy::ACTIVE);
    assert!(EXABOND_LEGACY_NON_SMARTNIC_ID == legacy::NON_SMARTNIC_ID);
    // The shifts and the mask, through the Rust encoder and decoders.
    assert!(
        legacy::encode(true, 0xAB, 0xCD)
            == EXABOND_LEGACY_ACTIVE | 0xAB << EXABOND_LEGACY_ID_SHIFT | 0xCD << EXABOND_LEGACY_PORT_SHIFT
    );
    assert!(legacy::smartnic_id(0xCDAB_0001) as u32 == (0xCDAB_0001 >> EXABOND_LEGACY_ID_SHIFT) & 0xFF);
    assert!(legacy::port(0xCDAB_0001) as u32 == 0xCDAB_0001 >> EXABOND_LEGACY_PORT_SHIFT);
    assert!(EXABOND_LEGACY_FLAGS_MASK == (1 << EXABOND_LEGACY_ID_SHIFT) - 1);
    assert!(EXABOND_LINK_UNKNOWN == LinkState::Unknown as u32);
    assert!(EXABOND_LINK_UP == LinkState::Up as u32);
    assert!(EXABOND_LINK_DOWN == LinkState::Down as u32);
    assert!(EXABOND_ROLE_BACKUP == SlaveRole::Backup as u32);
    assert!(EXABOND_ROLE_ACTIVE == SlaveRole::Active as u32);
    assert!(EXABOND_SOURCE_NONE == ChangeSource::None as u32);
    assert!(EXABOND_SOURCE_EBPF == ChangeSource::Ebpf as u32);
    assert!(EXABOND_SOURCE_NETLINK == ChangeSource::Netlink as u32);
    assert!(EXABOND_SOURCE_POLL == ChangeSource::Poll as u32);
    assert!(EXABOND_SOURCE_MANAGE == ChangeSource::Manage as u32);
};

/// `assert!` that `$field` has the same offset and size in both structs.
macro_rules! same_field {
    ($a:ty, $b:ty, $fa:ident = $fb:ident) => {
        assert!(offset_of!($a, $fa) == offset_of!($b, $fb));
        assert!(size_of_field(|x: &$a| &x.$fa) == size_of_field(|x: &$b| &x.$fb));
    };
}

/// Size of the field a projection closure returns (usable in `const` context).
const fn size_of_field<S, F>(_: fn(&S) -> &F) -> usize {
    size_of::<F>()
}

const _: () = {
    assert!(size_of::<exabond_slave>() == size_of::<SlaveRecord>());
    assert!(align_of::<exabond_slave>() == align_of::<SlaveRecord>());
    same_field!(exabond_slave, SlaveRecord, name = name);
    same_field!(exabond_slave, SlaveRecord, ifindex = ifindex);
    same_field!(exabond_slave, SlaveRecord, link = link);
    same_field!(exabond_slave, SlaveRecord, role = role);
    same_field!(exabond_slave, SlaveRecord, link_failures = link_failures);
    same_field!(exabond_slave, SlaveRecord, mac = mac);
    same_field!(exabond_slave, SlaveRecord, smartnic_id = smartnic_id);
    same_field!(exabond_slave, SlaveRecord, port = port);
    same_field!(exabond_slave, SlaveRecord, reserved = _reserved);

    assert!(size_of::<exabond_snapshot>() == size_of::<PageData>());
    assert!(align_of::<exabond_snapshot>() == align_of::<PageData>());
    same_field!(exabond_snapshot, PageData, magic = magic);
    same_field!(exabond_snapshot, PageData, version = version);
    same_field!(exabond_snapshot, PageData, flags = flags);
    same_field!(exabond_snapshot, PageData, bond_ifindex = bond_ifindex);
    same_field!(exabond_snapshot, PageData, bond_name = bond_name);
    same_field!(exabond_snapshot, PageData, active_ifindex = active_ifindex);
    same_field!(exabond_snapshot, PageData, active_slot = active_slot);
    same_field!(exabond_snapshot, PageData, active_name = active_name);
    same_field!(exabond_snapshot, PageData, active_mac = active_mac);
    same_field!(exabond_snapshot, PageData, failover_count = failover_count);
    same_field!(exabond_snapshot, PageData, last_change_mono_ns = last_change_mono_ns);
    same_field!(exabond_snapshot, PageData, last_change_real_ns = last_change_real_ns);
    same_field!(exabond_snapshot, PageData, kernel_event_ns = kernel_event_ns);
    same_field!(exabond_snapshot, PageData, last_change_source = last_change_source);
    same_field!(exabond_snapshot, PageData, agent_pid = agent_pid);
    same_field!(exabond_snapshot, PageData, heartbeat_mono_ns = heartbeat_mono_ns);
    same_field!(exabond_snapshot, PageData, legacy_word = legacy_word);
    same_field!(exabond_snapshot, PageData, slave_count = slave_count);
    same_field!(exabond_snapshot, PageData, slaves = slaves);
    same_field!(exabond_snapshot, PageData, last_update_mono_ns = last_update_mono_ns);
    same_field!(exabond_snapshot, PageData, last_update_source = last_update_source);
    same_field!(exabond_snapshot, PageData, reserved = _reserved);
};
