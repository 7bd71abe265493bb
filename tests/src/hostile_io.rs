//! The system calls of the hostile-input group, each returning the errno it failed with: the bonding ioctls
//! with any command and raw names, every write path to a sysfs file (write, writev, pwritev, splice), a buffer
//! in a file mapping whose page was never touched (not yet faulted in), and work done from a thread that
//! entered another network namespace.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd, RawFd};

use anyhow::{bail, Context as _};

/// `SIOCBONDENSLAVE`.
pub const SIOCBONDENSLAVE: u32 = 0x8990;
/// `SIOCBONDRELEASE`.
pub const SIOCBONDRELEASE: u32 = 0x8991;
/// `BOND_ENSLAVE_OLD` = `SIOCDEVPRIVATE`: what ifenslave falls back to; bonding's `ndo_siocdevprivate`
/// (5.15+, so 6.1 and 6.12) turns it into `SIOCBONDENSLAVE`.
pub const BOND_ENSLAVE_OLD: u32 = 0x89F0;

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// A `struct ifreq` for the bonding ioctls: `ifr_name` = `bond`, `ifr_slave` = `dev` (each at most 15
/// bytes, NUL-padded).
pub fn ifreq(bond: &str, dev: &str) -> [u8; 40] {
    let mut ifr = [0u8; 40];
    ifr[..bond.len().min(15)].copy_from_slice(&bond.as_bytes()[..bond.len().min(15)]);
    ifr[16..16 + dev.len().min(15)].copy_from_slice(&dev.as_bytes()[..dev.len().min(15)]);
    ifr
}

/// An `AF_INET` datagram socket of the calling thread's network namespace.
pub fn inet_socket() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); owned at once.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// ioctl(`fd`, `cmd`, `arg`) where `arg` points to an ifreq; the errno on failure.
///
/// # Safety
/// `arg` must point to at least 40 readable bytes (it may be a mapped page not yet faulted in).
pub unsafe fn ioctl_at(fd: RawFd, cmd: u32, arg: *const u8) -> Result<(), i32> {
    // SAFETY: the caller vouches for `arg`; the bonding ioctls only read the ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::c_ulong::from(cmd), arg) };
    if rc < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// A bonding ioctl `cmd` naming `bond` and `dev`, on a new `AF_INET` socket of the calling thread's namespace.
pub fn bond_ioctl(cmd: u32, bond: &str, dev: &str) -> Result<(), i32> {
    let sock = inet_socket().map_err(|e| e.raw_os_error().unwrap_or(-1))?;
    let ifr = ifreq(bond, dev);
    // SAFETY: `ifr` is a live 40-byte ifreq.
    unsafe { ioctl_at(sock.as_raw_fd(), cmd, ifr.as_ptr()) }
}

fn open_wr(path: &str) -> Result<OwnedFd, i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: valid C string; plain open(2), owned at once.
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(errno());
    }
    // SAFETY: a fresh fd of ours.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn rc(n: isize) -> Result<(), i32> {
    if n < 0 {
        Err(errno())
    } else {
        Ok(())
    }
}

/// One write(2) of `data` to `path`.
pub fn write_once(path: &str, data: &[u8]) -> Result<(), i32> {
    let fd = open_wr(path)?;
    // SAFETY: `data` is a live slice.
    rc(unsafe { libc::write(fd.as_raw_fd(), data.as_ptr().cast(), data.len()) })
}

fn iovecs(parts: &[&[u8]]) -> Vec<libc::iovec> {
    parts.iter().map(|p| libc::iovec { iov_base: p.as_ptr().cast_mut().cast(), iov_len: p.len() }).collect()
}

/// One writev(2) of `parts` (one iovec each) to `path`.
pub fn writev_parts(path: &str, parts: &[&[u8]]) -> Result<(), i32> {
    let fd = open_wr(path)?;
    let iov = iovecs(parts);
    let n = i32::try_from(iov.len()).map_err(|_| libc::EINVAL)?;
    // SAFETY: iovecs over live slices.
    rc(unsafe { libc::writev(fd.as_raw_fd(), iov.as_ptr(), n) })
}

/// One pwritev(2) at offset 0 of `parts` to `path`.
pub fn pwritev_parts(path: &str, parts: &[&[u8]]) -> Result<(), i32> {
    let fd = open_wr(path)?;
    let iov = iovecs(parts);
    let n = i32::try_from(iov.len()).map_err(|_| libc::EINVAL)?;
    // SAFETY: iovecs over live slices.
    rc(unsafe { libc::pwritev(fd.as_raw_fd(), iov.as_ptr(), n, 0) })
}

/// `data` put in a pipe, then splice(2)d from the pipe into `path`.
pub fn splice_into(path: &str, data: &[u8]) -> anyhow::Result<Result<(), i32>> {
    let mut p = [0; 2];
    // SAFETY: `p` has room for two fds.
    if unsafe { libc::pipe2(p.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        bail!("pipe2: errno {}", errno());
    }
    // SAFETY: fresh fds of ours.
    let (r, w) = unsafe { (OwnedFd::from_raw_fd(p[0]), OwnedFd::from_raw_fd(p[1])) };
    // SAFETY: `data` is a live slice.
    if unsafe { libc::write(w.as_raw_fd(), data.as_ptr().cast(), data.len()) } < 0 {
        bail!("write to the pipe: errno {}", errno());
    }
    let fd = match open_wr(path) {
        Ok(fd) => fd,
        Err(e) => return Ok(Err(e)),
    };
    // SAFETY: pipe and file fds of ours; no offsets (both NULL).
    let n = unsafe {
        libc::splice(r.as_raw_fd(), std::ptr::null_mut(), fd.as_raw_fd(), std::ptr::null_mut(), data.len(), 0)
    };
    Ok(rc(n))
}

/// A private mapping of a new file holding `bytes`, whose page this process never touches: the first access
/// (the kernel's own copy) has to fault it in, a non-faulting read (`bpf_probe_read_user`) fails. Writable
/// (copy on write), because the kernel copies some ifreqs back (`SIOCDEVPRIVATE`): a read-only one would
/// fail that call with EFAULT after the bond was changed.
pub struct Unfaulted {
    addr: *mut libc::c_void,
    len: usize,
}

impl Unfaulted {
    /// Write `bytes` to a new file under /tmp and map it; fails if the page is already present.
    pub fn new(bytes: &[u8]) -> anyhow::Result<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = format!("/tmp/exabond-hostile-{}-{n}", std::process::id());
        std::fs::write(&path, bytes).with_context(|| format!("write {path}"))?;
        let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
        let _ = std::fs::remove_file(&path);
        let len = 4096;
        // SAFETY: a fresh private mapping of our file; never dereferenced by this process.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if addr == libc::MAP_FAILED {
            bail!("mmap {path}: errno {}", errno());
        }
        let m = Self { addr, len };
        if m.present()? {
            bail!("the new mapping's page is already present: the test would not test a fault");
        }
        Ok(m)
    }

    /// The mapping's first byte (never read or written here).
    pub fn ptr(&self) -> *const u8 {
        self.addr.cast_const().cast()
    }

    /// Whether the page is mapped in this process now (`/proc/self/pagemap`, bit 63).
    pub fn present(&self) -> anyhow::Result<bool> {
        use std::io::{Read as _, Seek as _, SeekFrom};
        let mut f = std::fs::File::open("/proc/self/pagemap").context("open /proc/self/pagemap")?;
        f.seek(SeekFrom::Start((self.addr as u64 / 4096) * 8))?;
        let mut e = [0u8; 8];
        f.read_exact(&mut e).context("read /proc/self/pagemap")?;
        Ok(u64::from_ne_bytes(e) >> 63 == 1)
    }
}

impl Drop for Unfaulted {
    fn drop(&mut self) {
        // SAFETY: our own mapping, unmapped once.
        unsafe { libc::munmap(self.addr, self.len) };
    }
}

/// One write(2) of the `len` bytes at the start of `m` to `path`.
pub fn write_from(path: &str, m: &Unfaulted, len: usize) -> Result<(), i32> {
    let fd = open_wr(path)?;
    // SAFETY: `m` maps at least `len` readable bytes (4096).
    rc(unsafe { libc::write(fd.as_raw_fd(), m.ptr().cast(), len) })
}

/// Run `f` on a new thread that first entered the network namespace `ns` (`/run/netns/<ns>`, made by `ip
/// netns add`): sockets it creates belong to `ns`; the rest of the process stays where it was.
pub fn in_netns<T: Send>(ns: &str, f: impl FnOnce() -> anyhow::Result<T> + Send) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::File::open(&path).with_context(|| format!("open {path}"))?;
            // SAFETY: setns(2) on a namespace fd of ours, for this thread only.
            if unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) } < 0 {
                bail!("setns({path}): errno {}", errno());
            }
            f()
        })
        .join()
        .map_err(|_| anyhow::anyhow!("the thread in netns {ns} panicked"))?
    })
}
