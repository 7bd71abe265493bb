//! What the enforcement maps hold. Userspace decides (a pure policy function in the agent); the eBPF LSM
//! programs only look the answer up. All maps are pinned under [`PIN_DIR`] so enforcement outlives the agent.

/// Directory (bpffs) where the maps and the LSM links are pinned.
pub const PIN_DIR: &str = "/sys/fs/bpf/exabond";

/// `GUARDED_FILES` value kind: the bond's sysfs `bonding/mode` file.
pub const FILE_MODE: u32 = 1;
/// `GUARDED_FILES` value kind: the bond's sysfs `bonding/slaves` file.
pub const FILE_SLAVES: u32 = 2;

/// A sysfs file of a managed bond, keyed by inode number in `GUARDED_FILES`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuardedFile {
    /// [`FILE_MODE`] or [`FILE_SLAVES`].
    pub kind: u32,
    /// ifindex of the bond it belongs to.
    pub bond_ifindex: u32,
}

/// Member verdict: may be enslaved to a managed bond.
pub const VERDICT_ALLOWED: u32 = 0;
/// errno for a member that is not a SmartNIC (also VLAN devices and unknown devices).
pub const ENODEV: u32 = 19;
/// errno for a member that is itself a bond (nesting).
pub const EINVAL: u32 = 22;
/// errno for a forbidden mode change, and for write paths whose content cannot be checked.
pub const EOPNOTSUPP: u32 = 95;

/// Interface names as map keys: NUL-padded, 16 bytes.
pub type IfName = [u8; 16];

#[cfg(feature = "user")]
// SAFETY: two u32, no padding.
unsafe impl aya::Pod for GuardedFile {}
