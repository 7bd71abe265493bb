//! The rtnetlink veto's reading of one `sendmsg` to a `NETLINK_ROUTE` socket, as the kernel will apply
//! it: written once for the eBPF program (`exabond-ebpf/src/lsm_netlink.rs`) and the host tests (unit
//! and property tests against a model of the kernel's parser, below).
//!
//! The kernel (`net/netlink/af_netlink.c` `netlink_rcv_skb`, `net/core/rtnetlink.c`, 6.1 and 6.12):
//! - processes **every** message of the buffer in order (`NLMSG_ALIGN`ed; it stops at a header shorter
//!   than 16 bytes or longer than what is left); an error in one message does not stop the next;
//! - parses a link message's attributes liberally (`nlmsg_parse_deprecated`): unknown types and padding
//!   are skipped with no count limit, and **the last of duplicate attributes wins**; trailing bytes that
//!   do not form an attribute are ignored;
//! - addresses the device by `ifi_index` if > 0, else by `IFLA_IFNAME`, else by `IFLA_ALT_IFNAME`, in the
//!   sender socket's namespace; a device that does not exist is created by `RTM_NEWLINK` with
//!   `NLM_F_CREATE` (with the requested ifindex, if any);
//! - resolves `IFLA_MASTER` in the device's namespace **after** a move requested in the same message
//!   (`IFLA_NET_NS_PID`/`IFLA_NET_NS_FD`/`IFLA_TARGET_NETNSID`);
//! - applies `IFLA_LINKINFO` → `IFLA_INFO_DATA` → `IFLA_BOND_MODE` (last wins at each level) to a bond.
//!
//! What is refused (only while some namespace has managed bonds):
//! - in the managed namespace: `IFLA_MASTER` naming a managed bond for a device whose verdict refuses
//!   (an unknown device, or one being created, is refused with ENODEV); a mode other than active-backup
//!   for a managed bond; an enslave or a name-addressed mode change after an earlier message of the same
//!   buffer deleted, created, renamed or moved a device (its ifindex or name may now be another device's);
//! - anywhere: a message that moves a device to another namespace and sets a master in the same request
//!   (the master resolves in a namespace the veto cannot see), or targets another namespace by id with a
//!   master or link info; unless the sender is in the managed namespace itself (its moves go elsewhere);
//! - anywhere: a buffer longer than the veto reads ([`MAX_STEPS`] messages + attributes) or a managed
//!   bond's link info deeper than it reads (fail closed).

use crate::event::VetoWhat;
use crate::policy_maps::{NameKey, EINVAL, ENODEV, EOPNOTSUPP, NAME_LEN};

/// Messages plus attributes the veto walks in one buffer; a longer buffer is refused. iproute2,
/// `NetworkManager`, systemd-networkd and CNI plugins send one request of a few dozen attributes.
pub const MAX_STEPS: u32 = 192;
/// Mode changes of managed bonds judged in one buffer (more are refused).
pub const MAX_MODE_CHECKS: usize = 2;
/// Attributes of a managed bond's `IFLA_LINKINFO` walked.
pub const MAX_LINKINFO_ATTRS: u32 = 8;
/// Attributes of a managed bond's `IFLA_INFO_DATA` walked.
pub const MAX_BOND_ATTRS: u32 = 64;

const NLMSG_HDRLEN: u32 = 16;
const IFINFOMSG_LEN: u32 = 16;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_CREATE: u16 = 0x400;
const NLMSG_MIN_TYPE: u16 = 0x10;
const RTM_NEWLINK: u16 = 16;
const RTM_DELLINK: u16 = 17;
const RTM_SETLINK: u16 = 19;
const IFLA_IFNAME: u16 = 3;
const IFLA_MASTER: u16 = 10;
const IFLA_LINKINFO: u16 = 18;
const IFLA_NET_NS_PID: u16 = 19;
const IFLA_NET_NS_FD: u16 = 28;
const IFLA_TARGET_NETNSID: u16 = 46;
const IFLA_ALT_IFNAME: u16 = 53;
const IFLA_INFO_DATA: u16 = 2;
const IFLA_BOND_MODE: u16 = 1;
const BOND_MODE_ACTIVEBACKUP: u8 = 1;
const NLA_TYPE_MASK: u16 = 0x3fff;

/// A read of the request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault;

/// The request's bytes (the eBPF side reads kernel memory; the tests a slice).
pub trait Bytes {
    /// A `T` at byte `off` (unaligned).
    ///
    /// # Errors
    /// [`Fault`] if it cannot be read.
    fn load<T: Copy>(&self, off: u32) -> Result<T, Fault>;
    /// `len` bytes at `off` into the start of `out` (`len` < [`NAME_LEN`]; the rest of `out` untouched).
    ///
    /// # Errors
    /// [`Fault`] if they cannot be read.
    fn load_name(&self, off: u32, len: u32, out: &mut [u8; NAME_LEN]) -> Result<(), Fault>;
}

/// What the enforcement maps say, for the sender's namespace.
pub trait Lookup {
    /// Whether `ifindex` is a managed bond.
    fn managed_bond(&self, ifindex: u32) -> bool;
    /// The managed bond of that name (primary or alternative), if any.
    fn bond_by_name(&self, key: &NameKey) -> Option<u32>;
    /// The errno refusing device `ifindex` as a member (0 = allowed; unknown = ENODEV).
    fn verdict(&self, ifindex: u32) -> u32;
    /// The errno refusing the device of that name as a member (0 = allowed; unknown = ENODEV).
    fn verdict_by_name(&self, key: &NameKey) -> u32;
}

/// Where the sender's socket is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sender {
    /// In the namespace whose bonds are managed.
    Managed,
    /// In another namespace (while some namespace has managed bonds).
    Other,
}

/// A refusal: what, the bond and member concerned (0 if not known) and the errno.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What was refused.
    pub what: VetoWhat,
    /// The managed bond concerned (0 if not known).
    pub bond: u32,
    /// The member concerned (0 if not known or addressed by name).
    pub member: u32,
    /// The errno the syscall fails with.
    pub errno: u32,
    /// The mode asked for (mode refusals).
    pub mode: u8,
}

#[expect(clippy::unnecessary_wraps, reason = "every caller returns it as the verdict, an Option")]
const fn refuse(what: VetoWhat, bond: u32, member: u32, errno: u32) -> Option<Refusal> {
    Some(Refusal { what, bond, member, errno, mode: 0 })
}

const fn align4(n: u32) -> u32 {
    (n + 3) & !3
}

#[repr(C)]
#[derive(Clone, Copy)]
struct NlMsgHdr {
    len: u32,
    ty: u16,
    flags: u16,
    seq: u32,
    pid: u32,
}

#[repr(C)]
#[derive(Clone, Copy)]
struct NlAttr {
    len: u16,
    ty: u16,
}

/// An attribute's payload: (offset, length).
type Span = (u32, u32);

/// The attributes of one link message that matter, last of each type.
#[derive(Clone, Copy)]
#[expect(clippy::struct_excessive_bools, reason = "independent facts of one message, recorded while walking it")]
struct LinkMsg {
    ty: u16,
    flags: u16,
    index: i32,
    master: Option<u32>,
    ifname: Option<Span>,
    altname: Option<Span>,
    linkinfo: Option<Span>,
    moves: bool,
    target_ns: bool,
    malformed: bool,
    /// An earlier message of the buffer deleted, created, renamed or moved a device.
    after_identity_change: bool,
}

const EMPTY_MSG: LinkMsg = LinkMsg {
    ty: 0,
    flags: 0,
    index: 0,
    master: None,
    ifname: None,
    altname: None,
    linkinfo: None,
    moves: false,
    target_ns: false,
    malformed: false,
    after_identity_change: false,
};

/// Link messages judged in one buffer (more are refused; a power of two).
pub const MAX_LINK_MSGS: usize = 16;

/// A mode change of a managed bond to judge after the walk.
#[derive(Clone, Copy)]
struct ModeCheck {
    bond: u32,
    linkinfo: Span,
}

/// Working memory of [`judge`]. The eBPF side keeps it in a per-CPU map: too large for the BPF stack,
/// and what is recorded there is not tracked value by value by the verifier, which keeps its work
/// linear in the number of steps instead of exponential in the flags.
pub struct Work {
    /// A name in the sender's namespace, as the maps key it (`netns` set by the caller).
    pub key: NameKey,
    msgs: [LinkMsg; MAX_LINK_MSGS],
    checks: [Option<ModeCheck>; MAX_MODE_CHECKS],
    changed: bool,
    /// Link messages recorded so far (kept here rather than in a register, so that the verifier does not
    /// follow each count as its own path).
    count: usize,
}

impl Work {
    /// The count, read from memory every time (a volatile load: the compiler must not keep it in a
    /// register, where the verifier would follow each value as its own path).
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants"
    )]
    fn count(&self) -> usize {
        // SAFETY: a plain field of a live reference.
        unsafe { core::ptr::read_volatile(&raw const self.count) }
    }

    /// Working memory for a sender in namespace `netns`.
    #[must_use]
    pub const fn new(netns: u32) -> Self {
        Self {
            key: NameKey::empty(netns),
            msgs: [EMPTY_MSG; MAX_LINK_MSGS],
            checks: [None; MAX_MODE_CHECKS],
            changed: false,
            count: 0,
        }
    }
}

/// The verdict on one buffer of `len` bytes sent by `sender`: `None` = allow. `w.key.netns` is the
/// sender's namespace.
///
/// Two passes keep the eBPF verifier's work small: a walk of messages and attributes that only records
/// (at most [`MAX_STEPS`] steps, [`MAX_LINK_MSGS`] link messages), then the judgement of each link message.
///
/// # Errors
/// [`Fault`] when the buffer cannot be read: the caller refuses (fail closed).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn judge<B: Bytes, L: Lookup>(
    b: &B,
    len: u32,
    sender: Sender,
    lk: &L,
    w: &mut Work,
) -> Result<Option<Refusal>, Fault> {
    if walk(b, len, w)?.is_none() {
        return Ok(refuse(VetoWhat::Unparseable, 0, 0, EOPNOTSUPP));
    }
    w.checks = [None; MAX_MODE_CHECKS];
    let mut i = 0;
    while i < MAX_LINK_MSGS {
        if i >= w.count() {
            break;
        }
        let m = w.msgs[i];
        if let Some(r) = judge_link(b, &m, sender, lk, &mut w.key, &mut w.checks)? {
            return Ok(Some(r));
        }
        i += 1;
    }
    let mut i = 0;
    while i < MAX_MODE_CHECKS {
        if let Some(c) = w.checks[i] {
            if let Some(r) = judge_mode(b, c)? {
                return Ok(Some(r));
            }
        }
        i += 1;
    }
    Ok(None)
}

/// Record the link messages of the buffer in `w.msgs`; their number, or `None` past the bounds.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[expect(clippy::many_single_char_names, reason = "b(ytes), w(ork), m(essage), h(eader), a(ttribute), n")]
fn walk<B: Bytes>(b: &B, len: u32, w: &mut Work) -> Result<Option<usize>, Fault> {
    let mut off: u32 = 0;
    let mut next: u32 = 0;
    let mut msg_end: u32 = 0;
    let mut attr: u32 = 0;
    let mut in_msg = false;
    w.changed = false;
    w.count = 0;
    for _ in 0..MAX_STEPS {
        let n = w.count();
        let k = n & (MAX_LINK_MSGS - 1);
        if !in_msg {
            if off.saturating_add(NLMSG_HDRLEN) > len {
                return Ok(Some(n));
            }
            let h: NlMsgHdr = b.load(off)?;
            if h.len < NLMSG_HDRLEN || h.len > len - off {
                return Ok(Some(n));
            }
            msg_end = off + h.len;
            next = if align4(h.len) > len - off { len } else { off + align4(h.len) };
            let request = h.flags & NLM_F_REQUEST != 0 && h.ty >= NLMSG_MIN_TYPE;
            if request && (h.ty == RTM_NEWLINK || h.ty == RTM_SETLINK) && h.len >= NLMSG_HDRLEN + IFINFOMSG_LEN {
                if n >= MAX_LINK_MSGS {
                    return Ok(None);
                }
                let m = &mut w.msgs[k];
                *m = EMPTY_MSG;
                m.ty = h.ty;
                m.flags = h.flags;
                m.index = b.load(off + NLMSG_HDRLEN + 4)?;
                m.after_identity_change = w.changed;
                attr = off + NLMSG_HDRLEN + IFINFOMSG_LEN;
                in_msg = true;
            } else {
                if request && h.ty == RTM_DELLINK {
                    w.changed = true;
                }
                off = next;
            }
            continue;
        }
        // In a link message: the next attribute, or the message's end (nla_ok).
        if attr.saturating_add(4) <= msg_end {
            let a: NlAttr = b.load(attr)?;
            let alen = u32::from(a.len);
            if alen >= 4 && alen <= msg_end - attr {
                let payload = Some((attr + 4, alen - 4));
                let m = &mut w.msgs[k];
                match a.ty & NLA_TYPE_MASK {
                    IFLA_MASTER => {
                        if alen < 8 {
                            m.malformed = true;
                        } else {
                            m.master = Some(b.load(attr + 4)?);
                        }
                    }
                    IFLA_IFNAME => m.ifname = payload,
                    IFLA_ALT_IFNAME => m.altname = payload,
                    IFLA_LINKINFO => m.linkinfo = payload,
                    IFLA_NET_NS_PID | IFLA_NET_NS_FD => m.moves = true,
                    IFLA_TARGET_NETNSID => m.target_ns = true,
                    _ => {}
                }
                attr += align4(alen);
                continue;
            }
        }
        // The message's end.
        in_msg = false;
        off = next;
        w.count = n + 1;
        let m = &w.msgs[k];
        let renames = m.ifname.is_some() && m.index > 0;
        if m.moves || m.target_ns || renames || m.flags & NLM_F_CREATE != 0 {
            w.changed = true;
        }
    }
    Ok(None)
}

/// One complete link message.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn judge_link<B: Bytes, L: Lookup>(
    b: &B,
    m: &LinkMsg,
    sender: Sender,
    lk: &L,
    key: &mut NameKey,
    checks: &mut [Option<ModeCheck>; MAX_MODE_CHECKS],
) -> Result<Option<Refusal>, Fault> {
    let master = m.master.unwrap_or(0);
    let identity_changed = m.after_identity_change;
    if sender == Sender::Other {
        // Another namespace: only what can reach a namespace the veto cannot see.
        if ((m.moves || m.target_ns) && master != 0) || (m.target_ns && m.linkinfo.is_some()) {
            return Ok(refuse(VetoWhat::Unparseable, 0, 0, EOPNOTSUPP));
        }
        return Ok(None);
    }
    if m.malformed {
        // The kernel rejects the whole message (IFLA_MASTER shorter than a u32); refused the same.
        return Ok(refuse(VetoWhat::Unparseable, 0, 0, EINVAL));
    }
    let addressed_by_name = m.index <= 0;
    if master != 0 && !m.moves && !m.target_ns && lk.managed_bond(master) {
        if identity_changed {
            return Ok(refuse(VetoWhat::Unparseable, master, 0, ENODEV));
        }
        #[expect(clippy::cast_sign_loss, reason = "index > 0 on this branch")]
        let (verdict, member) = if m.index > 0 {
            (lk.verdict(m.index as u32), m.index as u32)
        } else if let Some(n) = name_of(b, m, key)? {
            (if n { lk.verdict_by_name(key) } else { ENODEV }, 0)
        } else {
            (ENODEV, 0) // a device created into the bond: not a SmartNIC port
        };
        if verdict != 0 {
            return Ok(refuse(VetoWhat::MemberNetlink, master, member, verdict));
        }
    }
    let Some(li) = m.linkinfo else { return Ok(None) };
    if m.ty != RTM_NEWLINK || m.moves || m.target_ns {
        return Ok(None); // RTM_SETLINK ignores IFLA_LINKINFO; a moved device is not a managed bond here
    }
    #[expect(clippy::cast_sign_loss, reason = "index > 0 on this branch")]
    let bond = if m.index > 0 {
        if lk.managed_bond(m.index as u32) {
            m.index as u32
        } else {
            0
        }
    } else {
        match name_of(b, m, key)? {
            Some(true) => lk.bond_by_name(key).unwrap_or(0),
            Some(false) => {
                // A name the maps cannot hold: it may be a managed bond's.
                return Ok(refuse(VetoWhat::Unparseable, 0, 0, EOPNOTSUPP));
            }
            None => 0,
        }
    };
    if bond == 0 {
        if identity_changed && addressed_by_name {
            // A name that an earlier message may have given to a managed bond.
            return Ok(refuse(VetoWhat::Unparseable, 0, 0, EOPNOTSUPP));
        }
        return Ok(None);
    }
    let mut i = 0;
    while i < MAX_MODE_CHECKS {
        if checks[i].is_none() {
            checks[i] = Some(ModeCheck { bond, linkinfo: li });
            return Ok(None);
        }
        i += 1;
    }
    Ok(refuse(VetoWhat::Unparseable, bond, 0, EOPNOTSUPP))
}

/// The name a message addresses its device by (`IFLA_IFNAME`, else `IFLA_ALT_IFNAME`) into `key`:
/// `Some(true)` read, `Some(false)` a name no device can have (too long), `None` no name.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn name_of<B: Bytes>(b: &B, m: &LinkMsg, key: &mut NameKey) -> Result<Option<bool>, Fault> {
    let Some((at, n)) = (if m.ifname.is_some() { m.ifname } else { m.altname }) else { return Ok(None) };
    if n == 0 || n as usize >= NAME_LEN {
        return Ok(Some(false));
    }
    key.name = [0; NAME_LEN];
    b.load_name(at, n, &mut key.name)?;
    Ok(Some(true))
}

/// The last `want` attribute among the attributes in `span`; `Err(true)` if more than `N` attributes.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn last_attr<B: Bytes, const N: u32>(b: &B, span: Span, want: u16) -> Result<Result<Option<Span>, ()>, Fault> {
    let (start, len) = span;
    let end = start + len;
    let mut at = start;
    let mut found = None;
    for _ in 0..N {
        if at.saturating_add(4) > end {
            return Ok(Ok(found));
        }
        let a: NlAttr = b.load(at)?;
        let alen = u32::from(a.len);
        if alen < 4 || alen > end - at {
            return Ok(Ok(found));
        }
        if a.ty & NLA_TYPE_MASK == want {
            found = Some((at + 4, alen - 4));
        }
        at += align4(alen);
    }
    if at.saturating_add(4) > end {
        Ok(Ok(found))
    } else {
        Ok(Err(()))
    }
}

/// A managed bond's `IFLA_LINKINFO`: `IFLA_INFO_DATA` → `IFLA_BOND_MODE`, last of each.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn judge_mode<B: Bytes>(b: &B, c: ModeCheck) -> Result<Option<Refusal>, Fault> {
    let Ok(data) = last_attr::<B, MAX_LINKINFO_ATTRS>(b, c.linkinfo, IFLA_INFO_DATA)? else {
        return Ok(refuse(VetoWhat::Unparseable, c.bond, 0, EOPNOTSUPP));
    };
    let Some(data) = data else { return Ok(None) };
    let Ok(mode) = last_attr::<B, MAX_BOND_ATTRS>(b, data, IFLA_BOND_MODE)? else {
        return Ok(refuse(VetoWhat::Unparseable, c.bond, 0, EOPNOTSUPP));
    };
    let Some((at, n)) = mode else { return Ok(None) };
    if n < 1 {
        return Ok(refuse(VetoWhat::Unparseable, c.bond, 0, EINVAL)); // the kernel rejects it too
    }
    let v: u8 = b.load(at)?;
    if v == BOND_MODE_ACTIVEBACKUP {
        return Ok(None);
    }
    Ok(Some(Refusal { what: VetoWhat::ModeNetlink, bond: c.bond, member: 0, errno: EOPNOTSUPP, mode: v }))
}

#[cfg(test)]
#[path = "veto_rtnl_tests.rs"]
mod tests;
