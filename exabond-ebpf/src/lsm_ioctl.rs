//! Veto of the bonding enslave ioctls for refused devices on managed bonds: `SIOCBONDENSLAVE` (ifenslave)
//! and `BOND_ENSLAVE_OLD` (`SIOCDEVPRIVATE`, which old ifenslave tools fall back to; the driver's
//! `bond_siocdevprivate` maps it to the same enslave).
//!
//! LSM hooks: `int security_file_ioctl(struct file *file, unsigned int cmd, unsigned long arg)` (6.1 and
//! 6.12) and, where the kernel has it, `security_file_ioctl_compat` (the 32-bit path, same arguments;
//! the agent attaches it when the kernel's BTF has `bpf_lsm_file_ioctl_compat`). `arg` points to a user
//! `struct ifreq` (the compat one has the same first 32 bytes): `ifr_name[16]` (the bond) then
//! `ifr_slave[16]`. `dev_ioctl` resolves the names in the **socket's** network namespace (not the
//! caller's: a socket opened in one namespace keeps it), cutting the bond name at a `:` (alias suffix);
//! names may be alternative names.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::{NameKey, ENODEV, EOPNOTSUPP, NAME_LEN};
use exabond_common::veto_text::ifreq_names;

use crate::kernel::{load_btf, managed_netns, offset, offsets, read_ptr, read_user_bytes, sock_netns};
use crate::veto::veto;
use crate::{MANAGED_BY_NAME, SCRATCH, VERDICT_BY_NAME};

const SIOCBONDENSLAVE: u32 = 0x8990;
const BOND_ENSLAVE_OLD: u32 = 0x89f0;
const S_IFMT: u16 = 0o170_000;
const S_IFSOCK: u16 = 0o140_000;

/// Entry point (native ioctl).
#[lsm(hook = "file_ioctl")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_ioctl(ctx: LsmContext) -> i32 {
    enslave_ioctl(&ctx)
}

/// Entry point (32-bit compat ioctl, kernels with `security_file_ioctl_compat`).
#[lsm(hook = "file_ioctl_compat")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_ioctl_compat(ctx: LsmContext) -> i32 {
    enslave_ioctl(&ctx)
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn enslave_ioctl(ctx: &LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return crate::veto::refused_earlier();
    }
    let cmd: u32 = ctx.arg(1);
    if cmd != SIOCBONDENSLAVE && cmd != BOND_ENSLAVE_OLD {
        return 0;
    }
    let managed = managed_netns();
    if managed == 0 {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    // SAFETY: `file` is the hook's BTF-typed argument; `inode` was loaded from it.
    let inode: u64 = unsafe { load_btf(file, offset!(file_f_inode)) };
    if inode == 0 {
        return 0;
    }
    // SAFETY: as above.
    let mode: u16 = unsafe { load_btf(inode, offset!(inode_i_mode)) };
    if mode & S_IFMT != S_IFSOCK {
        return 0; // not a socket: the command means something else to that file
    }
    let errno = match try_enslave(ctx, file, managed) {
        Ok(e) => e,
        // The socket or the request cannot be read: refused (fail closed), as it may name a managed bond.
        Err(_) => veto(VetoWhat::Unparseable, 0, 0, EOPNOTSUPP, [0; 16]),
    };
    crate::veto::lsm_ret(errno)
}

#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn try_enslave(ctx: &LsmContext, file: u64, managed: u32) -> Result<u32, i64> {
    let o = offsets();
    let socket = read_ptr(file, o.file_private_data)?;
    let sk = read_ptr(socket, o.socket_sk)?;
    if sock_netns(sk, &o)? != managed {
        return Ok(0); // names resolve in a namespace without managed bonds
    }
    let arg: u64 = ctx.arg(2);
    let ifr: [u8; 32] = read_user_bytes(arg, 32)?;
    let (bond, member) = ifreq_names(&ifr);
    let scratch = SCRATCH.get_ptr_mut(0).ok_or(-12i64)?;
    // SAFETY: this CPU's slot, used by one program run at a time.
    let key = unsafe { &mut (*scratch).key };
    key.netns = managed;
    key.name = [0; NAME_LEN];
    copy16(key, &bond);
    // SAFETY: lookups in our own maps; values are copied at once.
    let Some(bond_ifindex) = (unsafe { MANAGED_BY_NAME.get(*key) }).copied() else {
        return Ok(0);
    };
    let Some(member) = member else {
        return Ok(veto(VetoWhat::MemberIoctl, bond_ifindex, 0, ENODEV, [0; 16]));
    };
    copy16(key, &member);
    // SAFETY: as above.
    let verdict = unsafe { VERDICT_BY_NAME.get(*key) }.copied().unwrap_or(ENODEV);
    if verdict == 0 {
        return Ok(0);
    }
    Ok(veto(VetoWhat::MemberIoctl, bond_ifindex, 0, verdict, member))
}

/// Put a 16-byte name at the start of `key`'s (zeroed) name.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn copy16(key: &mut NameKey, name: &[u8; 16]) {
    let mut i = 0;
    while i < 16 {
        key.name[i] = name[i];
        i += 1;
    }
}
