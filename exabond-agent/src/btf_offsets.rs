//! Kernel struct offsets for the eBPF programs, read from the running kernel's BTF.
//!
//! `struct net_device` is in `/sys/kernel/btf/vmlinux`; `struct bonding` and `struct slave` are in the
//! bonding module's split BTF, `/sys/kernel/btf/bonding` (present once the module is loaded).

use std::path::{Path, PathBuf};

use btf_rs::{Btf, Type};
use exabond_common::offsets::KernelOffsets;

/// Errors while reading offsets from BTF.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    /// A BTF file could not be read or parsed.
    #[error("cannot read BTF {path}: {source}{hint}")]
    Btf {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: btf_rs::Error,
        /// What to do.
        hint: &'static str,
    },
    /// The struct is not in the BTF.
    #[error("struct {0} not found in the kernel's BTF")]
    NoStruct(&'static str),
    /// The member is not in the struct.
    #[error("struct {0} has no member {1} in the kernel's BTF")]
    NoMember(&'static str, &'static str),
    /// An LSM hook whose argument list is not one the programs know.
    #[error("the kernel's LSM hook {hook} takes {found} arguments; exabond knows it with {expected}: this kernel is not supported by this agent version")]
    HookArgs {
        /// The hook.
        hook: &'static str,
        /// Arguments found in BTF (`bpf_lsm_<hook>`).
        found: usize,
        /// What the programs expect.
        expected: &'static str,
    },
    /// A bitfield where a whole field was expected.
    #[error("{0}.{1} is not byte-aligned")]
    Unaligned(&'static str, &'static str),
}

/// Read the offsets from `btf_dir` (normally `/sys/kernel/btf`).
///
/// # Errors
/// [`OffsetsError`] naming the missing file, struct or member.
pub fn read(btf_dir: &Path) -> Result<KernelOffsets, OffsetsError> {
    read_with_hooks(btf_dir, &[]).map(|(o, _)| o)
}

/// [`read`], and which of the LSM hooks `optional` the kernel has, from one parse of its BTF (a parse of
/// vmlinux BTF costs megabytes of heap for a moment; once is enough).
///
/// # Errors
/// As [`read`].
pub fn read_with_hooks(
    btf_dir: &Path,
    optional: &[&'static str],
) -> Result<(KernelOffsets, Vec<&'static str>), OffsetsError> {
    let vmlinux_path = btf_dir.join("vmlinux");
    let vmlinux = Btf::from_file(&vmlinux_path).map_err(|source| OffsetsError::Btf {
        path: vmlinux_path,
        source,
        hint: " (the kernel needs CONFIG_DEBUG_INFO_BTF=y)",
    })?;
    let bonding_path = btf_dir.join("bonding");
    let bonding = Btf::from_split_file(&bonding_path, &vmlinux).map_err(|source| OffsetsError::Btf {
        path: bonding_path,
        source,
        hint: " (the bonding module is not loaded: the agent needs its BTF for struct offsets and refuses to start without it; load it first with `modprobe bonding max_bonds=0`, then start the agent)",
    })?;
    let present = optional.iter().copied().filter(|h| hook_args(&vmlinux, h).is_some()).collect();
    let offsets = KernelOffsets {
        bonding_dev: member_offset(&bonding, "bonding", "dev")?,
        bonding_curr_active_slave: member_offset(&bonding, "bonding", "curr_active_slave")?,
        slave_dev: member_offset(&bonding, "slave", "dev")?,
        net_device_ifindex: member_offset(&vmlinux, "net_device", "ifindex")?,
        file_f_inode: member_offset(&vmlinux, "file", "f_inode")?,
        inode_i_ino: member_offset(&vmlinux, "inode", "i_ino")?,
        inode_i_sb: member_offset(&vmlinux, "inode", "i_sb")?,
        super_block_s_magic: member_offset(&vmlinux, "super_block", "s_magic")?,
        sock_sk_protocol: member_offset(&vmlinux, "sock", "sk_protocol")?,
        sk_buff_data: member_offset(&vmlinux, "sk_buff", "data")?,
        sk_buff_len: member_offset(&vmlinux, "sk_buff", "len")?,
        pt_regs_orig_ax: member_offset(&vmlinux, "pt_regs", "orig_ax")?,
        pt_regs_si: member_offset(&vmlinux, "pt_regs", "si")?,
        pt_regs_dx: member_offset(&vmlinux, "pt_regs", "dx")?,
        bond_opt_value_value: member_offset(&bonding, "bond_opt_value", "value")?,
        file_f_mode: member_offset(&vmlinux, "file", "f_mode")?,
        super_block_s_dev: member_offset(&vmlinux, "super_block", "s_dev")?,
        dentry_d_inode: member_offset(&vmlinux, "dentry", "d_inode")?,
        vm_area_struct_vm_file: member_offset(&vmlinux, "vm_area_struct", "vm_file")?,
        inode_setattr_dentry_arg: page_hook_args(&vmlinux)?,
        // `possible_net_t` is `struct { struct net *net; }`: its one member is at 0.
        sock_net: member_offset(&vmlinux, "sock", "__sk_common")? + member_offset(&vmlinux, "sock_common", "skc_net")?,
        net_ns_inum: member_offset(&vmlinux, "net", "ns")? + member_offset(&vmlinux, "ns_common", "inum")?,
        net_device_nd_net: member_offset(&vmlinux, "net_device", "nd_net")?,
        file_private_data: member_offset(&vmlinux, "file", "private_data")?,
        socket_sk: member_offset(&vmlinux, "socket", "sk")?,
        inode_i_mode: member_offset(&vmlinux, "inode", "i_mode")?,
        pt_regs_di: member_offset(&vmlinux, "pt_regs", "di")?,
        net_device_priv: netdev_priv(&vmlinux)?,
        mutex_owner: member_offset(&vmlinux, "mutex", "owner")?,
        file_f_op: member_offset(&vmlinux, "file", "f_op")?,
        bpf_map_id: member_offset(&vmlinux, "bpf_map", "id")?,
    };
    Ok((offsets, present))
}

/// Where `netdev_priv()` finds a device's private area: the `priv` member of `struct net_device` where
/// the kernel has one (6.12), else the size of `struct net_device` aligned to `NETDEV_ALIGN` (32), as 6.1's
/// `netdev_priv` computes it.
///
/// # Errors
/// [`OffsetsError::NoStruct`] without `struct net_device`.
pub fn netdev_priv(vmlinux: &Btf) -> Result<u32, OffsetsError> {
    match member_offset(vmlinux, "net_device", "priv") {
        Ok(off) => Ok(off),
        Err(OffsetsError::NoMember(..)) => {
            let types =
                vmlinux.resolve_types_by_name("net_device").map_err(|_| OffsetsError::NoStruct("net_device"))?;
            let size = types
                .iter()
                .find_map(|t| if let Type::Struct(s) = t { Some(s.size()) } else { None })
                .ok_or(OffsetsError::NoStruct("net_device"))?;
            u32::try_from(size.div_ceil(32) * 32).map_err(|_| OffsetsError::NoStruct("net_device"))
        }
        Err(e) => Err(e),
    }
}

/// The number of arguments of LSM hook `hook`, from the BTF prototype of its BPF attach point
/// `bpf_lsm_<hook>`.
fn hook_args(btf: &Btf, hook: &str) -> Option<usize> {
    let types = btf.resolve_types_by_name(&format!("bpf_lsm_{hook}")).ok()?;
    types.iter().find_map(|t| match t {
        Type::Func(f) => match btf.resolve_chained_type(f).ok()? {
            Type::FuncProto(p) => Some(p.parameters.len()),
            _ => None,
        },
        _ => None,
    })
}

/// Check the argument lists of the page guard's hooks (`exabond-ebpf/src/lsm_page.rs`) and return the
/// index of `inode_setattr`'s dentry: 0 for `(dentry, attr)` (6.1), 1 for `(idmap, dentry, attr)` (6.3+).
///
/// # Errors
/// [`OffsetsError::HookArgs`] for an argument list the programs would misread.
pub fn page_hook_args(btf: &Btf) -> Result<u32, OffsetsError> {
    for (hook, n) in
        [("file_open", 1), ("inode_unlink", 2), ("inode_rename", 4), ("mmap_file", 4), ("file_mprotect", 3)]
    {
        let found = hook_args(btf, hook).unwrap_or(0);
        if found != n {
            return Err(OffsetsError::HookArgs { hook, found, expected: ["", "1", "2", "3", "4"][n] });
        }
    }
    match hook_args(btf, "inode_setattr").unwrap_or(0) {
        2 => Ok(0),
        3 => Ok(1),
        found => Err(OffsetsError::HookArgs { hook: "inode_setattr", found, expected: "2 or 3" }),
    }
}

/// Byte offset of `member` in `struct name`, looking through anonymous structs and unions.
///
/// # Errors
/// [`OffsetsError::NoStruct`] / [`OffsetsError::NoMember`] / [`OffsetsError::Unaligned`].
pub fn member_offset(btf: &Btf, name: &'static str, member: &'static str) -> Result<u32, OffsetsError> {
    let types = btf.resolve_types_by_name(name).map_err(|_| OffsetsError::NoStruct(name))?;
    let st = types
        .iter()
        .find_map(|t| if let Type::Struct(s) = t { Some(s) } else { None })
        .ok_or(OffsetsError::NoStruct(name))?;
    let bits = find_member(btf, st, member).ok_or(OffsetsError::NoMember(name, member))?;
    if bits % 8 != 0 {
        return Err(OffsetsError::Unaligned(name, member));
    }
    Ok(bits / 8)
}

fn find_member(btf: &Btf, st: &btf_rs::Struct, member: &str) -> Option<u32> {
    for m in &st.members {
        let mname = btf.resolve_name(m).unwrap_or_default();
        if mname == member {
            return Some(m.bit_offset());
        }
        if mname.is_empty() {
            if let Some(inner) = struct_of(btf, m) {
                if let Some(off) = find_member(btf, &inner, member) {
                    return Some(m.bit_offset() + off);
                }
            }
        }
    }
    None
}

/// The struct/union a member's type resolves to (through typedefs and qualifiers).
fn struct_of(btf: &Btf, m: &btf_rs::Member) -> Option<btf_rs::Struct> {
    let mut t = btf.resolve_chained_type(m).ok()?;
    for _ in 0..8 {
        match t {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            Type::Typedef(ref x) => t = btf.resolve_chained_type(x).ok()?,
            Type::Const(ref x) | Type::Volatile(ref x) => t = btf.resolve_chained_type(x).ok()?,
            _ => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This machine's kernel has no bonding module, but its vmlinux BTF is there: the generic lookup is
    /// checked on it (`net_device.ifindex` is an `int` at a byte offset in every kernel). The bonding
    /// structs are checked in the VM test bed.
    #[test]
    fn net_device_ifindex_from_host_btf() {
        let path = Path::new("/sys/kernel/btf/vmlinux");
        if !path.exists() {
            eprintln!("skipped: {} absent (kernel without BTF)", path.display());
            return;
        }
        let btf = Btf::from_file(path).unwrap();
        let off = member_offset(&btf, "net_device", "ifindex").unwrap();
        assert!(off > 0 && off < 4096, "{off}");
        assert!(matches!(member_offset(&btf, "net_device", "no_such_member"), Err(OffsetsError::NoMember(..))));
        assert!(matches!(member_offset(&btf, "no_such_struct_xyz", "x"), Err(OffsetsError::NoStruct(_))));
        // A member inside an anonymous union/struct: sk_buff.len is plain, sk_buff.next is in an anonymous
        // union of a struct in every supported kernel.
        assert_eq!(member_offset(&btf, "sk_buff", "next").unwrap(), 0);
        // netdev_priv: past the device, cache-aligned either way (priv member or aligned size).
        let p = netdev_priv(&btf).unwrap();
        assert!(p > member_offset(&btf, "net_device", "ifindex").unwrap() && p % 32 == 0, "{p}");
        assert_eq!(member_offset(&btf, "mutex", "owner").unwrap(), 0, "atomic_long_t owner leads struct mutex");
        // The LSM programs' fields exist on this kernel too.
        for (st, m) in
            [("file", "f_inode"), ("inode", "i_ino"), ("sock", "sk_protocol"), ("sk_buff", "data"), ("sk_buff", "len")]
        {
            member_offset(&btf, st, m).unwrap_or_else(|e| panic!("{e}"));
        }
        assert_eq!(member_offset(&btf, "pt_regs", "orig_ax").unwrap(), 120, "x86_64 pt_regs");
        assert_eq!(member_offset(&btf, "pt_regs", "si").unwrap(), 104);
        assert_eq!(member_offset(&btf, "pt_regs", "dx").unwrap(), 96);
        assert_eq!(member_offset(&btf, "pt_regs", "di").unwrap(), 112);
        // The namespace fields the vetoes read.
        for (st, m) in [
            ("sock", "__sk_common"),
            ("sock_common", "skc_net"),
            ("net", "ns"),
            ("ns_common", "inum"),
            ("net_device", "nd_net"),
            ("file", "private_data"),
            ("socket", "sk"),
            ("inode", "i_mode"),
        ] {
            member_offset(&btf, st, m).unwrap_or_else(|e| panic!("{e}"));
        }
        // The page guard's hooks have the argument lists its programs read (this kernel has the BPF LSM
        // attach points even where it refuses to load LSM programs).
        if hook_args(&btf, "file_open").is_some() {
            let i = page_hook_args(&btf).unwrap_or_else(|e| panic!("{e}"));
            assert!(i <= 1);
        }
    }

    #[test]
    fn missing_module_btf_says_modprobe() {
        let dir = std::env::temp_dir().join(format!("exabond-btf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        if Path::new("/sys/kernel/btf/vmlinux").exists() {
            std::fs::copy("/sys/kernel/btf/vmlinux", dir.join("vmlinux")).unwrap();
            let e = read(&dir).unwrap_err().to_string();
            assert!(e.contains("modprobe bonding"), "{e}");
        }
        let e = read(&dir.join("nothing")).unwrap_err().to_string();
        assert!(e.contains("vmlinux"), "{e}");
    }
}
