//! The bond page: one 4096-byte page per managed bond, published as `/dev/exabond-<bond>`.
//!
//! # Layout (version 1, with the latch copy)
//!
//! All integers are native-endian (little-endian on `x86_64`). Offsets are from the start of the page and
//! are asserted by the tests below; the C header is generated from the same definitions.
//!
//! | offset | size | field | notes |
//! |---|---|---|---|
//! | 0 | 4 | legacy word | exasock-compatible, see [`legacy`]; always written with one atomic 32-bit store, after the block |
//! | 4 | 60 | reserved | zero |
//! | 64 | 8 | `seq` | sequence: odd while the writer updates copy 0, even while it updates copy 1 or rests |
//! | 72 | 520 | [`PageData`], copy 0 | the block (offsets below, absolute); what a reader reads at an even `seq` |
//! | 592 | 48 | reserved | zero |
//! | 640 | 8 | `latch_seq` | the (odd) `seq` at which copy 1 is the block to read |
//! | 648 | 520 | [`PageData`], copy 1 | the same block again; what a reader reads at an odd `seq` equal to `latch_seq` |
//! | 1168 | 2928 | reserved | zero |
//!
//! The second copy and `latch_seq` sit in what version 1 reserved, and a version-1 reader, which reads
//! copy 0 at an even `seq` only, reads a latched page correctly; a reader of this version reads a page
//! of a writer that keeps no second copy (its `latch_seq` never matches) as version 1 did. So the layout
//! version stays 1: readers and writers of either revision work together, and the legacy word never moves.
//!
//! [`PageData`] fields: 72 `magic`, 76 `version`, 80 `flags`, 84 `bond_ifindex`, 88 `bond_name[16]`,
//! 104 `active_ifindex`, 108 `active_slot`, 112 `active_name[16]`, 128 `active_mac[8]`,
//! 136 `failover_count`, 144 `last_change_mono_ns`, 152 `last_change_real_ns`, 160 `kernel_event_ns`,
//! 168 `last_change_source`, 172 `agent_pid`, 176 `heartbeat_mono_ns`, 184 `legacy_word`,
//! 188 `slave_count`, 192 `slaves[8]` (48 bytes each: 0 `name[16]`, 16 `ifindex`, 20 `link`, 24 `role`,
//! 28 `link_failures`, 32 `mac[8]`, 40 `smartnic_id`, 41 `port`, 42 reserved[6]), 576 `last_update_mono_ns`,
//! 584 `last_update_source`, 588 reserved.
//!
//! # Protocol (a latched seqlock, the kernel's `seqcount_latch`)
//!
//! One writer (the agent). To publish block B over the current block A (both copies hold A, and
//! `latch_seq` = `seq` + 1): it increments `seq` to odd (release: readers now read copy 1, still A), stores
//! B in copy 0, increments `seq` to even (release: readers now read copy 0, B), stores the legacy word,
//! stores B in copy 1 and sets `latch_seq` to `seq` + 1 for the next publication. A reader loads `seq`
//! (acquire), copies copy 0 when it is even, or copy 1 when it is odd and equal to `latch_seq`, and
//! accepts the copy if `seq` is unchanged afterwards. A reader never waits for the writer: the copy it
//! reads is never the one being written, and it only retries when a whole half-publication completed
//! during its copy. A writer that dies mid-publication leaves a readable page (the other copy). The
//! hot-loop check is a single load of the legacy word compared with a cached copy, exactly as exasock
//! readers did.

/// Size of the page and of the file.
pub const PAGE_SIZE: usize = 4096;
/// Offset of the exasock-compatible legacy word.
pub const LEGACY_WORD_OFFSET: usize = 0;
/// Offset of the 64-bit seqlock sequence: it starts the cache line after the legacy word's (which hot loops poll
/// alone), and the block follows it on that line.
pub const SEQ_OFFSET: usize = 64;
/// Offset of the seqlocked [`PageData`] block (copy 0, what a reader reads while `seq` is even).
pub const DATA_OFFSET: usize = 72;
/// Offset of `latch_seq`: the odd `seq` at which [`LATCH_DATA_OFFSET`] holds the block to read. It starts
/// its own cache line, laid out like the one at [`SEQ_OFFSET`].
pub const LATCH_SEQ_OFFSET: usize = 640;
/// Offset of the second copy of the block (copy 1, what a reader reads while `seq` is odd).
pub const LATCH_DATA_OFFSET: usize = 648;
/// Number of slave records in the page; a bond with more slaves lists the first ones (by ifindex) and
/// sets [`FLAG_SLAVES_TRUNCATED`].
pub const MAX_SLAVES: usize = 8;
/// Size of an interface name buffer, NUL included (the kernel's `IFNAMSIZ`).
pub const IFNAMSIZ: usize = 16;
/// `magic` of a valid page: the bytes `EXBD`.
pub const PAGE_MAGIC: u32 = u32::from_le_bytes(*b"EXBD");
/// Layout version described here. Readers refuse pages with another version.
pub const LAYOUT_VERSION: u32 = 1;
/// Prefix of the page file name: the page of bond `B` is `exabond-B`.
pub const PAGE_FILE_PREFIX: &str = "exabond-";
/// Default directory of the pages.
pub const DEFAULT_PAGE_DIR: &str = "/dev";
/// `active_slot` when there is no active slave.
pub const NO_SLOT: u32 = u32::MAX;

/// `flags`: an active slave exists.
pub const FLAG_ACTIVE: u32 = 1 << 0;
/// `flags`: the bond is no longer managed (unmanaged or deleted); the page will not change again.
pub const FLAG_RETIRED: u32 = 1 << 1;
/// `flags`: the bond has more than [`MAX_SLAVES`] slaves; only the first are listed.
pub const FLAG_SLAVES_TRUNCATED: u32 = 1 << 2;

/// The exasock-compatible 32-bit word at offset 0.
///
/// bits 0–15 flags (bit 0 = an active slave exists), bits 16–23 the `SmartNIC` id of the active slave (the
/// `N` of `exanicN`), bits 24–31 its port. When no slave is active the flags are cleared and the id and
/// port of the last active slave are kept, as the original did.
pub mod legacy {
    /// Flag bit: an active slave exists.
    pub const ACTIVE: u32 = 1;
    /// `SmartNIC` id used for members that are not `ExaNIC`/`SmartNIC` ports (lab drivers allowed by
    /// `--member-driver`): such slaves get id 255 and their slot in the page's slave table as port, so
    /// every member still has a distinct word.
    pub const NON_SMARTNIC_ID: u8 = 0xff;

    /// Build the word from its parts.
    #[must_use]
    pub const fn encode(active: bool, id: u8, port: u8) -> u32 {
        (if active { ACTIVE } else { 0 }) | ((id as u32) << 16) | ((port as u32) << 24)
    }

    /// Whether the word says an active slave exists.
    #[must_use]
    pub const fn is_active(word: u32) -> bool {
        word & ACTIVE != 0
    }

    /// `SmartNIC` id (bits 16–23).
    #[must_use]
    #[expect(clippy::cast_possible_truncation, reason = "the truncation drops the port (bits 24–31) above the id")]
    pub const fn smartnic_id(word: u32) -> u8 {
        (word >> 16) as u8
    }

    /// Port (bits 24–31).
    #[must_use]
    pub const fn port(word: u32) -> u8 {
        (word >> 24) as u8
    }
}

/// Link state of a slave, as the bonding driver sees it (`u32` in the page).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LinkState {
    /// Not known yet.
    Unknown = 0,
    /// Link up.
    Up = 1,
    /// Link down.
    Down = 2,
}

impl LinkState {
    /// From the raw page value (unknown values read as `Unknown`).
    #[must_use]
    pub const fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Up,
            2 => Self::Down,
            _ => Self::Unknown,
        }
    }

    /// Lower-case name used in JSON and tables.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Unknown => "unknown",
            Self::Up => "up",
            Self::Down => "down",
        }
    }
}

/// Role of a slave in an active-backup bond (`u32` in the page).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlaveRole {
    /// Backup (not carrying traffic).
    Backup = 0,
    /// The active slave.
    Active = 1,
}

/// Which source saw the last change first (`u32` in the page).
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChangeSource {
    /// Nothing changed since the page was created.
    None = 0,
    /// The eBPF probe on `bond_change_active_slave`.
    Ebpf = 1,
    /// An rtnetlink notification.
    Netlink = 2,
    /// The periodic poll (backstop).
    Poll = 3,
    /// The initial read when the bond was placed under management.
    Manage = 4,
}

impl ChangeSource {
    /// From the raw page value (unknown values read as `None`).
    #[must_use]
    pub const fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Ebpf,
            2 => Self::Netlink,
            3 => Self::Poll,
            4 => Self::Manage,
            _ => Self::None,
        }
    }

    /// Lower-case name used in JSON and tables.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Ebpf => "ebpf",
            Self::Netlink => "netlink",
            Self::Poll => "poll",
            Self::Manage => "manage",
        }
    }
}

/// One member of the bond.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlaveRecord {
    /// Interface name, NUL padded.
    pub name: [u8; IFNAMSIZ],
    /// ifindex.
    pub ifindex: u32,
    /// A [`LinkState`].
    pub link: u32,
    /// A [`SlaveRole`].
    pub role: u32,
    /// The bonding driver's link failure count for this slave.
    pub link_failures: u32,
    /// Permanent MAC address (6 bytes used).
    pub mac: [u8; 8],
    /// `SmartNIC` id used in the legacy word when this slave is active.
    pub smartnic_id: u8,
    /// Port used in the legacy word when this slave is active.
    pub port: u8,
    /// Reserved, zero.
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a repr(C) record, public for struct literals"
    )]
    pub _reserved: [u8; 6],
}

impl SlaveRecord {
    /// An all-zero record.
    pub const EMPTY: Self = Self {
        name: [0; IFNAMSIZ],
        ifindex: 0,
        link: 0,
        role: 0,
        link_failures: 0,
        mac: [0; 8],
        smartnic_id: 0,
        port: 0,
        _reserved: [0; 6],
    };

    /// The name as a string (up to the first NUL; invalid UTF-8 reads as empty).
    #[must_use]
    pub fn name(&self) -> &str {
        cstr(&self.name)
    }

    /// Link state.
    #[must_use]
    pub const fn link_state(&self) -> LinkState {
        LinkState::from_u32(self.link)
    }

    /// Whether this slave is the active one.
    #[must_use]
    pub const fn is_active(&self) -> bool {
        self.role == SlaveRole::Active as u32
    }
}

/// The seqlocked block of the page (at [`DATA_OFFSET`]). A reader's snapshot is a copy of it.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageData {
    /// [`PAGE_MAGIC`].
    pub magic: u32,
    /// [`LAYOUT_VERSION`].
    pub version: u32,
    /// [`FLAG_ACTIVE`], [`FLAG_RETIRED`], [`FLAG_SLAVES_TRUNCATED`].
    pub flags: u32,
    /// ifindex of the bond.
    pub bond_ifindex: u32,
    /// Name of the bond, NUL padded.
    pub bond_name: [u8; IFNAMSIZ],
    /// ifindex of the active slave, 0 if none.
    pub active_ifindex: u32,
    /// Index of the active slave in `slaves`, [`NO_SLOT`] if none or not listed.
    pub active_slot: u32,
    /// Name of the active slave, NUL padded (empty if none).
    pub active_name: [u8; IFNAMSIZ],
    /// Permanent MAC of the active slave (6 bytes used).
    pub active_mac: [u8; 8],
    /// Number of changes of the active slave seen since the bond was placed under management
    /// (a change to "none" and back counts too).
    pub failover_count: u64,
    /// `CLOCK_MONOTONIC` ns when the agent published the last change of the active slave.
    pub last_change_mono_ns: u64,
    /// `CLOCK_REALTIME` ns of the same moment.
    pub last_change_real_ns: u64,
    /// `CLOCK_MONOTONIC` ns of the kernel event behind the last change (the eBPF probe's
    /// `bpf_ktime_get_ns()`), 0 when the change was not seen by the probe.
    pub kernel_event_ns: u64,
    /// A [`ChangeSource`]: which source saw the last change first.
    pub last_change_source: u32,
    /// pid of the writing agent.
    pub agent_pid: u32,
    /// `CLOCK_MONOTONIC` ns of the agent's last heartbeat (updated at every poll tick).
    pub heartbeat_mono_ns: u64,
    /// Copy of the legacy word that goes with this block.
    pub legacy_word: u32,
    /// Number of valid entries in `slaves`.
    pub slave_count: u32,
    /// Members, ordered by ifindex.
    pub slaves: [SlaveRecord; MAX_SLAVES],
    /// `CLOCK_MONOTONIC` ns of the last publication that changed anything but the heartbeat (a member
    /// added or removed, a link state, a failover ...).
    pub last_update_mono_ns: u64,
    /// A [`ChangeSource`]: which source made that publication.
    pub last_update_source: u32,
    /// Reserved, zero.
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a repr(C) record, public for struct literals"
    )]
    pub _reserved: u32,
}

/// Size of [`PageData`] in bytes.
pub const DATA_SIZE: usize = core::mem::size_of::<PageData>();
/// Size of [`PageData`] in 64-bit words (the unit the seqlock copies).
pub const DATA_WORDS: usize = DATA_SIZE / 8;

const _: () = assert!(DATA_SIZE % 8 == 0);
const _: () = assert!(DATA_OFFSET % 8 == 0);
const _: () = assert!(DATA_OFFSET + DATA_SIZE <= PAGE_SIZE);
// `as_words` and the seqlock's word copies rely on these two.
const _: () = assert!(core::mem::align_of::<PageData>() == 8);
const _: () = assert!(core::mem::size_of::<PageData>() == DATA_WORDS * 8);
const _: () = assert!(LEGACY_WORD_OFFSET + 4 <= SEQ_OFFSET);
const _: () = assert!(DATA_OFFSET + DATA_SIZE <= LATCH_SEQ_OFFSET);
const _: () = assert!(LATCH_SEQ_OFFSET % 64 == 0 && LATCH_DATA_OFFSET == LATCH_SEQ_OFFSET + 8);
const _: () = assert!(LATCH_DATA_OFFSET + DATA_SIZE <= PAGE_SIZE);

impl PageData {
    /// A fresh block for bond `name` (ifindex `ifindex`) written by agent `agent_pid`.
    #[must_use]
    pub fn new(name: &str, ifindex: u32, agent_pid: u32) -> Self {
        Self {
            magic: PAGE_MAGIC,
            version: LAYOUT_VERSION,
            flags: 0,
            bond_ifindex: ifindex,
            bond_name: name_buf(name),
            active_ifindex: 0,
            active_slot: NO_SLOT,
            active_name: [0; IFNAMSIZ],
            active_mac: [0; 8],
            failover_count: 0,
            last_change_mono_ns: 0,
            last_change_real_ns: 0,
            kernel_event_ns: 0,
            last_change_source: ChangeSource::None as u32,
            agent_pid,
            heartbeat_mono_ns: 0,
            legacy_word: 0,
            slave_count: 0,
            slaves: [SlaveRecord::EMPTY; MAX_SLAVES],
            last_update_mono_ns: 0,
            last_update_source: ChangeSource::None as u32,
            _reserved: 0,
        }
    }

    /// The bond's name.
    #[must_use]
    pub fn bond_name(&self) -> &str {
        cstr(&self.bond_name)
    }

    /// The active slave's name, `None` if no slave is active.
    #[must_use]
    pub fn active_name(&self) -> Option<&str> {
        (self.flags & FLAG_ACTIVE != 0).then(|| cstr(&self.active_name))
    }

    /// The listed slaves.
    #[must_use]
    pub fn slaves(&self) -> &[SlaveRecord] {
        let n = (self.slave_count as usize).min(MAX_SLAVES);
        &self.slaves[..n]
    }

    /// Which source saw the last change of the active slave.
    #[must_use]
    pub const fn source(&self) -> ChangeSource {
        ChangeSource::from_u32(self.last_change_source)
    }

    /// Which source made the last publication that changed anything but the heartbeat.
    #[must_use]
    pub const fn update_source(&self) -> ChangeSource {
        ChangeSource::from_u32(self.last_update_source)
    }

    /// Whether the page has been retired (bond unmanaged or deleted).
    #[must_use]
    pub const fn is_retired(&self) -> bool {
        self.flags & FLAG_RETIRED != 0
    }

    /// Whether `magic` and `version` are those of this layout.
    #[must_use]
    pub const fn is_valid(&self) -> bool {
        self.magic == PAGE_MAGIC && self.version == LAYOUT_VERSION
    }

    /// The block as 64-bit words (what the seqlock stores), without copying it.
    #[must_use]
    pub fn as_words(&self) -> &[u64; DATA_WORDS] {
        // SAFETY: PageData is repr(C), exactly DATA_WORDS * 8 bytes, 8-aligned (asserted at compile time),
        // with no implicit padding (asserted by the tests), so every byte is initialised and the cast reference is valid for as long
        // as `self`.
        unsafe { &*(&raw const *self).cast::<[u64; DATA_WORDS]>() }
    }

    /// The block as 64-bit words, copied.
    #[must_use]
    pub fn to_words(&self) -> [u64; DATA_WORDS] {
        *self.as_words()
    }

    /// The block from 64-bit words. Every bit pattern is a valid `PageData` (integers and byte arrays),
    /// so this cannot fail; check [`Self::is_valid`] for meaning.
    #[must_use]
    pub fn from_words(words: &[u64; DATA_WORDS]) -> Self {
        // SAFETY: same size; all fields are plain integers or byte arrays, valid for any bits.
        unsafe { core::mem::transmute_copy(words) }
    }
}

/// A NUL-padded name buffer from a string (truncated to `IFNAMSIZ - 1` bytes).
#[must_use]
pub fn name_buf(name: &str) -> [u8; IFNAMSIZ] {
    let mut b = [0u8; IFNAMSIZ];
    let n = name.len().min(IFNAMSIZ - 1);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

/// The string in a NUL-padded buffer (empty if not UTF-8).
#[must_use]
pub fn cstr(buf: &[u8]) -> &str {
    let n = buf.iter().position(|&c| c == 0).unwrap_or(buf.len());
    core::str::from_utf8(&buf[..n]).unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    /// The table in the module docs, asserted. A change here is a layout change: bump `LAYOUT_VERSION`.
    #[test]
    fn documented_offsets() {
        let at = |off: usize| DATA_OFFSET + off;
        assert_eq!(at(offset_of!(PageData, magic)), 72);
        assert_eq!(at(offset_of!(PageData, version)), 76);
        assert_eq!(at(offset_of!(PageData, flags)), 80);
        assert_eq!(at(offset_of!(PageData, bond_ifindex)), 84);
        assert_eq!(at(offset_of!(PageData, bond_name)), 88);
        assert_eq!(at(offset_of!(PageData, active_ifindex)), 104);
        assert_eq!(at(offset_of!(PageData, active_slot)), 108);
        assert_eq!(at(offset_of!(PageData, active_name)), 112);
        assert_eq!(at(offset_of!(PageData, active_mac)), 128);
        assert_eq!(at(offset_of!(PageData, failover_count)), 136);
        assert_eq!(at(offset_of!(PageData, last_change_mono_ns)), 144);
        assert_eq!(at(offset_of!(PageData, last_change_real_ns)), 152);
        assert_eq!(at(offset_of!(PageData, kernel_event_ns)), 160);
        assert_eq!(at(offset_of!(PageData, last_change_source)), 168);
        assert_eq!(at(offset_of!(PageData, agent_pid)), 172);
        assert_eq!(at(offset_of!(PageData, heartbeat_mono_ns)), 176);
        assert_eq!(at(offset_of!(PageData, legacy_word)), 184);
        assert_eq!(at(offset_of!(PageData, slave_count)), 188);
        assert_eq!(at(offset_of!(PageData, slaves)), 192);
        assert_eq!(at(offset_of!(PageData, last_update_mono_ns)), 576);
        assert_eq!(at(offset_of!(PageData, last_update_source)), 584);
        assert_eq!(size_of::<PageData>(), 520);
        assert_eq!(DATA_OFFSET + DATA_SIZE, 592);

        assert_eq!(size_of::<SlaveRecord>(), 48);
        assert_eq!(offset_of!(SlaveRecord, name), 0);
        assert_eq!(offset_of!(SlaveRecord, ifindex), 16);
        assert_eq!(offset_of!(SlaveRecord, link), 20);
        assert_eq!(offset_of!(SlaveRecord, role), 24);
        assert_eq!(offset_of!(SlaveRecord, link_failures), 28);
        assert_eq!(offset_of!(SlaveRecord, mac), 32);
        assert_eq!(offset_of!(SlaveRecord, smartnic_id), 40);
        assert_eq!(offset_of!(SlaveRecord, port), 41);
        assert_eq!(SEQ_OFFSET % 64, 0, "seq starts its own cache line");
        assert_eq!(LATCH_SEQ_OFFSET, 640);
        assert_eq!(LATCH_DATA_OFFSET, 648);
        assert_eq!(LATCH_DATA_OFFSET - LATCH_SEQ_OFFSET, DATA_OFFSET - SEQ_OFFSET, "copy 1 laid out as copy 0");
        assert_eq!(LATCH_DATA_OFFSET + DATA_SIZE, 1168);
    }

    #[test]
    fn legacy_word_bits() {
        let w = legacy::encode(true, 3, 1);
        assert_eq!(w, 0x0103_0001);
        assert!(legacy::is_active(w));
        assert_eq!(legacy::smartnic_id(w), 3);
        assert_eq!(legacy::port(w), 1);
        assert!(!legacy::is_active(legacy::encode(false, 3, 1)));
    }

    #[test]
    fn names() {
        assert_eq!(cstr(&name_buf("bond0")), "bond0");
        assert_eq!(cstr(&name_buf("a-very-long-interface-name")), "a-very-long-int");
        let d = PageData::new("bond0", 7, 1);
        assert!(d.is_valid());
        assert_eq!(d.bond_name(), "bond0");
        assert_eq!(d.active_name(), None);
        assert!(d.slaves().is_empty());
    }

    proptest::proptest! {
        #[test]
        fn words_round_trip(bytes in proptest::collection::vec(proptest::num::u64::ANY, DATA_WORDS)) {
            let mut words = [0u64; DATA_WORDS];
            words.copy_from_slice(&bytes);
            let data = PageData::from_words(&words);
            proptest::prop_assert_eq!(data.to_words(), words);
            // Accessors never panic on arbitrary content.
            let _ = (data.bond_name(), data.active_name(), data.slaves().len(), data.source());
            for s in data.slaves() { let _ = (s.name(), s.link_state()); }
        }
    }
}
