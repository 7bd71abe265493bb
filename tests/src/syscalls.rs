//! Direct system calls the suite needs to see exact errnos: write(2), writev(2) and the SIOCBONDENSLAVE
//! ioctl (what ifenslave uses).

use std::ffi::CString;
use std::io;

/// write(2) `value` to `path` in one call; the errno on failure.
pub fn write_file(path: &str, value: &str) -> Result<(), i32> {
    std::fs::write(path, value).map_err(|e| e.raw_os_error().unwrap_or(-1))
}

/// writev(2) `value` to `path` as two iovecs; the errno on failure.
pub fn writev_file(path: &str, value: &str) -> Result<(), i32> {
    let c = CString::new(path).map_err(|_| libc::EINVAL)?;
    // SAFETY: valid C string; plain open(2).
    let fd = unsafe { libc::open(c.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    let (a, b) = value.as_bytes().split_at(value.len() / 2);
    let iov = [
        libc::iovec { iov_base: a.as_ptr() as *mut libc::c_void, iov_len: a.len() },
        libc::iovec { iov_base: b.as_ptr() as *mut libc::c_void, iov_len: b.len() },
    ];
    // SAFETY: two valid iovecs over live slices.
    let n = unsafe { libc::writev(fd, iov.as_ptr(), 2) };
    let err = io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    if n < 0 {
        Err(err)
    } else {
        Ok(())
    }
}

const SIOCBONDENSLAVE: libc::c_ulong = 0x8990;
const SIOCBONDRELEASE: libc::c_ulong = 0x8991;

fn bond_ioctl(cmd: libc::c_ulong, bond: &str, dev: &str) -> Result<(), i32> {
    let mut ifr = [0u8; 40];
    ifr[..bond.len().min(15)].copy_from_slice(&bond.as_bytes()[..bond.len().min(15)]);
    ifr[16..16 + dev.len().min(15)].copy_from_slice(&dev.as_bytes()[..dev.len().min(15)]);
    // SAFETY: plain socket(2).
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(io::Error::last_os_error().raw_os_error().unwrap_or(-1));
    }
    // SAFETY: `ifr` is a 40-byte struct ifreq (name, then ifr_slave) living for the call.
    let rc = unsafe { libc::ioctl(fd, cmd, ifr.as_mut_ptr()) };
    let err = io::Error::last_os_error().raw_os_error().unwrap_or(-1);
    // SAFETY: closing our fd.
    unsafe { libc::close(fd) };
    if rc < 0 {
        Err(err)
    } else {
        Ok(())
    }
}

/// SIOCBONDENSLAVE `dev` to `bond`; the errno on failure.
pub fn ioctl_enslave(bond: &str, dev: &str) -> Result<(), i32> {
    bond_ioctl(SIOCBONDENSLAVE, bond, dev)
}

/// SIOCBONDRELEASE `dev` from `bond`; the errno on failure.
pub fn ioctl_release(bond: &str, dev: &str) -> Result<(), i32> {
    bond_ioctl(SIOCBONDRELEASE, bond, dev)
}
