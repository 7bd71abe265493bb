//! Veto of writes to a managed bond's sysfs `bonding/mode` and `bonding/slaves` files.
//!
//! LSM hook (`include/linux/lsm_hook_defs.h`, 6.1 and 6.12):
//! `int security_file_permission(struct file *file, int mask)`, called by `rw_verify_area` for every
//! read/write path (write, pwrite64, writev, splice, `io_uring` ...). The data of write(2)/pwrite64(2)
//! (`x86_64`: buffer in `si`, count in `dx`) and of writev(2)/pwritev(2)/pwritev2(2) (iovec array in `si`,
//! count in `dx`; kernfs hands the driver the segments joined) is read from the caller's memory and judged
//! as the driver will read it (`exabond_common::veto_text`). Paths whose data is not in the caller's
//! registers (splice, sendfile, `copy_file_range`, `io_uring`, 32-bit compat syscalls) are refused with
//! EOPNOTSUPP; so is data the program cannot read (a page not faulted in yet) or that goes past what it
//! reads (fail closed).

use aya_ebpf::{macros::lsm, programs::LsmContext};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::{ENODEV, EOPNOTSUPP, FILE_MODE, FILE_SLAVES, NAME_LEN};
use exabond_common::veto_text::{mode_text, slaves_text, ModeText, Scan, SlavesText, TEXT_LEN};

use crate::kernel::{load_btf, managed_netns, offset, offsets, read, user_regs};
use crate::veto::veto;
use crate::{GUARDED_FILES, SCRATCH, VERDICT_BY_NAME};

const MAY_WRITE: i32 = 2;
/// `SYSFS_MAGIC` (include/uapi/linux/magic.h): the guarded files are sysfs attributes.
const SYSFS_MAGIC: u64 = 0x6265_6572;
const NR_WRITE: u64 = 1;
const NR_PWRITE64: u64 = 18;
const NR_WRITEV: u64 = 20;
const NR_PWRITEV: u64 = 296;
const NR_PWRITEV2: u64 = 328;
/// iovec segments read from a writev; more segments before [`TEXT_LEN`] bytes are refused.
const MAX_IOV: u32 = 8;

/// Entry point. Anything the program cannot read on a guarded file is refused (fail closed).
#[lsm(hook = "file_permission")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_permission(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return crate::veto::refused_earlier();
    }
    crate::veto::lsm_ret(try_file_permission(&ctx))
}

fn try_file_permission(ctx: &LsmContext) -> u32 {
    let mask: i32 = ctx.arg(1);
    if mask & MAY_WRITE == 0 {
        return 0;
    }
    // The hot path: every write(2) on the machine comes here. Three BTF-checked loads and a compare let
    // everything but sysfs go, with no helper call and no map lookup.
    let file: u64 = ctx.arg(0);
    // SAFETY: `file` is the hook's BTF-typed argument; each pointer below was loaded from one.
    let inode: u64 = unsafe { load_btf(file, offset!(file_f_inode)) };
    if inode == 0 {
        return 0;
    }
    // SAFETY: as above.
    let sb: u64 = unsafe { load_btf(inode, offset!(inode_i_sb)) };
    if sb == 0 {
        return 0;
    }
    // SAFETY: as above.
    let magic: u64 = unsafe { load_btf(sb, offset!(super_block_s_magic)) };
    if magic != SYSFS_MAGIC {
        return 0;
    }
    // SAFETY: as above.
    let ino: u64 = unsafe { load_btf(inode, offset!(inode_i_ino)) };
    // SAFETY: a lookup in our own map; the value is copied at once.
    let Some(guard) = (unsafe { GUARDED_FILES.get(ino) }).copied() else {
        return 0;
    };
    // From here on the file is guarded: what cannot be read is refused.
    let Some(scratch) = SCRATCH.get_ptr_mut(0) else {
        return veto(VetoWhat::Unparseable, guard.bond_ifindex, 0, EOPNOTSUPP, [0; 16]);
    };
    // SAFETY: this CPU's slot, used by one program run at a time.
    let scratch = unsafe { &mut *scratch };
    let count = match written_text(&mut scratch.text, &mut scratch.scan) {
        Err(_) => return veto(VetoWhat::Unparseable, guard.bond_ifindex, 0, EOPNOTSUPP, [0; 16]),
        Ok(None) => return veto(VetoWhat::UncheckedWritePath, guard.bond_ifindex, 0, EOPNOTSUPP, [0; 16]),
        Ok(Some(c)) => c,
    };
    // SAFETY: the first TEXT_LEN bytes of a 2 * TEXT_LEN array.
    let data: &[u8; TEXT_LEN] = unsafe { &*scratch.text.as_ptr().cast::<[u8; TEXT_LEN]>() };
    match guard.kind {
        FILE_MODE => match mode_text(data, count, &mut scratch.scan) {
            ModeText::ActiveBackup => 0,
            ModeText::Other => veto(VetoWhat::ModeSysfs, guard.bond_ifindex, 0, EOPNOTSUPP, first16(data)),
            ModeText::Bound => veto(VetoWhat::Unparseable, guard.bond_ifindex, 0, EOPNOTSUPP, first16(data)),
        },
        FILE_SLAVES => match slaves_text(data, count, &mut scratch.scan) {
            SlavesText::NoEnslave => 0,
            SlavesText::Bound => veto(VetoWhat::Unparseable, guard.bond_ifindex, 0, EOPNOTSUPP, first16(data)),
            SlavesText::Enslave(name) => {
                // The driver resolves the name in the bond's namespace: the managed one.
                let key = &mut scratch.key;
                key.netns = managed_netns();
                key.name = [0; NAME_LEN];
                let mut i = 0;
                while i < 16 {
                    key.name[i] = name[i];
                    i += 1;
                }
                // SAFETY: a lookup in our own map; the value is copied at once.
                let verdict = unsafe { VERDICT_BY_NAME.get(*key) }.copied().unwrap_or(ENODEV);
                if verdict == 0 {
                    0
                } else {
                    veto(VetoWhat::MemberSysfs, guard.bond_ifindex, 0, verdict, name)
                }
            }
        },
        _ => 0,
    }
}

/// Put the first [`TEXT_LEN`] bytes the current syscall writes in `buf` and return its total count;
/// `None` for a path whose data is not in its arguments. `Err` when user memory cannot be read.
fn written_text(buf: &mut [u8; 2 * TEXT_LEN], scan: &mut Scan) -> Result<Option<u64>, i64> {
    let o = offsets();
    let regs = user_regs();
    let nr: u64 = read(regs + u64::from(o.pt_regs_orig_ax))?;
    let si: u64 = read(regs + u64::from(o.pt_regs_si))?;
    let dx: u64 = read(regs + u64::from(o.pt_regs_dx))?;
    if nr == NR_WRITE || nr == NR_PWRITE64 {
        copy_user(buf, 0, si, dx)?;
        return Ok(Some(dx));
    }
    if nr != NR_WRITEV && nr != NR_PWRITEV && nr != NR_PWRITEV2 {
        return Ok(None);
    }
    let mut pos: u64 = 0;
    let mut total: u64 = 0;
    let mut i: u32 = 0;
    while i < MAX_IOV {
        if u64::from(i) >= dx {
            return Ok(Some(total));
        }
        let base: u64 = read_user(si + u64::from(i) * 16)?;
        let len: u64 = read_user(si + u64::from(i) * 16 + 8)?;
        if pos < TEXT_LEN as u64 {
            pos += copy_user(buf, pos, base, len)?;
        }
        total = total.saturating_add(len);
        // Kept in map memory and loaded back: one unknown value each, so the verifier's paths through this
        // loop (a segment copied or not, a count saturated or not) merge at every iteration.
        #[expect(clippy::cast_possible_truncation, reason = "eBPF and the host are 64-bit")]
        {
            pos = scan.keep(0, pos as usize) as u64;
            total = scan.keep(1, total as usize) as u64;
        }
        i += 1;
    }
    if u64::from(MAX_IOV) < dx {
        if pos < TEXT_LEN as u64 {
            return Err(-7); // E2BIG: more segments than read before the text is decided
        }
        return Ok(Some(u64::MAX)); // TEXT_LEN bytes read; the text goes on
    }
    Ok(Some(total))
}

/// Copy up to `TEXT_LEN - pos` bytes of user memory at `src` (at most `len`) to `buf[pos..]`; returns how
/// many.
#[expect(clippy::cast_possible_truncation, reason = "masked to TEXT_LEN - 1 / TEXT_LEN, which the verifier sees")]
fn copy_user(buf: &mut [u8; 2 * TEXT_LEN], pos: u64, src: u64, len: u64) -> Result<u64, i64> {
    let room = TEXT_LEN as u64 - pos;
    let n = if len < room { len } else { room };
    // The compiler knows n <= room <= TEXT_LEN and would drop the mask; 6.1's verifier does not learn
    // bounds from a comparison of two unknown values (`len < room`), so the mask must stay: a volatile read.
    // SAFETY: a read of a local.
    let n32 = (unsafe { core::ptr::read_volatile(&raw const n) } as u32) & (TEXT_LEN as u32 * 2 - 1);
    if n32 == 0 {
        return Ok(0);
    }
    let at = (pos as usize) & (TEXT_LEN - 1);
    // SAFETY: at < TEXT_LEN and n32 <= TEXT_LEN bytes into a buffer of 2 * TEXT_LEN; the helper checks the
    // user address (and fails on a page not faulted in, which the caller refuses).
    let rc = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            buf.as_mut_ptr().add(at).cast(),
            n32,
            src as *const core::ffi::c_void,
        )
    };
    if rc < 0 {
        return Err(rc);
    }
    Ok(u64::from(n32))
}

/// A `T` from user memory.
fn read_user<T>(addr: u64) -> Result<T, i64> {
    // SAFETY: bpf_probe_read_user checks the address; a fault returns an error.
    unsafe { aya_ebpf::helpers::bpf_probe_read_user(addr as *const T) }.map_err(i64::from)
}

fn first16(d: &[u8; TEXT_LEN]) -> [u8; 16] {
    let mut out = [0u8; 16];
    let mut i = 0;
    while i < 16 {
        out[i] = d[i];
        i += 1;
    }
    out
}
