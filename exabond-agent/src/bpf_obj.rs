//! BPF objects by descriptor, through bpf(2) directly: open a pin, pin a descriptor again, read an
//! object's id (and a link's program). Aya 0.14 pins a link only by consuming it and tells no object's id
//! from a pin; the self-check needs all three.

use std::ffi::CString;
use std::os::fd::{AsRawFd as _, BorrowedFd, FromRawFd as _, OwnedFd};
use std::os::unix::ffi::OsStrExt as _;
use std::path::Path;

const BPF_OBJ_PIN: libc::c_long = 6;
const BPF_OBJ_GET: libc::c_long = 7;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;

/// `union bpf_attr` for `BPF_OBJ_PIN` / `BPF_OBJ_GET`.
#[repr(C)]
#[derive(Default)]
struct ObjAttr {
    pathname: u64,
    bpf_fd: u32,
    file_flags: u32,
}

/// `union bpf_attr` for `BPF_OBJ_GET_INFO_BY_FD`.
#[repr(C)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T) -> std::io::Result<libc::c_long> {
    // SAFETY: `attr` is a valid, initialised `bpf_attr` prefix of the size passed; the kernel reads (and
    // for some commands writes) only that many bytes.
    let rc = unsafe { libc::syscall(libc::SYS_bpf, cmd, std::ptr::from_mut(attr), std::mem::size_of::<T>()) };
    if rc < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

fn c_path(path: &Path) -> std::io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in a pin path"))
}

/// Open the object pinned at `path`.
///
/// # Errors
/// The bpf(2) error (`ENOENT`: nothing pinned there).
pub fn open_pin(path: &Path) -> std::io::Result<OwnedFd> {
    let p = c_path(path)?;
    let mut attr = ObjAttr { pathname: p.as_ptr() as u64, ..ObjAttr::default() };
    let fd = bpf(BPF_OBJ_GET, &mut attr)?;
    let fd = i32::try_from(fd).map_err(|_| std::io::Error::other("bpf(BPF_OBJ_GET) returned no descriptor"))?;
    // SAFETY: a new descriptor the kernel just returned, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Pin the object of `fd` at `path` (which must not exist, on a bpffs).
///
/// # Errors
/// The bpf(2) error (`EEXIST`, or `EPERM` when `path` is not on a bpffs).
pub fn pin(fd: BorrowedFd<'_>, path: &Path) -> std::io::Result<()> {
    let p = c_path(path)?;
    let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
    let mut attr = ObjAttr { pathname: p.as_ptr() as u64, bpf_fd: raw, file_flags: 0 };
    bpf(BPF_OBJ_PIN, &mut attr).map(drop)
}

/// The object's id, and for a link the id of its program (0 once detached); for a map the second value
/// is meaningless.
///
/// # Errors
/// The bpf(2) error.
pub fn info(fd: BorrowedFd<'_>) -> std::io::Result<(u32, u32)> {
    // `struct bpf_link_info` starts with type, id, prog_id; `struct bpf_map_info` with type, id.
    let mut words = [0u32; 4];
    let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
    let mut attr = InfoAttr { bpf_fd: raw, info_len: 16, info: words.as_mut_ptr() as u64 };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok((words[1], words[2]))
}

/// A map's (type, key size, value size, max entries).
///
/// # Errors
/// The bpf(2) error.
pub fn map_shape(fd: BorrowedFd<'_>) -> std::io::Result<(u32, u32, u32, u32)> {
    // `struct bpf_map_info` starts with type, id, key_size, value_size, max_entries.
    let mut words = [0u32; 6];
    let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
    let mut attr = InfoAttr { bpf_fd: raw, info_len: 24, info: words.as_mut_ptr() as u64 };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut attr)?;
    Ok((words[0], words[2], words[3], words[4]))
}

const BPF_MAP_LOOKUP_BATCH: libc::c_long = 24;

/// `union bpf_attr` for the `BPF_MAP_*_BATCH` commands.
#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

/// Entries asked for per `BPF_MAP_LOOKUP_BATCH` call.
const BATCH: usize = 256;

/// Every (key, value) of the hash map `fd` whose keys are `key_size` and values `value_size` bytes, read with
/// `BPF_MAP_LOOKUP_BATCH`: a few system calls for the whole map, where walking it costs two per entry.
/// Concurrent updates may be missed or seen, as with any walk of a live map.
///
/// # Errors
/// The bpf(2) error (`EINVAL` on kernels without batch operations for the map's type).
pub fn dump_hash(fd: BorrowedFd<'_>, key_size: usize, value_size: usize) -> std::io::Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let raw = u32::try_from(fd.as_raw_fd()).map_err(|_| std::io::Error::other("negative descriptor"))?;
    let mut keys = vec![0u8; BATCH * key_size];
    // Keys and values of a batch are packed at their own sizes (kernel/bpf/hashtab.c: `dst_key += key_size`,
    // `dst_val += value_size`; only per-CPU values are rounded to 8 bytes).
    let stride = value_size;
    let mut values = vec![0u8; BATCH * stride];
    let (mut cursor, mut next) = (0u64, 0u64);
    let mut out = Vec::new();
    let mut first = true;
    loop {
        let mut attr = BatchAttr {
            in_batch: if first { 0 } else { std::ptr::from_mut(&mut cursor) as u64 },
            out_batch: std::ptr::from_mut(&mut next) as u64,
            keys: keys.as_mut_ptr() as u64,
            values: values.as_mut_ptr() as u64,
            count: u32::try_from(BATCH).unwrap_or(u32::MAX),
            map_fd: raw,
            ..BatchAttr::default()
        };
        let r = bpf(BPF_MAP_LOOKUP_BATCH, &mut attr);
        let n = attr.count as usize;
        for i in 0..n.min(BATCH) {
            out.push((
                keys[i * key_size..(i + 1) * key_size].to_vec(),
                values[i * stride..i * stride + value_size].to_vec(),
            ));
        }
        match r {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => return Ok(out),
            Err(e) => return Err(e),
        }
        cursor = next;
        first = false;
    }
}
