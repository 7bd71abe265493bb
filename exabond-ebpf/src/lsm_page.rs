//! The page guard: only the agent writes a bond page, as with the original driver (which refused writable
//! opens and mappings of `/dev/exabond-<bond>` to everyone, root included).
//!
//! LSM hooks (`include/linux/lsm_hook_defs.h`, 6.1 and 6.12), each refusing with EACCES when the object is
//! a page listed in `PAGE_INODES` and the caller is not the registered agent process (`AGENT`):
//! - `file_open(struct file *file)`: an open for writing (`f_mode & FMODE_WRITE`);
//! - `inode_setattr([struct mnt_idmap *idmap,] struct dentry *dentry, struct iattr *attr)`: chmod, chown,
//!   truncate (also `O_TRUNC` on a read-only open), utimes. The `idmap` argument exists from 6.3 on: two
//!   programs, userspace loads the one that matches the hook's BTF prototype;
//! - `inode_unlink(struct inode *dir, struct dentry *dentry)`: `rm`;
//! - `inode_rename(struct inode *old_dir, struct dentry *old_dentry, struct inode *new_dir,
//!   struct dentry *new_dentry)`: moving a page away, or replacing one by renaming another file over it;
//! - `mmap_file(struct file *file, unsigned long reqprot, unsigned long prot, unsigned long flags)` and
//!   `file_mprotect(struct vm_area_struct *vma, unsigned long reqprot, unsigned long prot)`: a writable
//!   mapping, shared or private (a private writable mapping changes nothing on the page, but the original
//!   refused it and a reader has no use for one). `mmap_file` also refuses a writable mapping of the fast
//!   words (`FAST_WORDS`, whose descriptor readers get read-write because the kernel maps no read-only BPF
//!   map descriptor at all): a file whose `f_op` is `bpf_map_fops` and whose map's id is in `FAST_GUARD`.
//!   (A read-only mapping of a map cannot be made writable by `mprotect`: the kernel drops `VM_MAYWRITE`.)
//!
//! Hot paths first: an open without write access, a mapping without `PROT_WRITE` and a file-less mapping
//! leave after one or two BTF-checked loads, with no helper call. A page's identity is its superblock's
//! device and its inode number (an inode number alone is only unique within one file system).

use aya_ebpf::programs::LsmContext;
use aya_ebpf::{bindings::bpf_pidns_info, helpers::generated::bpf_get_ns_current_pid_tgid, macros::lsm};
use exabond_common::event::VetoWhat;
use exabond_common::policy_maps::{PageInode, EACCES};

use crate::kernel::{load_btf, offset, offsets, read};
use crate::veto::{lsm_ret, refused_earlier, veto};
use crate::{AGENT, FAST_GUARD, PAGE_INODES};

/// `FMODE_WRITE` (include/linux/fs.h).
const FMODE_WRITE: u32 = 0x2;
/// `PROT_WRITE` (include/uapi/asm-generic/mman-common.h).
const PROT_WRITE: u64 = 0x2;

/// The bond of the page whose inode is `inode` (a BTF-typed `struct inode *`), if it is one.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn page_of(inode: u64) -> Option<u32> {
    if inode == 0 {
        return None;
    }
    // SAFETY: `inode` is BTF-typed (loaded from a hook argument); see `load_btf`.
    let sb: u64 = unsafe { load_btf(inode, offset!(inode_i_sb)) };
    if sb == 0 {
        return None;
    }
    // SAFETY: as above.
    let dev: u32 = unsafe { load_btf(sb, offset!(super_block_s_dev)) };
    // SAFETY: as above.
    let ino: u64 = unsafe { load_btf(inode, offset!(inode_i_ino)) };
    let key = PageInode { dev, _pad: 0, ino };
    // SAFETY: a lookup in our own map; the value is copied at once.
    unsafe { PAGE_INODES.get(key) }.copied()
}

/// The bond of the page behind `dentry` (a BTF-typed `struct dentry *`), if it is one.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn page_of_dentry(dentry: u64) -> Option<u32> {
    if dentry == 0 {
        return None;
    }
    // SAFETY: `dentry` is a BTF-typed hook argument.
    page_of(unsafe { load_btf(dentry, offset!(dentry_d_inode)) })
}

/// The bond of the page open as `file` (a BTF-typed `struct file *`), if it is one.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn page_of_file(file: u64) -> Option<u32> {
    if file == 0 {
        return None;
    }
    // SAFETY: `file` is BTF-typed (a hook argument or loaded from one).
    page_of(unsafe { load_btf(file, offset!(file_f_inode)) })
}

/// Whether `file` (a BTF-typed `struct file *`) is the fast words' map: its `f_op` is `bpf_map_fops`
/// (exact: no other file's private data is read as a map) and its map's id is the one in `FAST_GUARD`.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn is_fast_words(file: u64) -> bool {
    // SAFETY: a plain static set before load.
    let fops = unsafe { core::ptr::read_volatile(&raw const crate::BPF_MAP_FOPS) };
    if file == 0 || fops == 0 {
        return false;
    }
    let o = offsets();
    let Ok(f_op) = read::<u64>(file + u64::from(o.file_f_op)) else { return false };
    if f_op != fops {
        return false;
    }
    let Ok(map) = read::<u64>(file + u64::from(o.file_private_data)) else { return false };
    let Ok(id) = read::<u32>(map + u64::from(o.bpf_map_id)) else { return false };
    FAST_GUARD.get(0).is_some_and(|&g| g != 0 && g == id)
}

/// Whether the caller is the registered agent process. No agent registered, or a failed lookup of the
/// caller in the agent's PID namespace (the caller is outside it): not the agent.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn is_agent() -> bool {
    let Some(agent) = AGENT.get(0) else { return false };
    if agent.tgid == 0 {
        return false;
    }
    let mut info = bpf_pidns_info { pid: 0, tgid: 0 };
    #[expect(clippy::cast_possible_truncation, reason = "the size of an 8-byte struct")]
    // SAFETY: `info` is our own, of the size passed.
    let rc = unsafe {
        bpf_get_ns_current_pid_tgid(
            agent.pidns_dev,
            agent.pidns_ino,
            &raw mut info,
            core::mem::size_of::<bpf_pidns_info>() as u32,
        )
    };
    rc == 0 && info.tgid == agent.tgid
}

/// The verdict on an access to the page of `bond` (if any): allowed for the agent, EACCES for anyone else.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn judge(bond: Option<u32>, what: VetoWhat) -> i32 {
    match bond {
        Some(b) if !is_agent() => lsm_ret(veto(what, b, 0, EACCES, [0; 16])),
        _ => 0,
    }
}

/// Opens for writing.
#[lsm(hook = "file_open")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_open(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(1);
    if prev != 0 {
        return refused_earlier();
    }
    let file: u64 = ctx.arg(0);
    // SAFETY: `file` is the hook's BTF-typed argument.
    let mode: u32 = unsafe { load_btf(file, offset!(file_f_mode)) };
    if mode & FMODE_WRITE == 0 {
        return 0;
    }
    judge(page_of_file(file), VetoWhat::PageOpenWrite)
}

/// chmod, chown, truncate, utimes, on kernels from 6.3 on: `(idmap, dentry, attr)`. The agent loads
/// this program or [`inode_setattr_v61`], whichever matches the hook's BTF prototype (one program per
/// argument list: a load-time choice inside one program gets merged by the compiler into a computed
/// context offset, which the verifier refuses).
#[lsm(hook = "inode_setattr")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn inode_setattr(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return refused_earlier();
    }
    judge(page_of_dentry(ctx.arg(1)), VetoWhat::PageSetattr)
}

/// chmod, chown, truncate, utimes, on 6.1: `(dentry, attr)`.
#[lsm(hook = "inode_setattr")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn inode_setattr_v61(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return refused_earlier();
    }
    judge(page_of_dentry(ctx.arg(0)), VetoWhat::PageSetattr)
}

/// rm.
#[lsm(hook = "inode_unlink")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn inode_unlink(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(2);
    if prev != 0 {
        return refused_earlier();
    }
    judge(page_of_dentry(ctx.arg(1)), VetoWhat::PageUnlink)
}

/// mv of a page, or of another file over a page.
#[lsm(hook = "inode_rename")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn inode_rename(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(4);
    if prev != 0 {
        return refused_earlier();
    }
    let bond = page_of_dentry(ctx.arg(1)).or_else(|| page_of_dentry(ctx.arg(3)));
    judge(bond, VetoWhat::PageRename)
}

/// mmap with `PROT_WRITE`.
#[lsm(hook = "mmap_file")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn mmap_file(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(4);
    if prev != 0 {
        return refused_earlier();
    }
    let prot: u64 = ctx.arg(2);
    if prot & PROT_WRITE == 0 {
        return 0;
    }
    // An anonymous mapping has no file. The verifier takes an LSM hook's pointer arguments for trusted and
    // never NULL, and prunes a NULL test of them as dead code (then a load through NULL is a kernel oops):
    // the test is made on the argument read as plain bytes, which the verifier cannot reason about.
    let Ok(raw) = read::<u64>(aya_ebpf::EbpfContext::as_ptr(&ctx) as u64) else { return 0 };
    if raw == 0 {
        return 0;
    }
    let file: u64 = ctx.arg(0);
    match page_of_file(file) {
        Some(bond) => judge(Some(bond), VetoWhat::PageMapWrite),
        None if is_fast_words(file) => judge(Some(0), VetoWhat::FastMapWrite),
        None => 0,
    }
}

/// mprotect adding `PROT_WRITE` to a mapping of a page.
#[lsm(hook = "file_mprotect")]
#[expect(clippy::needless_pass_by_value, reason = "the signature aya-ebpf's program macro calls")]
pub fn file_mprotect(ctx: LsmContext) -> i32 {
    let prev: i32 = ctx.arg(3);
    if prev != 0 {
        return refused_earlier();
    }
    let prot: u64 = ctx.arg(2);
    if prot & PROT_WRITE == 0 {
        return 0;
    }
    let vma: u64 = ctx.arg(0);
    if vma == 0 {
        return 0;
    }
    // SAFETY: `vma` is the hook's BTF-typed argument.
    let file: u64 = unsafe { load_btf(vma, offset!(vm_area_struct_vm_file)) };
    judge(page_of_file(file), VetoWhat::PageMapWrite)
}
