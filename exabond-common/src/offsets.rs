//! Kernel struct field offsets needed by the eBPF programs.
//!
//! Rust eBPF has no CO-RE: the agent reads these from the running kernel's BTF
//! (`/sys/kernel/btf/vmlinux`, and `/sys/kernel/btf/bonding` for the bonding driver's own structs) and
//! hands them to the programs as one load-time global (`EbpfLoader::set_global("OFFSETS", ..)`). They
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
}

#[cfg(feature = "user")]
// SAFETY: four u32, no padding.
unsafe impl aya::Pod for KernelOffsets {}
