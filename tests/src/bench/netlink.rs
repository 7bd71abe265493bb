//! The rtnetlink baseline: a plain netlink socket bound to `RTNLGRP_LINK`, as any application that wants to
//! hear about bond failovers would open it, blocked in recv(2). A failover is the `RTM_NEWLINK` of the bond
//! that carries `IFLA_EVENT = IFLA_EVENT_BONDING_FAILOVER`, which the kernel sends from the
//! `NETDEV_BONDING_FAILOVER` notifier near the end of `bond_change_active_slave`.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// `RTM_NEWLINK` (`include/uapi/linux/rtnetlink.h`).
const RTM_NEWLINK: u16 = 16;
/// `RTMGRP_LINK`: the legacy group bit of `RTNLGRP_LINK`.
const RTMGRP_LINK: u32 = 1;
/// `IFLA_EVENT` (`include/uapi/linux/if_link.h`).
const IFLA_EVENT: u16 = 44;
/// `IFLA_EVENT_BONDING_FAILOVER`.
const IFLA_EVENT_BONDING_FAILOVER: u32 = 3;
/// sizeof(struct nlmsghdr), sizeof(struct ifinfomsg).
const NLMSG_HDRLEN: usize = 16;
const IFINFOMSG_LEN: usize = 16;

/// A netlink socket subscribed to link notifications.
pub struct Listener {
    fd: OwnedFd,
    buf: Vec<u8>,
}

impl Listener {
    /// Open and bind it; recv(2) returns after at most `timeout_ms` without a message.
    ///
    /// # Errors
    /// socket/bind failures.
    pub fn open(timeout_ms: i64) -> io::Result<Self> {
        // SAFETY: plain socket(2).
        let raw = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh fd we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        // SAFETY: sockaddr_nl is plain data; all-zero is valid.
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::sa_family_t::try_from(libc::AF_NETLINK).expect("AF_NETLINK fits sa_family_t");
        sa.nl_groups = RTMGRP_LINK;
        let len = socklen::<libc::sockaddr_nl>()?;
        // SAFETY: valid sockaddr_nl of the size passed.
        let rc = unsafe { libc::bind(fd.as_raw_fd(), (&raw const sa).cast(), len) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        let tv = libc::timeval { tv_sec: timeout_ms / 1000, tv_usec: (timeout_ms % 1000) * 1000 };
        setsockopt(&fd, libc::SO_RCVTIMEO, &tv)?;
        // A large buffer (root may exceed rmem_max): link messages of 64 bonds must not be dropped.
        let _ = setsockopt(&fd, libc::SO_RCVBUFFORCE, &(8i32 << 20));
        Ok(Self { fd, buf: vec![0; 1 << 16] })
    }

    /// Wait for one datagram: `Ok(None)` on timeout, else the ifindexes of the bonds it reports a failover
    /// of (usually none).
    ///
    /// # Errors
    /// recv(2) failures other than a timeout or EINTR.
    pub fn recv(&mut self) -> io::Result<Option<Vec<u32>>> {
        // SAFETY: the buffer is valid for its length.
        let n = unsafe { libc::recv(self.fd.as_raw_fd(), self.buf.as_mut_ptr().cast(), self.buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(None),
                // Overrun: messages were lost; the caller sees a missing observation.
                Some(libc::ENOBUFS) => Ok(Some(Vec::new())),
                _ => Err(e),
            };
        }
        Ok(Some(bond_failovers(&self.buf[..n.unsigned_abs()])))
    }
}

/// The size of a `T` as a `socklen_t`.
fn socklen<T>() -> io::Result<libc::socklen_t> {
    libc::socklen_t::try_from(std::mem::size_of::<T>()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))
}

fn setsockopt<T>(fd: &OwnedFd, opt: libc::c_int, v: &T) -> io::Result<()> {
    let len = socklen::<T>()?;
    // SAFETY: `v` points to a valid T of the size passed.
    let rc = unsafe { libc::setsockopt(fd.as_raw_fd(), libc::SOL_SOCKET, opt, std::ptr::from_ref(v).cast(), len) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// The ifindexes of the `RTM_NEWLINK` messages in `buf` that carry `IFLA_EVENT_BONDING_FAILOVER`.
pub fn bond_failovers(buf: &[u8]) -> Vec<u32> {
    let mut out = Vec::new();
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let len = u32_at(buf, off) as usize;
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            break;
        }
        let msg = &buf[off..off + len];
        if u16_at(msg, 4) == RTM_NEWLINK && len >= NLMSG_HDRLEN + IFINFOMSG_LEN {
            let ifindex = u32_at(msg, NLMSG_HDRLEN + 4);
            let mut a = NLMSG_HDRLEN + IFINFOMSG_LEN;
            while a + 4 <= msg.len() {
                let alen = u16_at(msg, a) as usize;
                if alen < 4 || a + alen > msg.len() {
                    break;
                }
                if u16_at(msg, a + 2) == IFLA_EVENT && alen >= 8 && u32_at(msg, a + 4) == IFLA_EVENT_BONDING_FAILOVER {
                    out.push(ifindex);
                }
                a += align4(alen);
            }
        }
        off += align4(len);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One netlink message: header, ifinfomsg for `ifindex`, then `attrs` as (type, u32 value).
    fn newlink(ty: u16, ifindex: u32, attrs: &[(u16, u32)]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + IFINFOMSG_LEN + attrs.len() * 8;
        let mut m = Vec::with_capacity(len);
        m.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
        m.extend_from_slice(&ty.to_ne_bytes());
        m.extend_from_slice(&[0; 10]); // flags, seq, pid
        m.extend_from_slice(&[0; 4]); // family, pad, type
        m.extend_from_slice(&ifindex.to_ne_bytes());
        m.extend_from_slice(&[0; 8]); // flags, change
        for (t, v) in attrs {
            m.extend_from_slice(&8u16.to_ne_bytes());
            m.extend_from_slice(&t.to_ne_bytes());
            m.extend_from_slice(&v.to_ne_bytes());
        }
        m
    }

    #[test]
    fn finds_bonding_failover_events_only() {
        let mut buf = newlink(RTM_NEWLINK, 7, &[(4, 1500), (IFLA_EVENT, IFLA_EVENT_BONDING_FAILOVER)]);
        buf.extend(newlink(RTM_NEWLINK, 8, &[(IFLA_EVENT, 1)])); // IFLA_EVENT_REBOOT
        buf.extend(newlink(17, 9, &[(IFLA_EVENT, IFLA_EVENT_BONDING_FAILOVER)])); // RTM_DELLINK
        buf.extend(newlink(RTM_NEWLINK, 10, &[]));
        assert_eq!(bond_failovers(&buf), vec![7]);
        // A truncated datagram is not read past its end.
        assert_eq!(bond_failovers(&buf[..20]), Vec::<u32>::new());
    }
}
