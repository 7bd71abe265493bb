//! Kernel struct field offsets needed by the eBPF programs.
//!
//! Rust eBPF has no CO-RE: the agent reads these from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`, and `/sys/kernel/btf/bonding` for the bonding driver's own structs) and
//! hands them to the programs as one load-time global (`EbpfLoader::override_global("OFFSETS", ..)`). They
//! differ between kernels (`net_device.ifindex` is 224 on 6.12 and 216 on 6.1), so never hard-code them.

/// Byte offsets of the fields the eBPF programs read.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    /// `struct bonding.dev` (`struct net_device *`).
    pub bonding_dev: u32,
    /// `struct bonding.curr_active_slave` (`struct slave __rcu *`).
    pub bonding_curr_active_slave: u32,
    /// `struct slave.dev` (`struct net_device *`).
    pub slave_dev: u32,
    /// `struct net_device.ifindex` (`int`).
    pub net_device_ifindex: u32,
    /// `struct file.f_inode` (`struct inode *`).
    pub file_f_inode: u32,
    /// `struct inode.i_ino` (`unsigned long`).
    pub inode_i_ino: u32,
    /// `struct inode.i_sb` (`struct super_block *`).
    pub inode_i_sb: u32,
    /// `struct super_block.s_magic` (`unsigned long`).
    pub super_block_s_magic: u32,
    /// `struct sock.sk_protocol` (`u16`).
    pub sock_sk_protocol: u32,
    /// `struct sk_buff.data` (`unsigned char *`).
    pub sk_buff_data: u32,
    /// `struct sk_buff.len` (`unsigned int`).
    pub sk_buff_len: u32,
    /// `struct pt_regs.orig_ax` (`x86_64`: the syscall number).
    pub pt_regs_orig_ax: u32,
    /// `struct pt_regs.si` (`x86_64`: 2nd syscall argument).
    pub pt_regs_si: u32,
    /// `struct pt_regs.dx` (`x86_64`: 3rd syscall argument).
    pub pt_regs_dx: u32,
    /// `struct bond_opt_value.value` (`u64`).
    pub bond_opt_value_value: u32,
    /// `struct file.f_mode` (`fmode_t`, 32 bits).
    pub file_f_mode: u32,
    /// `struct super_block.s_dev` (`dev_t`, the kernel's encoding: major << 20 | minor).
    pub super_block_s_dev: u32,
    /// `struct dentry.d_inode` (`struct inode *`).
    pub dentry_d_inode: u32,
    /// `struct vm_area_struct.vm_file` (`struct file *`).
    pub vm_area_struct_vm_file: u32,
    /// Index of the `struct dentry *` argument of the `inode_setattr` LSM hook: 0 on 6.1
    /// (`dentry, attr`), 1 from 6.3 on (`idmap, dentry, attr`). Read from the hook's BTF prototype; the
    /// agent loads the program written for that argument list (not read by the programs themselves).
    pub inode_setattr_dentry_arg: u32,
    /// `struct sock.__sk_common.skc_net.net` (`struct net *`): the socket's network namespace.
    pub sock_net: u32,
    /// `struct net.ns.inum` (`unsigned int`): the namespace's inode number.
    pub net_ns_inum: u32,
    /// `struct net_device.nd_net.net` (`struct net *`).
    pub net_device_nd_net: u32,
    /// `struct file.private_data` (`void *`; a `struct socket *` for a socket).
    pub file_private_data: u32,
    /// `struct socket.sk` (`struct sock *`).
    pub socket_sk: u32,
    /// `struct inode.i_mode` (`umode_t`, 16 bits).
    pub inode_i_mode: u32,
    /// `struct pt_regs.di` (`x86_64`: 1st syscall argument).
    pub pt_regs_di: u32,
    /// From a `struct net_device` to its private area (`netdev_priv`: a bond's `struct bonding`): the
    /// `priv` member where the kernel has one (6.12), else `sizeof(struct net_device)` aligned to 32 (6.1).
    pub net_device_priv: u32,
    /// `struct mutex.owner` (`atomic_long_t`: the owning task, flags in its low 3 bits).
    pub mutex_owner: u32,
    /// `struct file.f_op` (`const struct file_operations *`).
    pub file_f_op: u32,
    /// `struct bpf_map.id` (`u32`).
    pub bpf_map_id: u32,
}

#[cfg(feature = "user")]
// SAFETY: u32 fields only, no padding.
unsafe impl aya::Pod for KernelOffsets {}
