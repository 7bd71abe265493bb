//! What the enforcement maps hold. Userspace decides (a pure policy function in the agent); the eBPF LSM
//! programs only look the answer up. All maps are pinned under [`PIN_DIR`] so enforcement outlives the agent.

/// Directory (bpffs) where the maps and the LSM links are pinned.
pub const PIN_DIR: &str = "/sys/fs/bpf/exabond";

/// `GUARDED_FILES` value kind: the bond's sysfs `bonding/mode` file.
pub const FILE_MODE: u32 = 1;
/// `GUARDED_FILES` value kind: the bond's sysfs `bonding/slaves` file.
pub const FILE_SLAVES: u32 = 2;

/// A sysfs file of a managed bond, keyed by inode number in `GUARDED_FILES`. Sysfs inode numbers are
/// unique across network namespaces (one kernfs root for every sysfs mount), so the number alone names
/// the file; the programs check the superblock is sysfs first.
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

/// Longest name a device can be addressed by, NUL included (`ALTIFNAMSIZ`: alternative names; the
/// primary name is at most `IFNAMSIZ` = 16).
pub const NAME_LEN: usize = 128;

/// A device as the kernel identifies it: its network namespace and its ifindex there. Key of
/// `MANAGED_BONDS` and `VERDICT_BY_IFINDEX`. Every namespace numbers its devices from 1, so an ifindex
/// alone says nothing about which device a request is about.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DevKey {
    /// The namespace's inode number (`net->ns.inum`, `stat -L /proc/<pid>/ns/net`: `st_ino`).
    pub netns: u32,
    /// `dev->ifindex` in that namespace.
    pub ifindex: u32,
}

/// A device name (primary or alternative) in a network namespace: key of `VERDICT_BY_NAME` and
/// `MANAGED_BY_NAME`. Names resolve in the caller's namespace, as the kernel resolves them.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct NameKey {
    /// The namespace's inode number.
    pub netns: u32,
    /// The name, NUL-padded (at most [`NAME_LEN`] - 1 bytes).
    pub name: [u8; NAME_LEN],
}

impl NameKey {
    /// The key of `name` in namespace `netns`; `None` if the name cannot be a device name (empty or
    /// longer than [`NAME_LEN`] - 1 bytes).
    #[must_use]
    pub fn new(netns: u32, name: &[u8]) -> Option<Self> {
        if name.is_empty() || name.len() >= NAME_LEN {
            return None;
        }
        let mut k = Self { netns, name: [0; NAME_LEN] };
        k.name[..name.len()].copy_from_slice(name);
        Some(k)
    }

    /// An empty key of namespace `netns` (a scratch buffer the eBPF side fills in place).
    #[must_use]
    pub const fn empty(netns: u32) -> Self {
        Self { netns, name: [0; NAME_LEN] }
    }
}

#[cfg(feature = "user")]
// SAFETY: two u32, no padding.
unsafe impl aya::Pod for GuardedFile {}
#[cfg(feature = "user")]
// SAFETY: two u32, no padding.
unsafe impl aya::Pod for DevKey {}
#[cfg(feature = "user")]
// SAFETY: u32 then 128 bytes: size 132, alignment 4, no padding.
unsafe impl aya::Pod for NameKey {}
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
        assert_eq!(core::mem::size_of::<DevKey>(), 8);
        assert_eq!(core::mem::size_of::<NameKey>(), 4 + NAME_LEN);
    }

    #[test]
    fn name_keys() {
        let k = NameKey::new(7, b"bond0").unwrap();
        assert_eq!(k.netns, 7);
        assert_eq!(&k.name[..6], b"bond0\0");
        assert!(NameKey::new(7, b"").is_none());
        assert!(NameKey::new(7, &[b'a'; NAME_LEN]).is_none());
        assert!(NameKey::new(7, &[b'a'; NAME_LEN - 1]).is_some());
        assert_ne!(NameKey::new(1, b"eth0"), NameKey::new(2, b"eth0"), "same name, other namespace");
    }
}
