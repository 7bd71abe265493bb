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

/// Whether a step function wants to be called again (the eBPF side returns it from a `bpf_loop` callback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Call the next step.
    Continue,
    /// Done: no more steps.
    Stop,
}

impl Flow {
    /// As a `bpf_loop` callback returns it (0 = continue, 1 = stop).
    #[must_use]
    pub const fn code(self) -> i64 {
        match self {
            Self::Continue => 0,
            Self::Stop => 1,
        }
    }
}

/// Where the walk stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Walked {
    /// More to read.
    Running,
    /// The whole buffer was read.
    Finished,
    /// More link messages than [`MAX_LINK_MSGS`].
    TooMany,
}

/// Working memory of [`judge`] and its steps. The eBPF side keeps it in a per-CPU map (too large for the
/// BPF stack) and runs each step from a `bpf_loop` callback: the verifier then checks one step, not every
/// step of every path through the buffer.
pub struct Work {
    /// A name in the sender's namespace, as the maps key it (`netns` set by the caller).
    pub key: NameKey,
    /// The request: (eBPF) the address of its bytes, set by the caller.
    pub data: u64,
    /// The request's length in bytes.
    pub len: u32,
    /// A read failed in a step (the eBPF callbacks record it here; the caller refuses).
    pub fault: bool,
    /// What a step refused (the eBPF callbacks record it here).
    pub refusal: Option<Refusal>,
    sender: Sender,
    msgs: [LinkMsg; MAX_LINK_MSGS],
    checks: [Option<ModeCheck>; MAX_MODE_CHECKS],
    changed: bool,
    count: usize,
    walked: Walked,
    off: u32,
    next: u32,
    msg_end: u32,
    attr: u32,
    in_msg: bool,
}

impl Work {
    /// Working memory for a sender in namespace `netns`.
    #[must_use]
    pub const fn new(netns: u32) -> Self {
        Self {
            key: NameKey::empty(netns),
            data: 0,
            len: 0,
            fault: false,
            refusal: None,
            sender: Sender::Managed,
            msgs: [EMPTY_MSG; MAX_LINK_MSGS],
            checks: [None; MAX_MODE_CHECKS],
            changed: false,
            count: 0,
            walked: Walked::Running,
            off: 0,
            next: 0,
            msg_end: 0,
            attr: 0,
            in_msg: false,
        }
    }

    /// Start judging a buffer of `len` bytes sent by `sender` (`key.netns` and `data` are the caller's).
    pub fn begin(&mut self, len: u32, sender: Sender) {
        self.len = len;
        self.sender = sender;
        self.fault = false;
        self.refusal = None;
        self.checks = [None; MAX_MODE_CHECKS];
        self.changed = false;
        self.count = 0;
        self.walked = Walked::Running;
        self.off = 0;
        self.next = 0;
        self.msg_end = 0;
        self.attr = 0;
        self.in_msg = false;
    }

    /// After at most [`MAX_STEPS`] calls of [`walk_step`]: the number of link messages to judge with
    /// [`judge_msg`], or the refusal of a buffer longer than the veto reads.
    ///
    /// # Errors
    /// The refusal (fail closed).
    pub const fn walked(&self) -> Result<u32, Refusal> {
        match self.walked {
            #[expect(clippy::cast_possible_truncation, reason = "at most MAX_LINK_MSGS")]
            Walked::Finished => Ok(self.count as u32),
            Walked::Running | Walked::TooMany => {
                Err(Refusal { what: VetoWhat::Unparseable, bond: 0, member: 0, errno: EOPNOTSUPP, mode: 0 })
            }
        }
    }
}

/// The verdict on one buffer of `len` bytes sent by `sender`: `None` = allow. `w.key.netns` is the
/// sender's namespace. The steps the eBPF program runs with `bpf_loop`, run with plain loops.
///
/// # Errors
/// [`Fault`] when the buffer cannot be read: the caller refuses (fail closed).
pub fn judge<B: Bytes, L: Lookup>(
    b: &B,
    len: u32,
    sender: Sender,
    lk: &L,
    w: &mut Work,
) -> Result<Option<Refusal>, Fault> {
    w.begin(len, sender);
    for _ in 0..MAX_STEPS {
        if walk_step(b, w)? == Flow::Stop {
            break;
        }
    }
    let n = match w.walked() {
        Ok(n) => n,
        Err(r) => return Ok(Some(r)),
    };
    for i in 0..n {
        if let Some(r) = judge_msg(b, lk, w, i)? {
            return Ok(Some(r));
        }
    }
    for i in 0..MAX_MODE_CHECKS {
        #[expect(clippy::cast_possible_truncation, reason = "at most MAX_MODE_CHECKS")]
        if let Some(r) = judge_mode_check(b, w, i as u32)? {
            return Ok(Some(r));
        }
    }
    Ok(None)
}

/// One step of the walk that records the buffer's link messages in `w` (a message header, or one
/// attribute, or a message's end).
///
/// # Errors
/// [`Fault`] when the buffer cannot be read.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
#[expect(clippy::many_single_char_names, reason = "b(ytes), w(ork), m(essage), h(eader), a(ttribute), n")]
pub fn walk_step<B: Bytes>(b: &B, w: &mut Work) -> Result<Flow, Fault> {
    if w.walked != Walked::Running {
        return Ok(Flow::Stop);
    }
    let len = w.len;
    let n = w.count;
    let k = n & (MAX_LINK_MSGS - 1);
    if !w.in_msg {
        let off = w.off;
        if off.saturating_add(NLMSG_HDRLEN) > len {
            w.walked = Walked::Finished;
            return Ok(Flow::Stop);
        }
        let h: NlMsgHdr = b.load(off)?;
        if h.len < NLMSG_HDRLEN || h.len > len - off {
            w.walked = Walked::Finished;
            return Ok(Flow::Stop);
        }
        w.msg_end = off + h.len;
        w.next = if align4(h.len) > len - off { len } else { off + align4(h.len) };
        let request = h.flags & NLM_F_REQUEST != 0 && h.ty >= NLMSG_MIN_TYPE;
        if request && (h.ty == RTM_NEWLINK || h.ty == RTM_SETLINK) && h.len >= NLMSG_HDRLEN + IFINFOMSG_LEN {
            if n >= MAX_LINK_MSGS {
                w.walked = Walked::TooMany;
                return Ok(Flow::Stop);
            }
            let index = b.load(off + NLMSG_HDRLEN + 4)?;
            let changed = w.changed;
            let m = &mut w.msgs[k];
            *m = EMPTY_MSG;
            m.ty = h.ty;
            m.flags = h.flags;
            m.index = index;
            m.after_identity_change = changed;
            w.attr = off + NLMSG_HDRLEN + IFINFOMSG_LEN;
            w.in_msg = true;
        } else {
            if request && h.ty == RTM_DELLINK {
                w.changed = true;
            }
            w.off = w.next;
        }
        return Ok(Flow::Continue);
    }
    // In a link message: the next attribute, or the message's end (nla_ok).
    let attr = w.attr;
    let msg_end = w.msg_end;
    if attr.saturating_add(4) <= msg_end {
        let a: NlAttr = b.load(attr)?;
        let alen = u32::from(a.len);
        if alen >= 4 && alen <= msg_end - attr {
            let payload = Some((attr + 4, alen - 4));
            let master = if a.ty & NLA_TYPE_MASK == IFLA_MASTER && alen >= 8 { Some(b.load(attr + 4)?) } else { None };
            let m = &mut w.msgs[k];
            match a.ty & NLA_TYPE_MASK {
                IFLA_MASTER => {
                    if master.is_none() {
                        m.malformed = true;
                    } else {
                        m.master = master;
                    }
                }
                IFLA_IFNAME => m.ifname = payload,
                IFLA_ALT_IFNAME => m.altname = payload,
                IFLA_LINKINFO => m.linkinfo = payload,
                IFLA_NET_NS_PID | IFLA_NET_NS_FD => m.moves = true,
                IFLA_TARGET_NETNSID => m.target_ns = true,
                _ => {}
            }
            w.attr = attr + align4(alen);
            return Ok(Flow::Continue);
        }
    }
    // The message's end.
    w.in_msg = false;
    w.off = w.next;
    w.count = n + 1;
    let m = &w.msgs[k];
    let renames = m.ifname.is_some() && m.index > 0;
    if m.moves || m.target_ns || renames || m.flags & NLM_F_CREATE != 0 {
        w.changed = true;
    }
    Ok(Flow::Continue)
}

/// Judge link message `i` (< the count [`Work::walked`] gave) as the kernel will apply it; a mode change
/// of a managed bond is recorded for [`judge_mode_check`].
///
/// # Errors
/// [`Fault`] when the buffer cannot be read.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn judge_msg<B: Bytes, L: Lookup>(b: &B, lk: &L, w: &mut Work, i: u32) -> Result<Option<Refusal>, Fault> {
    let m = w.msgs[i as usize & (MAX_LINK_MSGS - 1)];
    judge_link(b, &m, w.sender, lk, &mut w.key, &mut w.checks)
}

/// Judge recorded mode change `i` (< [`MAX_MODE_CHECKS`]; nothing if none was recorded there).
///
/// # Errors
/// [`Fault`] when the buffer cannot be read.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
pub fn judge_mode_check<B: Bytes>(b: &B, w: &Work, i: u32) -> Result<Option<Refusal>, Fault> {
    match w.checks[i as usize & (MAX_MODE_CHECKS - 1)] {
        Some(c) => judge_mode(b, c),
        None => Ok(None),
    }
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

/// [`last_attr`] found no such attribute (offset 0 is a message header, never an attribute's payload).
const ABSENT: Span = (0, 0);
/// [`last_attr`] met more attributes than it reads (no payload starts at the last byte of the address space).
const TOO_MANY: Span = (u32::MAX, 0);

/// The payload of the last `want` attribute among the attributes in `span`: [`ABSENT`] if none, [`TOO_MANY`]
/// past `N` attributes. Plain values rather than nested `Option`s: an enum's payload is undefined while it
/// is `None`, and the compiler may then compute with whatever a register holds (once a map pointer, which
/// the eBPF verifier refuses to shift).
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn last_attr<B: Bytes, const N: u32>(b: &B, span: Span, want: u16) -> Result<Span, Fault> {
    let (start, len) = span;
    let end = start + len;
    let mut at = start;
    let mut found = ABSENT;
    for _ in 0..N {
        if at.saturating_add(4) > end {
            return Ok(found);
        }
        let a: NlAttr = b.load(at)?;
        let alen = u32::from(a.len);
        if alen < 4 || alen > end - at {
            return Ok(found);
        }
        if a.ty & NLA_TYPE_MASK == want {
            found = (at + 4, alen - 4);
        }
        at += align4(alen);
    }
    if at.saturating_add(4) > end {
        Ok(found)
    } else {
        Ok(TOO_MANY)
    }
}

/// A managed bond's `IFLA_LINKINFO`: `IFLA_INFO_DATA` → `IFLA_BOND_MODE`, last of each.
#[inline(always)]
#[expect(clippy::inline_always, reason = "eBPF: no BPF-to-BPF call, so the verifier keeps pointer types and constants")]
fn judge_mode<B: Bytes>(b: &B, c: ModeCheck) -> Result<Option<Refusal>, Fault> {
    let data = last_attr::<B, MAX_LINKINFO_ATTRS>(b, c.linkinfo, IFLA_INFO_DATA)?;
    if data == TOO_MANY {
        return Ok(refuse(VetoWhat::Unparseable, c.bond, 0, EOPNOTSUPP));
    }
    if data == ABSENT {
        return Ok(None);
    }
    let mode = last_attr::<B, MAX_BOND_ATTRS>(b, data, IFLA_BOND_MODE)?;
    if mode == TOO_MANY {
        return Ok(refuse(VetoWhat::Unparseable, c.bond, 0, EOPNOTSUPP));
    }
    if mode == ABSENT {
        return Ok(None);
    }
    let (at, n) = mode;
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
