//! Raw rtnetlink for the hostile-input group: link messages built byte by byte (so a test can send what no
//! library would: duplicate attributes, padding, unknown types, batches, names instead of indexes) and one
//! `sendmsg` per batch, with the kernel's acknowledgement of every message.
//!
//! A veto in the LSM hook `netlink_send` fails the `sendmsg` itself (no message of the batch is delivered);
//! the kernel's own refusal of a delivered message comes back as an `NLMSG_ERROR` acknowledgement. [`send`]
//! keeps the two apart.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};

/// `RTM_NEWLINK`.
pub const RTM_NEWLINK: u16 = 16;
/// `RTM_DELLINK`.
pub const RTM_DELLINK: u16 = 17;
/// `RTM_SETLINK`.
pub const RTM_SETLINK: u16 = 19;
/// `NLM_F_EXCL`.
pub const NLM_F_EXCL: u16 = 0x200;
/// `NLM_F_CREATE`.
pub const NLM_F_CREATE: u16 = 0x400;
/// `IFLA_IFNAME` (string).
pub const IFLA_IFNAME: u16 = 3;
/// `IFLA_MTU` (u32).
pub const IFLA_MTU: u16 = 4;
/// `IFLA_MASTER` (u32 ifindex).
pub const IFLA_MASTER: u16 = 10;
/// `IFLA_LINKINFO` (nested).
pub const IFLA_LINKINFO: u16 = 18;
/// `IFLA_NET_NS_PID` (u32).
pub const IFLA_NET_NS_PID: u16 = 19;
/// `IFLA_ALT_IFNAME` (string).
pub const IFLA_ALT_IFNAME: u16 = 53;
/// `IFLA_INFO_KIND` (string, in `IFLA_LINKINFO`).
pub const IFLA_INFO_KIND: u16 = 1;
/// `IFLA_INFO_DATA` (nested, in `IFLA_LINKINFO`).
pub const IFLA_INFO_DATA: u16 = 2;
/// `IFLA_BOND_MODE` (u8, in the bond's `IFLA_INFO_DATA`).
pub const IFLA_BOND_MODE: u16 = 1;

const NLM_F_REQUEST: u16 = 1;
const NLM_F_ACK: u16 = 4;
const NLMSG_ERROR: u16 = 2;
const NLMSG_HDRLEN: usize = 16;

const fn align4(n: usize) -> usize {
    (n + 3) & !3
}

/// A run of netlink attributes (`struct nlattr` + payload, each padded to 4 bytes).
#[derive(Clone, Default)]
pub struct Attrs(Vec<u8>);

impl Attrs {
    /// No attributes yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// An attribute of type `ty` carrying `payload` (any length, zero included).
    pub fn raw(mut self, ty: u16, payload: &[u8]) -> Self {
        let len = u16::try_from(4 + payload.len()).expect("attribute under 64 KiB");
        self.0.extend_from_slice(&len.to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(payload);
        self.0.resize(align4(self.0.len()), 0);
        self
    }

    /// A u32 attribute.
    pub fn u32(self, ty: u16, v: u32) -> Self {
        self.raw(ty, &v.to_ne_bytes())
    }

    /// A u8 attribute.
    pub fn u8(self, ty: u16, v: u8) -> Self {
        self.raw(ty, &[v])
    }

    /// A NUL-terminated string attribute.
    pub fn str(self, ty: u16, s: &str) -> Self {
        let mut b = s.as_bytes().to_vec();
        b.push(0);
        self.raw(ty, &b)
    }

    /// A nested attribute holding `inner`.
    pub fn nest(self, ty: u16, inner: &Self) -> Self {
        let payload = inner.0.clone();
        self.raw(ty, &payload)
    }

    /// `IFLA_LINKINFO { IFLA_INFO_KIND kind, IFLA_INFO_DATA data }` (data left out when empty).
    pub fn linkinfo(self, kind: &str, data: &Self) -> Self {
        let mut li = Self::new().str(IFLA_INFO_KIND, kind);
        if !data.0.is_empty() {
            li = li.nest(IFLA_INFO_DATA, data);
        }
        self.nest(IFLA_LINKINFO, &li)
    }
}

/// One link message: `nlmsghdr` + `ifinfomsg` + attributes.
#[derive(Clone)]
pub struct LinkMsg {
    ty: u16,
    flags: u16,
    ifindex: u32,
    attrs: Attrs,
}

impl LinkMsg {
    /// A message of type `ty` (`RTM_NEWLINK`, `RTM_SETLINK`, `RTM_DELLINK`) about `ifindex` (0: by name, or
    /// none), with extra `flags` (`NLM_F_CREATE` ...; request and ack are always set).
    pub fn new(ty: u16, flags: u16, ifindex: u32, attrs: Attrs) -> Self {
        Self { ty, flags, ifindex, attrs }
    }

    fn encode(&self, seq: u32, out: &mut Vec<u8>) {
        let start = out.len();
        let len = u32::try_from(NLMSG_HDRLEN + 16 + self.attrs.0.len()).expect("message under 4 GiB");
        out.extend_from_slice(&len.to_ne_bytes());
        out.extend_from_slice(&self.ty.to_ne_bytes());
        out.extend_from_slice(&(NLM_F_REQUEST | NLM_F_ACK | self.flags).to_ne_bytes());
        out.extend_from_slice(&seq.to_ne_bytes());
        out.extend_from_slice(&0u32.to_ne_bytes());
        // struct ifinfomsg: family, pad, type, index, flags, change.
        out.extend_from_slice(&[0u8, 0, 0, 0]);
        out.extend_from_slice(&self.ifindex.to_ne_bytes());
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&self.attrs.0);
        out.resize(start + align4(out.len() - start), 0);
    }
}

/// How one `sendmsg` of a batch ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Sent {
    /// The `sendmsg` itself failed with this errno (a `netlink_send` veto refuses the whole batch this way).
    Refused(i32),
    /// Delivered: the kernel's answer to each message in order (0 = done, else the errno it refused with).
    Acked(Vec<i32>),
}

impl Sent {
    /// Delivered and every message done.
    pub fn all_done(&self) -> bool {
        matches!(self, Self::Acked(a) if a.iter().all(|&e| e == 0))
    }
}

fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(-1)
}

/// An `AF_NETLINK`/`NETLINK_ROUTE` socket of the calling thread's network namespace.
fn open() -> io::Result<OwnedFd> {
    // SAFETY: plain socket(2); the fd is owned at once.
    let fd = unsafe { libc::socket(libc::AF_NETLINK, libc::SOCK_RAW | libc::SOCK_CLOEXEC, libc::NETLINK_ROUTE) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a fresh fd of ours.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let tv = libc::timeval { tv_sec: 10, tv_usec: 0 };
    // SAFETY: a valid timeval for SO_RCVTIMEO.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVTIMEO,
            std::ptr::from_ref(&tv).cast(),
            u32::try_from(size_of::<libc::timeval>()).unwrap_or(16),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(fd)
}

/// Send `msgs` in ONE `sendmsg` on a new socket of the calling thread's network namespace and collect the
/// kernel's acknowledgement of each.
pub fn send(msgs: &[LinkMsg]) -> anyhow::Result<Sent> {
    let fd = open()?;
    let mut buf = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        m.encode(u32::try_from(i + 1)?, &mut buf);
    }
    // SAFETY: sockaddr_nl is plain data; all zero = the kernel.
    let mut kernel: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    kernel.nl_family = u16::try_from(libc::AF_NETLINK)?;
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: msghdr is plain data; the fields set below point at live locals.
    let mut mh: libc::msghdr = unsafe { std::mem::zeroed() };
    mh.msg_name = std::ptr::from_mut(&mut kernel).cast();
    mh.msg_namelen = u32::try_from(size_of::<libc::sockaddr_nl>())?;
    mh.msg_iov = &raw mut iov;
    mh.msg_iovlen = 1;
    // SAFETY: `mh` describes live buffers for the duration of the call.
    if unsafe { libc::sendmsg(fd.as_raw_fd(), &raw const mh, 0) } < 0 {
        return Ok(Sent::Refused(errno()));
    }
    let mut acks: Vec<Option<i32>> = vec![None; msgs.len()];
    let mut rbuf = vec![0u8; 65536];
    while acks.iter().any(Option::is_none) {
        // SAFETY: `rbuf` is a live, writable buffer of its length.
        let n = unsafe { libc::recv(fd.as_raw_fd(), rbuf.as_mut_ptr().cast(), rbuf.len(), 0) };
        if n < 0 {
            anyhow::bail!("no acknowledgement from the kernel (errno {}): got {acks:?}", errno());
        }
        let data = &rbuf[..usize::try_from(n)?];
        let mut off = 0;
        while off + NLMSG_HDRLEN <= data.len() {
            let word = |at: usize| u32::from_ne_bytes(data[at..at + 4].try_into().expect("4 bytes"));
            let len = usize::try_from(word(off))?;
            let ty = u16::from_ne_bytes([data[off + 4], data[off + 5]]);
            let seq = usize::try_from(word(off + 8))?;
            if len < NLMSG_HDRLEN || off + len > data.len() {
                break;
            }
            if ty == NLMSG_ERROR && len >= NLMSG_HDRLEN + 4 && (1..=acks.len()).contains(&seq) {
                #[expect(clippy::cast_possible_wrap, reason = "the kernel writes a negative errno as an int")]
                let err = word(off + NLMSG_HDRLEN) as i32;
                acks[seq - 1] = Some(-err);
            }
            off += align4(len);
        }
    }
    Ok(Sent::Acked(acks.into_iter().map(|a| a.unwrap_or(-1)).collect()))
}

/// `RTM_SETLINK` of `ifindex` with `IFLA_MASTER` = `master` (0 releases).
pub fn set_master(ifindex: u32, master: u32) -> LinkMsg {
    LinkMsg::new(RTM_SETLINK, 0, ifindex, Attrs::new().u32(IFLA_MASTER, master))
}

/// `RTM_NEWLINK` (no `NLM_F_CREATE`) of bond `ifindex` (0: named by `attrs`) with `IFLA_LINKINFO { kind bond,
/// data { IFLA_BOND_MODE m for m in modes } }`.
pub fn bond_mode(ifindex: u32, name_attrs: Attrs, modes: &[u8]) -> LinkMsg {
    let data = modes.iter().fold(Attrs::new(), |a, &m| a.u8(IFLA_BOND_MODE, m));
    LinkMsg::new(RTM_NEWLINK, 0, ifindex, name_attrs.linkinfo("bond", &data))
}
