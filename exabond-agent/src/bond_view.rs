//! The kernel's view of a bond and its members, decoded from rtnetlink link messages (pure, no I/O).

use netlink_packet_route::link::{
    BondMode, BondPortState, InfoBond, InfoBondPort, InfoData, InfoKind, InfoPortData, LinkAttribute, LinkFlags,
    LinkInfo, LinkMessage, MiiStatus,
};

use exabond_common::page::LinkState;

/// One member of a bond.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlaveView {
    /// ifindex.
    pub ifindex: u32,
    /// Interface name.
    pub name: String,
    /// Permanent MAC (the bonding driver's `perm_hwaddr`), else the current address.
    pub mac: [u8; 6],
    /// MII link state as the bonding driver sees it.
    pub link: LinkState,
    /// The bonding driver marks this slave active.
    pub active: bool,
    /// The bonding driver's link failure count.
    pub link_failures: u32,
    /// rtnetlink link kind (`veth`, `vlan`, `bond`, ...; empty for plain hardware NICs).
    pub kind: String,
}

/// A bond master and its members at one moment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BondView {
    /// ifindex of the bond.
    pub ifindex: u32,
    /// Name of the bond.
    pub name: String,
    /// Bonding mode.
    pub mode: BondMode,
    /// ifindex of the active slave (`IFLA_BOND_ACTIVE_SLAVE`), 0 if none.
    pub active_ifindex: u32,
    /// MII monitor interval in ms (0 = off).
    pub miimon_ms: u32,
    /// ARP monitor interval in ms (0 = off).
    pub arp_interval_ms: u32,
    /// Number of ARP targets.
    pub arp_targets: usize,
    /// Administratively up.
    pub up: bool,
    /// Members ordered by ifindex.
    pub slaves: Vec<SlaveView>,
}

/// Default poll period when neither miimon nor a usable ARP monitor is set (the original's rule).
pub const DEFAULT_POLL_MS: u32 = 200;

impl BondView {
    /// The poll period for this bond: MIN(miimon, `arp_interval`) where a zero value, or an ARP interval
    /// without targets, counts as 200 ms.
    #[must_use]
    pub fn poll_interval_ms(&self) -> u32 {
        let mii = if self.miimon_ms == 0 { DEFAULT_POLL_MS } else { self.miimon_ms };
        let arp =
            if self.arp_interval_ms == 0 || self.arp_targets == 0 { DEFAULT_POLL_MS } else { self.arp_interval_ms };
        mii.min(arp)
    }

    /// Whether neither link monitor is usable (the bonding driver may then miss link-down events).
    #[must_use]
    pub fn has_no_monitor(&self) -> bool {
        self.miimon_ms == 0 && (self.arp_interval_ms == 0 || self.arp_targets == 0)
    }

    /// The member with this ifindex.
    #[must_use]
    pub fn slave(&self, ifindex: u32) -> Option<&SlaveView> {
        self.slaves.iter().find(|s| s.ifindex == ifindex)
    }

    /// Build the view of bond `ifindex` from a dump of all links; `None` if it is not there or not a bond.
    #[must_use]
    pub fn from_links(ifindex: u32, links: &[LinkMessage]) -> Option<Self> {
        let msg = links.iter().find(|m| m.header.index == ifindex)?;
        let mut view = Self::from_bond_message(msg)?;
        view.slaves = links.iter().filter(|m| controller(m) == Some(ifindex)).map(slave_from_message).collect();
        view.slaves.sort_by_key(|s| s.ifindex);
        Some(view)
    }

    /// Decode the bond part of one message (no slaves); `None` if the link is not a bond.
    #[must_use]
    pub fn from_bond_message(msg: &LinkMessage) -> Option<Self> {
        let infos = link_infos(msg);
        if !infos.iter().any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bond))) {
            return None;
        }
        let mut view = Self {
            ifindex: msg.header.index,
            name: name(msg).unwrap_or_default(),
            mode: BondMode::BalanceRr,
            active_ifindex: 0,
            miimon_ms: 0,
            arp_interval_ms: 0,
            arp_targets: 0,
            up: msg.header.flags.contains(LinkFlags::Up),
            slaves: Vec::new(),
        };
        for info in infos {
            if let LinkInfo::Data(InfoData::Bond(opts)) = info {
                for o in opts {
                    match o {
                        InfoBond::Mode(m) => view.mode = *m,
                        InfoBond::ActivePort(i) => view.active_ifindex = *i,
                        InfoBond::MiiMon(v) => view.miimon_ms = *v,
                        InfoBond::ArpInterval(v) => view.arp_interval_ms = *v,
                        InfoBond::ArpIpTarget(t) => view.arp_targets = t.len(),
                        _ => {}
                    }
                }
            }
        }
        Some(view)
    }
}

fn link_infos(msg: &LinkMessage) -> &[LinkInfo] {
    msg.attributes
        .iter()
        .find_map(|a| if let LinkAttribute::LinkInfo(i) = a { Some(i.as_slice()) } else { None })
        .unwrap_or(&[])
}

/// The interface name of a link message.
#[must_use]
pub fn name(msg: &LinkMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| if let LinkAttribute::IfName(n) = a { Some(n.clone()) } else { None })
}

/// The alternative names (`IFLA_PROP_LIST` → `IFLA_ALT_IFNAME`) of a link message.
#[must_use]
pub fn altnames(msg: &LinkMessage) -> Vec<String> {
    use netlink_packet_route::link::Prop;
    msg.attributes
        .iter()
        .filter_map(|a| if let LinkAttribute::PropList(p) = a { Some(p) } else { None })
        .flatten()
        .filter_map(|p| if let Prop::AltIfName(n) = p { Some(n.clone()) } else { None })
        .collect()
}

/// `IFLA_MASTER` of a link message.
#[must_use]
pub fn controller(msg: &LinkMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| if let LinkAttribute::Controller(c) = a { Some(*c) } else { None })
}

fn mac6(bytes: &[u8]) -> Option<[u8; 6]> {
    bytes.get(..6).and_then(|b| b.try_into().ok())
}

fn slave_from_message(msg: &LinkMessage) -> SlaveView {
    let mut s = SlaveView {
        ifindex: msg.header.index,
        name: name(msg).unwrap_or_default(),
        mac: [0; 6],
        link: if msg.header.flags.contains(LinkFlags::LowerUp) { LinkState::Up } else { LinkState::Down },
        active: false,
        link_failures: 0,
        kind: String::new(),
    };
    let mut perm = None;
    for a in &msg.attributes {
        if let LinkAttribute::Address(b) = a {
            s.mac = mac6(b).unwrap_or_default();
        }
    }
    for info in link_infos(msg) {
        match info {
            LinkInfo::Kind(k) => s.kind = kind_name(k),
            LinkInfo::PortData(InfoPortData::BondPort(opts)) => {
                for o in opts {
                    match o {
                        InfoBondPort::MiiStatus(m) => {
                            s.link = if *m == MiiStatus::Up { LinkState::Up } else { LinkState::Down };
                        }
                        InfoBondPort::BondPortState(st) => s.active = *st == BondPortState::Active,
                        InfoBondPort::LinkFailureCount(n) => s.link_failures = *n,
                        InfoBondPort::PermHwaddr(b) => perm = mac6(b),
                        _ => {}
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(p) = perm {
        s.mac = p;
    }
    s
}

/// The rtnetlink link kind of a message (`bond`, `vlan`, `veth`, ...; empty for hardware NICs).
#[must_use]
pub fn link_kind(msg: &LinkMessage) -> String {
    link_infos(msg)
        .iter()
        .find_map(|i| if let LinkInfo::Kind(k) = i { Some(kind_name(k)) } else { None })
        .unwrap_or_default()
}

fn kind_name(k: &InfoKind) -> String {
    match k {
        InfoKind::Other(s) => s.clone(),
        other => format!("{other:?}").to_lowercase(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(index: u32, name: &str, attrs: Vec<LinkAttribute>, flags: LinkFlags) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.header.flags = flags;
        m.attributes.push(LinkAttribute::IfName(name.into()));
        m.attributes.extend(attrs);
        m
    }

    fn bond(index: u32, opts: Vec<InfoBond>) -> LinkMessage {
        link(
            index,
            "bond0",
            vec![LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bond), LinkInfo::Data(InfoData::Bond(opts))])],
            LinkFlags::Up,
        )
    }

    fn slave(index: u32, name: &str, master: u32, state: BondPortState, mii: MiiStatus) -> LinkMessage {
        link(
            index,
            name,
            vec![
                LinkAttribute::Controller(master),
                LinkAttribute::Address(vec![2, 0, 0, 0, 0, u8::try_from(index).unwrap()]),
                LinkAttribute::LinkInfo(vec![
                    LinkInfo::Kind(InfoKind::Veth),
                    LinkInfo::PortKind(netlink_packet_route::link::InfoPortKind::Bond),
                    LinkInfo::PortData(InfoPortData::BondPort(vec![
                        InfoBondPort::BondPortState(state),
                        InfoBondPort::MiiStatus(mii),
                        InfoBondPort::LinkFailureCount(3),
                        InfoBondPort::PermHwaddr(vec![2, 0, 0, 0, 1, u8::try_from(index).unwrap()]),
                    ])),
                ]),
            ],
            LinkFlags::Up | LinkFlags::LowerUp,
        )
    }

    #[test]
    fn decodes_bond_and_members() {
        let links = vec![
            slave(12, "eth-b", 10, BondPortState::Backup, MiiStatus::Down),
            bond(10, vec![InfoBond::Mode(BondMode::ActiveBackup), InfoBond::ActivePort(11), InfoBond::MiiMon(10)]),
            slave(11, "eth-a", 10, BondPortState::Active, MiiStatus::Up),
            slave(20, "other", 99, BondPortState::Active, MiiStatus::Up),
            link(13, "lonely", vec![], LinkFlags::Up),
        ];
        let v = BondView::from_links(10, &links).unwrap();
        assert_eq!(v.name, "bond0");
        assert_eq!(v.mode, BondMode::ActiveBackup);
        assert_eq!(v.active_ifindex, 11);
        assert_eq!(v.slaves.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(), ["eth-a", "eth-b"]);
        let a = v.slave(11).unwrap();
        assert!(a.active);
        assert_eq!(a.link, LinkState::Up);
        assert_eq!(a.mac, [2, 0, 0, 0, 1, 11], "the permanent address wins");
        assert_eq!(a.link_failures, 3);
        assert_eq!(a.kind, "veth");
        assert_eq!(v.slave(12).unwrap().link, LinkState::Down, "MII status wins over carrier");
        assert_eq!(v.poll_interval_ms(), 10);
        assert!(BondView::from_links(13, &links).is_none(), "not a bond");
        assert!(BondView::from_links(99, &links).is_none(), "absent");
    }

    #[test]
    fn poll_interval_rule() {
        let mut v = BondView::from_bond_message(&bond(1, vec![])).unwrap();
        assert_eq!(v.poll_interval_ms(), 200);
        assert!(v.has_no_monitor());
        v.arp_interval_ms = 50;
        assert_eq!(v.poll_interval_ms(), 200, "arp_interval without targets counts as 200 ms");
        v.arp_targets = 1;
        assert_eq!(v.poll_interval_ms(), 50);
        v.miimon_ms = 20;
        assert_eq!(v.poll_interval_ms(), 20);
        assert!(!v.has_no_monitor());
    }
}
