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
/// errno for a member that is not a `SmartNIC` (also VLAN devices and unknown devices).
pub const ENODEV: u32 = 19;
/// errno for a member that is itself a bond (nesting).
pub const EINVAL: u32 = 22;
/// errno for a forbidden mode change, and for write paths whose content cannot be checked.
pub const EOPNOTSUPP: u32 = 95;

/// errno for any write access to a bond page by a process other than the agent (as the original driver).
pub const EACCES: u32 = 13;

/// A bond page file, as the kernel names its inode: `PAGE_INODES` key.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct PageInode {
    /// `inode->i_sb->s_dev` in the kernel's encoding (`major << 20 | minor`, see [`kernel_dev`]).
    pub dev: u32,
    /// Explicit padding (zero).
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a repr(C) record, public for struct literals"
    )]
    pub _pad: u32,
    /// `inode->i_ino`.
    pub ino: u64,
}

/// The kernel's `dev_t` encoding (`MKDEV`: major in the upper 12 bits, minor in the lower 20) of a
/// device number split into `major` and `minor` (as `stat(2)` reports them).
#[must_use]
pub const fn kernel_dev(major: u32, minor: u32) -> u32 {
    (major << 20) | (minor & 0xf_ffff)
}

/// The agent process, in its own PID namespace: `AGENT` map value (slot 0). The page guard lets this
/// process (and only it) write the pages; it is named by namespace so an agent in a container without
/// the host's PID namespace is recognised (`bpf_get_ns_current_pid_tgid`).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AgentId {
    /// Device of the agent's PID namespace file (`stat /proc/self/ns/pid`: `st_dev`).
    pub pidns_dev: u64,
    /// Inode of the agent's PID namespace file (`st_ino`).
    pub pidns_ino: u64,
    /// The agent's process id (tgid) in that namespace; 0 = no agent registered (everyone refused).
    pub tgid: u32,
    /// Explicit padding (zero).
    #[expect(
        clippy::pub_underscore_fields,
        reason = "explicit padding of a repr(C) record, public for struct literals"
    )]
    pub _pad: u32,
}

/// Interface names as map keys: NUL-padded, 16 bytes.
pub type IfName = [u8; 16];

#[cfg(feature = "user")]
// SAFETY: two u32, no padding.
unsafe impl aya::Pod for GuardedFile {}
#[cfg(feature = "user")]
// SAFETY: u32, u32, u64: no implicit padding.
unsafe impl aya::Pod for PageInode {}
#[cfg(feature = "user")]
// SAFETY: u64, u64, u32, u32: no implicit padding.
unsafe impl aya::Pod for AgentId {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dev_encoding() {
        // tmpfs/devtmpfs are anonymous devices: major 0.
        assert_eq!(kernel_dev(0, 5), 5);
        assert_eq!(kernel_dev(8, 1), (8 << 20) | 1);
        assert_eq!(core::mem::size_of::<PageInode>(), 16);
        assert_eq!(core::mem::size_of::<AgentId>(), 24);
    }
}
