//! Reading and editing a pinned BPF map by hand, and detaching a pinned link (bpf(2) directly), as an
//! operator with `bpftool map update` / `bpftool link detach` would: the self-check must notice.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

const BPF_MAP_CREATE: libc::c_long = 0;
const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_LINK_DETACH: libc::c_long = 34;
const BPF_MAP_TYPE_HASH: u32 = 1;

#[repr(C)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

#[repr(C)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is an initialised `bpf_attr` prefix of the size passed.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn open(path: &str) -> anyhow::Result<OwnedFd> {
    let p = CString::new(path)?;
    let mut attr = ObjAttr { pathname: p.as_ptr() as u64, bpf_fd: 0, file_flags: 0 };
    let fd = bpf(BPF_OBJ_GET, &mut attr).map_err(|e| anyhow::anyhow!("open pinned map {path}: {e}"))?;
    // SAFETY: a new descriptor the kernel just returned.
    Ok(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) })
}

/// The value of `key` (u32) in the pinned map at `path`, `N` bytes.
pub fn lookup<const N: usize>(path: &str, key: u32) -> anyhow::Result<[u8; N]> {
    let fd = open(path)?;
    let mut value = [0u8; N];
    let mut attr = ElemAttr {
        map_fd: u32::try_from(fd.as_raw_fd())?,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: value.as_mut_ptr() as u64,
        flags: 0,
    };
    bpf(BPF_MAP_LOOKUP_ELEM, &mut attr).map_err(|e| anyhow::anyhow!("lookup {path}[{key}]: {e}"))?;
    Ok(value)
}

/// Write `value` at `key` (u32) in the pinned map at `path`.
pub fn update<const N: usize>(path: &str, key: u32, value: [u8; N]) -> anyhow::Result<()> {
    let fd = open(path)?;
    let mut attr = ElemAttr {
        map_fd: u32::try_from(fd.as_raw_fd())?,
        _pad: 0,
        key: std::ptr::from_ref(&key) as u64,
        value: value.as_ptr() as u64,
        flags: 0,
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut attr).map_err(|e| anyhow::anyhow!("update {path}[{key}]: {e}"))?;
    Ok(())
}

/// `BPF_LINK_DETACH` the link pinned at `path`; the errno when the kernel refuses.
pub fn detach_link(path: &str) -> anyhow::Result<Result<(), i32>> {
    let fd = open(path)?;
    let mut attr = [u32::try_from(fd.as_raw_fd())?, 0, 0, 0];
    Ok(bpf(BPF_LINK_DETACH, &mut attr).map(drop).map_err(|e| e.raw_os_error().unwrap_or(-1)))
}

/// Create a hash map (`key` and `value` bytes, `entries`) pinned at `path`, as an older agent version
/// with other key types would have left it.
pub fn create_pinned_hash(path: &str, key: u32, value: u32, entries: u32) -> anyhow::Result<()> {
    // `union bpf_attr` for BPF_MAP_CREATE: map_type, key_size, value_size, max_entries, map_flags, ...
    let mut attr = [BPF_MAP_TYPE_HASH, key, value, entries, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    let fd = bpf(BPF_MAP_CREATE, &mut attr).map_err(|e| anyhow::anyhow!("create a map for {path}: {e}"))?;
    // SAFETY: a new descriptor the kernel just returned.
    let fd = unsafe { OwnedFd::from_raw_fd(i32::try_from(fd)?) };
    let p = CString::new(path)?;
    let mut attr = ObjAttr { pathname: p.as_ptr() as u64, bpf_fd: u32::try_from(fd.as_raw_fd())?, file_flags: 0 };
    bpf(BPF_OBJ_PIN, &mut attr).map_err(|e| anyhow::anyhow!("pin {path}: {e}"))?;
    Ok(())
}

/// The key size of the map pinned at `path`.
pub fn key_size(path: &str) -> anyhow::Result<u32> {
    let fd = open(path)?;
    // `struct bpf_map_info`: type, id, key_size, ...
    let mut info = [0u32; 6];
    let mut attr = InfoAttr { bpf_fd: u32::try_from(fd.as_raw_fd())?, info_len: 24, info: info.as_mut_ptr() as u64 };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr).map_err(|e| anyhow::anyhow!("info of {path}: {e}"))?;
    Ok(info[2])
}
