//! Reads of kernel memory at the offsets userspace handed over (no CO-RE in Rust eBPF).

use aya_ebpf::helpers::bpf_probe_read_kernel;
use exabond_common::offsets::KernelOffsets;

use crate::OFFSETS;

/// The offsets set at load time. A volatile read so the compiler does not fold the zero initialiser.
#[inline(always)]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a plain static; userspace rewrote its bytes before load.
    unsafe { core::ptr::read_volatile(&raw const OFFSETS) }
}

/// Read a kernel pointer stored at `base + off` (0 stays 0).
#[inline(always)]
pub fn read_ptr(base: u64, off: u32) -> Result<u64, i64> {
    if base == 0 {
        return Ok(0);
    }
    // SAFETY: bpf_probe_read_kernel checks the address; a fault returns an error.
    unsafe { bpf_probe_read_kernel((base + u64::from(off)) as *const u64) }.map_err(i64::from)
}

/// `dev->ifindex` of a `struct net_device *` (0 for NULL).
#[inline(always)]
pub fn netdev_ifindex(dev: u64, o: &KernelOffsets) -> Result<u32, i64> {
    if dev == 0 {
        return Ok(0);
    }
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel((dev + u64::from(o.net_device_ifindex)) as *const u32) }
        .map_err(i64::from)
}

/// `slave->dev->ifindex` of a `struct slave *` (0 for NULL).
#[inline(always)]
pub fn slave_ifindex(slave: u64, o: &KernelOffsets) -> Result<u32, i64> {
    netdev_ifindex(read_ptr(slave, o.slave_dev)?, o)
}
