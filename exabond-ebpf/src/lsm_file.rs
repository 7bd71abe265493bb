//! Veto of writes to a managed bond's sysfs `bonding/mode` and `bonding/slaves` files.
//!
//! LSM hook (`include/linux/lsm_hook_defs.h`, 6.1 and 6.12):
//! `int security_file_permission(struct file *file, int mask)`, called by `rw_verify_area` for every
//! read/write path (write, pwrite64, writev, splice, `io_uring` ...). Only write(2) and pwrite64(2) carry the
//! data in registers we can read (`x86_64`: buffer in `si`, count in `dx`); any other write path to a guarded
//! file is refused with EOPNOTSUPP, because its content cannot be checked.

use aya_ebpf::{macros::lsm, programs::LsmContext};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::{ENODEV, EOPNOTSUPP, FILE_MODE, FILE_SLAVES};

use crate::kernel::{load_btf, offset, offsets, read, read_user_bytes, user_regs};
use crate::veto::veto;
use crate::{GUARDED_FILES, VERDICT_BY_NAME};

const MAY_WRITE: i32 = 2;
/// `SYSFS_MAGIC` (include/uapi/linux/magic.h): the guarded files are sysfs attributes.
const SYSFS_MAGIC: u64 = 0x6265_6572;
const NR_WRITE: u64 = 1;
const NR_PWRITE64: u64 = 18;

/// Entry point. A failure to read kernel memory allows the operation (never lock out the admin by a bug).
#[lsm(hook = "file_permission")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_permission(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return crate::veto::refused_earlier();
    }
    crate::veto::lsm_ret(try_file_permission(&ctx).unwrap_or(0))
}

fn try_file_permission(ctx: &LsmContext) -> Result<u32, i64> {
    let mask: i32 = ctx.arg(1);
    if mask & MAY_WRITE == 0 {
        return Ok(0);
    }
    // The hot path: every write(2) on the machine comes here. Three BTF-checked loads and a compare let
    // everything but sysfs go, with no helper call and no map lookup.
    let file: u64 = ctx.arg(0);
    // SAFETY: `file` is the hook's BTF-typed argument; each pointer below was loaded from one.
    let inode: u64 = unsafe { load_btf(file, offset!(file_f_inode)) };
    if inode == 0 {
        return Ok(0);
    }
    // SAFETY: as above.
    let sb: u64 = unsafe { load_btf(inode, offset!(inode_i_sb)) };
    if sb == 0 {
        return Ok(0);
    }
    // SAFETY: as above.
    let magic: u64 = unsafe { load_btf(sb, offset!(super_block_s_magic)) };
    if magic != SYSFS_MAGIC {
        return Ok(0);
    }
    // SAFETY: as above.
    let ino: u64 = unsafe { load_btf(inode, offset!(inode_i_ino)) };
    let o = offsets();
    // SAFETY: a lookup in our own map; the value is copied at once.
    let Some(guard) = (unsafe { GUARDED_FILES.get(ino) }).copied() else {
        return Ok(0);
    };
    let regs = user_regs();
    let nr: u64 = read(regs + u64::from(o.pt_regs_orig_ax))?;
    if nr != NR_WRITE && nr != NR_PWRITE64 {
        return Ok(veto(VetoWhat::UncheckedWritePath, guard.bond_ifindex, 0, EOPNOTSUPP, [0; 16]));
    }
    let buf: u64 = read(regs + u64::from(o.pt_regs_si))?;
    let count: u64 = read(regs + u64::from(o.pt_regs_dx))?;
    let data: [u8; 32] = read_user_bytes(buf, count)?;
    match guard.kind {
        FILE_MODE => {
            if count <= 31 && mode_is_active_backup(&data) {
                Ok(0)
            } else {
                Ok(veto(VetoWhat::ModeSysfs, guard.bond_ifindex, 0, EOPNOTSUPP, first16(&data)))
            }
        }
        FILE_SLAVES if data[0] == b'+' => {
            let name = member_name(&data);
            // SAFETY: a lookup in our own map; the value is copied at once.
            let verdict = unsafe { VERDICT_BY_NAME.get(name) }.copied().unwrap_or(ENODEV);
            if verdict == 0 {
                Ok(0)
            } else {
                Ok(veto(VetoWhat::MemberSysfs, guard.bond_ifindex, 0, verdict, name))
            }
        }
        _ => Ok(0),
    }
}

fn first16(d: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = d[i];
        i += 1;
    }
    out
}

fn is_space(c: u8) -> bool {
    c == b'\n' || c == b' ' || c == b'\t' || c == 0
}

/// The written value, trimmed of trailing blanks/NULs, is `active-backup` or `1`.
fn mode_is_active_backup(d: &[u8; 32]) -> bool {
    const AB: &[u8; 13] = b"active-backup";
    let mut ab = true;
    let mut i = 0;
    while i < 13 {
        if d[i] != AB[i] {
            ab = false;
        }
        i += 1;
    }
    if ab {
        return rest_blank(d, 13);
    }
    d[0] == b'1' && rest_blank(d, 1)
}

fn rest_blank(d: &[u8; 32], from: usize) -> bool {
    let mut i = from;
    while i < 32 {
        if !is_space(d[i]) {
            return false;
        }
        i += 1;
    }
    true
}

/// The device name after `+`, up to a blank, as a NUL-padded map key.
fn member_name(d: &[u8; 32]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    let mut end = false;
    while i < 15 {
        let c = d[i + 1];
        if is_space(c) {
            end = true;
        }
        if !end {
            out[i] = c;
        }
        i += 1;
    }
    out
}
