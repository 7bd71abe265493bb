//! Reads of kernel and user memory at the offsets userspace handed over (no CO-RE in Rust eBPF).

use aya_ebpf::helpers::{bpf_get_current_task_btf, bpf_probe_read_kernel, bpf_task_pt_regs};
use exabond_common::offsets::KernelOffsets;

use crate::OFFSETS;

/// The offsets set at load time. A volatile read so the compiler does not fold the zero initialiser.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn offsets() -> KernelOffsets {
    // SAFETY: a plain static; userspace rewrote its bytes before load.
    unsafe { core::ptr::read_volatile(&raw const OFFSETS) }
}

/// One field of the load-time offsets: a single load from the frozen read-only global, which the verifier
/// reads as a known constant (so a pointer plus this offset is still checked against BTF).
macro_rules! offset {
    ($field:ident) => {{
        #[expect(
            unused_unsafe,
            reason = "every use sits in a `load_btf` call's unsafe block; the macro stays sound alone"
        )]
        // SAFETY: a plain static; userspace rewrote its bytes before load.
        let v = unsafe { core::ptr::read_volatile(&raw const crate::OFFSETS.$field) };
        v
    }};
}
pub(crate) use offset;

/// Load a `T` at `base + off` where `base` is a BTF-typed kernel pointer (an LSM hook argument, or a pointer
/// field loaded from one this way) and `off` comes from [`offset!`]. The verifier checks the access against
/// the kernel's BTF and turns it into a fault-safe load: no helper call, which matters on hot hooks.
///
/// # Safety
/// Only for BTF-typed pointers; anything else is rejected by the verifier at load time.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub unsafe fn load_btf<T: Copy>(base: u64, off: u32) -> T {
    // SAFETY: see above; the kernel makes a faulting load read zero.
    unsafe { core::ptr::read((base + u64::from(off)) as *const T) }
}

/// Read a `T` from kernel memory at `addr`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn read<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_kernel checks the address; a fault returns an error.
    unsafe { bpf_probe_read_kernel(addr as *const T) }.map_err(i64::from)
}

/// Read a kernel pointer stored at `base + off` (0 stays 0).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn read_ptr(base: u64, off: u32) -> Result<u64, i64> {
    if base == 0 {
        return Ok(0);
    }
    read(base + u64::from(off))
}

/// `dev->ifindex` of a `struct net_device *` (0 for NULL).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn netdev_ifindex(dev: u64, o: &KernelOffsets) -> Result<u32, i64> {
    if dev == 0 {
        return Ok(0);
    }
    read(dev + u64::from(o.net_device_ifindex))
}

/// `slave->dev->ifindex` of a `struct slave *` (0 for NULL).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn slave_ifindex(slave: u64, o: &KernelOffsets) -> Result<u32, i64> {
    netdev_ifindex(read_ptr(slave, o.slave_dev)?, o)
}

/// The current task's user registers (`x86_64` `struct pt_regs`), as an address.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[expect(clippy::cast_sign_loss, reason = "an address, which the helper returns as a long")]
pub fn user_regs() -> u64 {
    // SAFETY: bpf_get_current_task_btf returns the trusted current task; bpf_task_pt_regs takes it.
    unsafe { bpf_task_pt_regs(bpf_get_current_task_btf()) as u64 }
}

/// Copy up to `N` bytes of user memory at `src` (at most `len`) into a zeroed buffer.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[expect(clippy::cast_possible_truncation, reason = "`n` <= N, a small buffer's size; the verifier sees the bound")]
pub fn read_user_bytes<const N: usize>(src: u64, len: u64) -> Result<[u8; N], i64> {
    let mut buf = [0u8; N];
    let n = if len > N as u64 { N as u32 } else { len as u32 };
    if n == 0 {
        return Ok(buf);
    }
    // SAFETY: `n` <= N bytes into our own buffer; the helper checks the user address.
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(buf.as_mut_ptr().cast(), n, src as *const core::ffi::c_void)
    };
    if rc < 0 {
        return Err(rc);
    }
    Ok(buf)
}

/// The network namespace (`net->ns.inum`) of a `struct net *` (0 for NULL).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn net_inum(net: u64, o: &KernelOffsets) -> Result<u32, i64> {
    if net == 0 {
        return Ok(0);
    }
    read(net + u64::from(o.net_ns_inum))
}

/// The network namespace of a `struct net_device *` (`dev_net(dev)`), as an inode number.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn netdev_netns(dev: u64, o: &KernelOffsets) -> Result<u32, i64> {
    net_inum(read_ptr(dev, o.net_device_nd_net)?, o)
}

/// The network namespace of a `struct sock *` (`sock_net(sk)`), as an inode number.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn sock_netns(sk: u64, o: &KernelOffsets) -> Result<u32, i64> {
    net_inum(read_ptr(sk, o.sock_net)?, o)
}

/// The namespace whose bonds are managed (0: none anywhere).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn managed_netns() -> u32 {
    crate::MANAGED_NETNS.get(0).copied().unwrap_or(0)
}
