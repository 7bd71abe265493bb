//! Unit tests of the rtnetlink veto's reading, and property tests against a model of the kernel's
//! parser (unbounded, written the plain way: slices and maps) on generated buffers.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;

use super::*;

const NS: u32 = 4_026_531_840;
const BOND: u32 = 1;
const OK_DEV: u32 = 2;
const BAD_DEV: u32 = 3;
const OTHER_BOND: u32 = 4;

/// The maps of the test world: bond 1 "bond0" managed; 2 "ok" allowed; 3 "bad" refused; 4 "b4" an
/// unmanaged bond (refused as a member, EINVAL).
struct World {
    managed: BTreeSet<u32>,
    verdicts: BTreeMap<u32, u32>,
    names: BTreeMap<Vec<u8>, u32>,
}

fn world() -> World {
    World {
        managed: [BOND].into(),
        verdicts: [(BOND, EINVAL), (OK_DEV, 0), (BAD_DEV, ENODEV), (OTHER_BOND, EINVAL)].into(),
        names: [
            (b"bond0".to_vec(), BOND),
            (b"ok".to_vec(), OK_DEV),
            (b"bad".to_vec(), BAD_DEV),
            (b"b4".to_vec(), OTHER_BOND),
            (b"a-very-long-alternative-name-of-ok".to_vec(), OK_DEV),
        ]
        .into(),
    }
}

fn key_name(k: &NameKey) -> Vec<u8> {
    k.name.iter().copied().take_while(|&c| c != 0).collect()
}

impl Lookup for World {
    fn managed_bond(&self, ifindex: u32) -> bool {
        self.managed.contains(&ifindex)
    }
    fn bond_by_name(&self, key: &NameKey) -> Option<u32> {
        assert_eq!(key.netns, NS);
        self.names.get(&key_name(key)).copied().filter(|i| self.managed.contains(i))
    }
    fn verdict(&self, ifindex: u32) -> u32 {
        self.verdicts.get(&ifindex).copied().unwrap_or(ENODEV)
    }
    fn verdict_by_name(&self, key: &NameKey) -> u32 {
        // A key with bytes after an embedded NUL is no device's name.
        let n = key_name(key);
        if key.name[n.len()..].iter().any(|&c| c != 0) {
            return ENODEV;
        }
        self.names.get(&n).map_or(ENODEV, |i| self.verdict(*i))
    }
}

struct Slice<'a>(&'a [u8]);

impl Bytes for Slice<'_> {
    fn load<T: Copy>(&self, off: u32) -> Result<T, Fault> {
        let off = off as usize;
        let n = core::mem::size_of::<T>();
        let b = self.0.get(off..off + n).ok_or(Fault)?;
        // SAFETY: `n` bytes of plain data read unaligned.
        Ok(unsafe { core::ptr::read_unaligned(b.as_ptr().cast::<T>()) })
    }
    fn load_name(&self, off: u32, len: u32, out: &mut [u8; NAME_LEN]) -> Result<(), Fault> {
        let b = self.0.get(off as usize..(off + len) as usize).ok_or(Fault)?;
        out[..b.len()].copy_from_slice(b);
        Ok(())
    }
}

// ---- building requests ----

#[derive(Clone, Debug)]
enum Attr {
    Master(u32),
    ShortMaster,
    IfName(Vec<u8>),
    AltName(Vec<u8>),
    /// `IFLA_LINKINFO { IFLA_INFO_KIND "bond", IFLA_INFO_DATA { IFLA_BOND_MODE each, in order } }`.
    Mode(Vec<u8>),
    NetNsPid,
    TargetNetnsid,
    Unknown(u16, Vec<u8>),
}

fn attr(ty: u16, payload: &[u8]) -> Vec<u8> {
    let len = 4 + payload.len();
    let mut v = Vec::new();
    v.extend_from_slice(&u16::try_from(len).unwrap().to_ne_bytes());
    v.extend_from_slice(&ty.to_ne_bytes());
    v.extend_from_slice(payload);
    while v.len() % 4 != 0 {
        v.push(0);
    }
    v
}

fn encode_attr(a: &Attr) -> Vec<u8> {
    match a {
        Attr::Master(i) => attr(IFLA_MASTER, &i.to_ne_bytes()),
        Attr::ShortMaster => attr(IFLA_MASTER, &[1, 0]),
        Attr::IfName(n) => attr(IFLA_IFNAME, &[n.as_slice(), b"\0"].concat()),
        Attr::AltName(n) => attr(IFLA_ALT_IFNAME, &[n.as_slice(), b"\0"].concat()),
        Attr::Mode(modes) => {
            let mut data = Vec::new();
            for m in modes {
                data.extend(attr(IFLA_BOND_MODE, &[*m]));
            }
            let mut li = attr(1, b"bond\0");
            li.extend(attr(IFLA_INFO_DATA | 0x8000, &data));
            attr(IFLA_LINKINFO | 0x8000, &li)
        }
        Attr::NetNsPid => attr(IFLA_NET_NS_PID, &1u32.to_ne_bytes()),
        Attr::TargetNetnsid => attr(IFLA_TARGET_NETNSID, &0i32.to_ne_bytes()),
        Attr::Unknown(t, p) => attr(*t, p),
    }
}

#[derive(Clone, Debug)]
struct Msg {
    ty: u16,
    flags: u16,
    index: i32,
    attrs: Vec<Attr>,
}

fn encode_msg(m: &Msg) -> Vec<u8> {
    let mut body = Vec::new();
    body.extend_from_slice(&[0u8; 4]); // family, pad, type
    body.extend_from_slice(&m.index.to_ne_bytes());
    body.extend_from_slice(&[0u8; 8]); // flags, change
    for a in &m.attrs {
        body.extend(encode_attr(a));
    }
    let len = 16 + body.len();
    let mut v = Vec::new();
    v.extend_from_slice(&u32::try_from(len).unwrap().to_ne_bytes());
    v.extend_from_slice(&m.ty.to_ne_bytes());
    v.extend_from_slice(&m.flags.to_ne_bytes());
    v.extend_from_slice(&[0u8; 8]);
    v.extend(body);
    v
}

fn encode(msgs: &[Msg]) -> Vec<u8> {
    msgs.iter().flat_map(encode_msg).collect()
}

fn run(buf: &[u8], sender: Sender) -> Option<Refusal> {
    judge(&Slice(buf), u32::try_from(buf.len()).unwrap(), sender, &world(), &mut Work::new(NS)).expect("readable")
}

fn set(index: i32, attrs: Vec<Attr>) -> Msg {
    Msg { ty: RTM_NEWLINK, flags: NLM_F_REQUEST, index, attrs }
}

// ---- the model of the kernel ----

/// What the kernel does with a buffer, as far as the veto cares.
#[derive(Debug, PartialEq, Eq)]
enum Effect {
    /// Nothing a managed bond forbids.
    Clean,
    /// A refused device enslaved to a managed bond, or a managed bond's mode changed.
    Forbidden,
    /// Depends on what the veto cannot see (an identity changed earlier in the buffer, another
    /// namespace): the veto may refuse either way.
    Unknowable,
}

/// Kernel-style liberal parse: every attribute, the last of each type wins. An `IFLA_MASTER` shorter than
/// a u32 anywhere fails the policy check (the kernel rejects the message): recorded as an empty one.
fn kernel_attrs(area: &[u8]) -> BTreeMap<u16, &[u8]> {
    let mut short_master = false;
    let mut tb = kernel_attrs_all(area, &mut short_master);
    if short_master {
        tb.insert(IFLA_MASTER, &[]);
    }
    tb
}

fn kernel_attrs_all<'a>(area: &'a [u8], short_master: &mut bool) -> BTreeMap<u16, &'a [u8]> {
    let mut tb = BTreeMap::new();
    let mut rest = area;
    while rest.len() >= 4 {
        let len = usize::from(u16::from_ne_bytes([rest[0], rest[1]]));
        let ty = u16::from_ne_bytes([rest[2], rest[3]]) & NLA_TYPE_MASK;
        if len < 4 || len > rest.len() {
            break;
        }
        tb.insert(ty, &rest[4..len]);
        *short_master |= ty == IFLA_MASTER && len < 8;
        let step = (len + 3) & !3;
        if step >= rest.len() {
            break;
        }
        rest = &rest[step..];
    }
    tb
}

fn name_str(p: &[u8]) -> Vec<u8> {
    p.iter().copied().take_while(|&c| c != 0).collect()
}

fn model(buf: &[u8], sender: Sender) -> Effect {
    let w = world();
    let mut rest = buf;
    let mut changed = false;
    let mut mode_checks = 0;
    let mut effect = Effect::Clean;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        let flags = u16::from_ne_bytes([rest[6], rest[7]]);
        if len < 16 || len > rest.len() {
            break;
        }
        let msg = &rest[..len];
        rest = &rest[((len + 3) & !3).min(rest.len())..];
        if flags & NLM_F_REQUEST == 0 {
            continue;
        }
        if ty == RTM_DELLINK {
            changed = true;
            continue;
        }
        if (ty != RTM_NEWLINK && ty != RTM_SETLINK) || len < 32 {
            continue;
        }
        let index = i32::from_ne_bytes(msg[20..24].try_into().unwrap());
        let tb = kernel_attrs(&msg[32..]);
        let master = tb.get(&IFLA_MASTER).map(|p| {
            if p.len() >= 4 {
                u32::from_ne_bytes(p[..4].try_into().unwrap())
            } else {
                u32::MAX
            }
        });
        let moves = tb.contains_key(&IFLA_NET_NS_PID)
            || tb.contains_key(&IFLA_NET_NS_FD)
            || tb.contains_key(&IFLA_TARGET_NETNSID);
        let mut e = Effect::Clean;
        if sender == Sender::Other {
            if (moves && master.is_some_and(|m| m != 0))
                || (tb.contains_key(&IFLA_TARGET_NETNSID) && tb.contains_key(&IFLA_LINKINFO))
            {
                e = Effect::Unknowable;
            }
        } else if master == Some(u32::MAX) {
            e = Effect::Unknowable; // malformed: the kernel rejects the message
        } else {
            let by_name = tb.get(&IFLA_IFNAME).or_else(|| tb.get(&IFLA_ALT_IFNAME)).map(|p| name_str(p));
            let dev: Option<u32> = if index > 0 {
                Some(index.unsigned_abs())
            } else {
                by_name.as_ref().and_then(|n| w.names.get(n).copied())
            };
            if let Some(m) = master.filter(|m| *m != 0 && w.managed.contains(m)) {
                if moves {
                    // resolves in the destination namespace: not managed
                } else if changed {
                    e = Effect::Unknowable;
                } else if dev.is_none_or(|d| w.verdict(d) != 0) {
                    e = Effect::Forbidden;
                }
                let _ = m;
            }
            if ty == RTM_NEWLINK && !moves && e == Effect::Clean {
                if let Some(li) = tb.get(&IFLA_LINKINFO) {
                    let data = kernel_attrs(li).get(&IFLA_INFO_DATA).map(|d| kernel_attrs(d));
                    let mode = data.as_ref().and_then(|d| d.get(&IFLA_BOND_MODE).map(|p| p.first().copied()));
                    let is_managed = dev.is_some_and(|d| w.managed.contains(&d));
                    if is_managed {
                        mode_checks += 1;
                    }
                    if (changed && index <= 0) || mode_checks > MAX_MODE_CHECKS {
                        e = Effect::Unknowable;
                    } else if is_managed {
                        match mode {
                            Some(Some(1)) | None => {}
                            Some(None) => e = Effect::Unknowable,
                            Some(Some(_)) => e = Effect::Forbidden,
                        }
                    }
                }
            }
        }
        let renames = tb.contains_key(&IFLA_IFNAME) && index > 0;
        if moves || renames || flags & NLM_F_CREATE != 0 {
            changed = true;
        }
        match e {
            Effect::Forbidden => return Effect::Forbidden,
            Effect::Unknowable => effect = Effect::Unknowable,
            Effect::Clean => {}
        }
    }
    effect
}

/// Messages plus attributes the veto walks for `buf` (to know when the bound applies).
fn steps(buf: &[u8]) -> u32 {
    let mut n = 0u32;
    let mut rest = buf;
    while rest.len() >= 16 {
        let len = u32::from_ne_bytes(rest[0..4].try_into().unwrap()) as usize;
        let ty = u16::from_ne_bytes([rest[4], rest[5]]);
        if len < 16 || len > rest.len() {
            break;
        }
        n += 1;
        if (ty == RTM_NEWLINK || ty == RTM_SETLINK) && len >= 32 {
            let mut area = &rest[32..len];
            n += 1;
            while area.len() >= 4 {
                let alen = usize::from(u16::from_ne_bytes([area[0], area[1]]));
                if alen < 4 || alen > area.len() {
                    break;
                }
                n += 1;
                area = &area[((alen + 3) & !3).min(area.len())..];
            }
        }
        rest = &rest[((len + 3) & !3).min(rest.len())..];
    }
    n + 1
}

// ---- unit tests: the classes of the issue ----

#[test]
fn plain_requests() {
    assert_eq!(run(&encode(&[set(OK_DEV.cast_signed(), vec![Attr::Master(BOND)])]), Sender::Managed), None);
    let r = run(&encode(&[set(3, vec![Attr::Master(BOND)])]), Sender::Managed).unwrap();
    assert_eq!((r.what, r.bond, r.member, r.errno), (VetoWhat::MemberNetlink, BOND, BAD_DEV, ENODEV));
    let r = run(&encode(&[set(4, vec![Attr::Master(BOND)])]), Sender::Managed).unwrap();
    assert_eq!(r.errno, EINVAL, "a bond as a member");
    // Another bond as master: not ours.
    assert_eq!(run(&encode(&[set(3, vec![Attr::Master(OTHER_BOND)])]), Sender::Managed), None);
    // Releasing (master 0) is always allowed.
    assert_eq!(run(&encode(&[set(3, vec![Attr::Master(0)])]), Sender::Managed), None);
}

#[test]
fn duplicates_last_wins() {
    let m = set(3, vec![Attr::Master(0), Attr::Master(BOND)]);
    assert!(run(&encode(&[m]), Sender::Managed).is_some());
    let m = set(3, vec![Attr::Master(BOND), Attr::Master(0)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed), None, "the kernel applies master 0");
    let m = set(1, vec![Attr::Mode(vec![1, 0])]);
    assert_eq!(run(&encode(&[m]), Sender::Managed).unwrap().what, VetoWhat::ModeNetlink);
    let m = set(1, vec![Attr::Mode(vec![0, 1])]);
    assert_eq!(run(&encode(&[m]), Sender::Managed), None);
}

#[test]
fn name_addressing() {
    let m = set(0, vec![Attr::IfName(b"bad".to_vec()), Attr::Master(BOND)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed).unwrap().errno, ENODEV);
    let m = set(0, vec![Attr::AltName(b"bad".to_vec()), Attr::Master(BOND)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed).unwrap().errno, ENODEV);
    let m = set(0, vec![Attr::AltName(b"a-very-long-alternative-name-of-ok".to_vec()), Attr::Master(BOND)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed), None, "a long alternative name resolves");
    let m = set(0, vec![Attr::IfName(b"ok".to_vec()), Attr::AltName(b"bad".to_vec()), Attr::Master(BOND)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed), None, "IFLA_IFNAME is used before IFLA_ALT_IFNAME");
    let m = set(0, vec![Attr::IfName(b"bond0".to_vec()), Attr::Mode(vec![4])]);
    assert_eq!(run(&encode(&[m]), Sender::Managed).unwrap().bond, BOND);
    let m = set(0, vec![Attr::IfName(b"new0".to_vec()), Attr::Master(BOND)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed).unwrap().errno, ENODEV, "created into the bond");
}

#[test]
fn padding_and_batches() {
    let mut attrs: Vec<Attr> = (0..40).map(|i| Attr::Unknown(200 + i, vec![])).collect();
    attrs.push(Attr::Master(BOND));
    assert!(run(&encode(&[set(3, attrs)]), Sender::Managed).is_some());
    let mut batch: Vec<Msg> = (0..9).map(|_| Msg { ty: 20, flags: NLM_F_REQUEST, index: 0, attrs: vec![] }).collect();
    batch.push(set(3, vec![Attr::Master(BOND)]));
    assert!(run(&encode(&batch), Sender::Managed).is_some(), "the last of ten messages");
    // More link messages than judged: refused.
    let many: Vec<Msg> = (0..=MAX_LINK_MSGS).map(|_| set(2, vec![])).collect();
    assert_eq!(run(&encode(&many), Sender::Managed).unwrap().what, VetoWhat::Unparseable);
    let fine: Vec<Msg> = (0..MAX_LINK_MSGS).map(|_| set(2, vec![])).collect();
    assert_eq!(run(&encode(&fine), Sender::Managed), None);
    // Past the bound: refused whatever it holds.
    let huge: Vec<Attr> = (0..u16::try_from(MAX_STEPS).unwrap()).map(|i| Attr::Unknown(300 + i, vec![])).collect();
    assert_eq!(run(&encode(&[set(2, huge)]), Sender::Managed).unwrap().what, VetoWhat::Unparseable);
    // A trailing fragment after the last message is ignored, as by the kernel.
    let mut b = encode(&[set(2, vec![Attr::Master(BOND)])]);
    b.extend_from_slice(&[1, 2, 3]);
    assert_eq!(run(&b, Sender::Managed), None);
}

#[test]
fn identities_changed_in_one_buffer() {
    let del = Msg { ty: RTM_DELLINK, flags: NLM_F_REQUEST, index: 2, attrs: vec![] };
    let create =
        Msg { ty: RTM_NEWLINK, flags: NLM_F_REQUEST | NLM_F_CREATE, index: 2, attrs: vec![Attr::Master(BOND)] };
    assert!(run(&encode(&[del, create]), Sender::Managed).is_some(), "ifindex reused in one sendmsg");
    let r1 = set(2, vec![Attr::IfName(b"x".to_vec())]);
    let r2 = set(3, vec![Attr::IfName(b"ok".to_vec())]);
    let en = set(0, vec![Attr::IfName(b"ok".to_vec()), Attr::Master(BOND)]);
    assert!(run(&encode(&[r1, r2, en]), Sender::Managed).is_some(), "renamed, then enslaved by name");
}

#[test]
fn namespaces() {
    // Another namespace: its own devices, whatever their numbers and names.
    for m in [
        set(3, vec![Attr::Master(BOND)]),
        set(1, vec![Attr::Mode(vec![0])]),
        set(0, vec![Attr::IfName(b"bad".to_vec()), Attr::Master(BOND)]),
    ] {
        assert_eq!(run(&encode(&[m]), Sender::Other), None);
    }
    // ... but a device moved out with a master set in the same request is refused.
    let m = set(3, vec![Attr::NetNsPid, Attr::Master(BOND)]);
    assert!(run(&encode(&[m]), Sender::Other).is_some());
    let m = set(3, vec![Attr::TargetNetnsid, Attr::Master(BOND)]);
    assert!(run(&encode(&[m]), Sender::Other).is_some());
    // From the managed namespace a move goes elsewhere: the master is not one of ours.
    let m = set(3, vec![Attr::NetNsPid, Attr::Master(BOND)]);
    assert_eq!(run(&encode(&[m]), Sender::Managed), None);
}

#[test]
fn malformed_and_unreadable() {
    assert!(run(&encode(&[set(2, vec![Attr::ShortMaster])]), Sender::Managed).is_some());
    let b = encode(&[set(3, vec![Attr::Master(BOND)])]);
    // The length claims more than can be read: a fault, which the program turns into a refusal.
    let r = judge(&Slice(&b[..20]), u32::try_from(b.len()).unwrap(), Sender::Managed, &world(), &mut Work::new(NS));
    assert_eq!(r, Err(Fault));
}

// ---- property tests ----

fn arb_name() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"bond0".to_vec()),
        Just(b"ok".to_vec()),
        Just(b"bad".to_vec()),
        Just(b"b4".to_vec()),
        Just(b"nope".to_vec()),
        Just(b"a-very-long-alternative-name-of-ok".to_vec()),
    ]
}

fn arb_attr() -> impl Strategy<Value = Attr> {
    prop_oneof![
        4 => (0u32..6).prop_map(Attr::Master),
        1 => Just(Attr::ShortMaster),
        2 => arb_name().prop_map(Attr::IfName),
        2 => arb_name().prop_map(Attr::AltName),
        2 => proptest::collection::vec(0u8..7, 0..3).prop_map(Attr::Mode),
        1 => Just(Attr::NetNsPid),
        1 => Just(Attr::TargetNetnsid),
        3 => (60u16..400, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(|(t, p)| Attr::Unknown(t, p)),
    ]
}

fn arb_msg() -> impl Strategy<Value = Msg> {
    (
        prop_oneof![4 => Just(RTM_NEWLINK), 2 => Just(RTM_SETLINK), 1 => Just(RTM_DELLINK), 1 => Just(20u16), 1 => Just(2u16)],
        prop_oneof![6 => Just(NLM_F_REQUEST), 1 => Just(NLM_F_REQUEST | NLM_F_CREATE), 1 => Just(0u16)],
        -1i32..6,
        proptest::collection::vec(arb_attr(), 0..8),
    )
        .prop_map(|(ty, flags, index, attrs)| Msg { ty, flags, index, attrs })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1500, ..ProptestConfig::default() })]

    /// Whatever the kernel would do that a managed bond forbids is refused, and (within the bounds, with
    /// no identity changed earlier in the buffer) nothing else is.
    #[test]
    fn veto_matches_the_kernel(msgs in proptest::collection::vec(arb_msg(), 1..6), tail in proptest::collection::vec(any::<u8>(), 0..6), other in any::<bool>()) {
        let mut buf = encode(&msgs);
        buf.extend(tail);
        let sender = if other { Sender::Other } else { Sender::Managed };
        let got = run(&buf, sender);
        match model(&buf, sender) {
            Effect::Forbidden => prop_assert!(got.is_some(), "forbidden but allowed: {msgs:?}"),
            Effect::Clean if steps(&buf) <= MAX_STEPS => prop_assert!(got.is_none(), "clean but refused {got:?}: {msgs:?}"),
            _ => {}
        }
    }

    /// Random bytes: never a fault inside the buffer, never a panic.
    #[test]
    fn random_bytes(buf in proptest::collection::vec(any::<u8>(), 0..300), other in any::<bool>()) {
        let sender = if other { Sender::Other } else { Sender::Managed };
        let r = judge(&Slice(&buf), u32::try_from(buf.len()).unwrap(), sender, &world(), &mut Work::new(NS));
        prop_assert!(r.is_ok());
        if model(&buf, sender) == Effect::Forbidden {
            prop_assert!(r.unwrap().is_some());
        }
    }
}
