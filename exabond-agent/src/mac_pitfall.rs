//! The MAC pitfall: a bond keeps the MAC address it took from its first member (the bonding driver's
//! default, `fail_over_mac=none`) after that member has left. The former member gets its own address back,
//! so two devices now answer with the same MAC (the kernel prints `the permanent HWaddr of slave ... is
//! still in use by bond`); switches and peers see a duplicate and traffic goes astray.
//!
//! [`detect`] finds it in a link dump; [`on_dump`] runs it on every full rtnetlink dump the agent makes
//! anyway (`netlink::refresh`: after every burst of link notifications about a managed bond, which is
//! when a member leaves or an address changes, and the poll's periodic full re-read), logs a warning once
//! per (bond, donor), emits [`AgentEvent::MacPitfall`] and keeps the current list for the control socket's
//! `pitfalls` request (`exabond status` shows it). No dump of its own.

use std::collections::BTreeSet;

use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use serde::Serialize;

use crate::agent_events::AgentEvent;
use crate::bond_view::{controller, link_kind, name};
use crate::pi_mutex::PiMutex;
use crate::shared::{Shared, LEAF};

/// Kinds of device whose address is derived from another device (a VLAN or macvlan on the bond, the bridge
/// or team the bond is a port of, another bond): equal to the bond's MAC without being a donor. They are
/// compared only by a permanent address, which they do not have.
const DERIVED_KINDS: [&str; 12] =
    ["bond", "team", "bridge", "vlan", "macvlan", "macvtap", "ipvlan", "ipvtap", "vrf", "hsr", "macsec", "vxlan"];

/// One bond whose MAC belongs to a device that is not its member.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Pitfall {
    /// The bond.
    pub bond: String,
    /// Its ifindex.
    pub bond_ifindex: u32,
    /// The shared MAC, `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// The device that owns it.
    pub donor: String,
    /// Its ifindex.
    pub donor_ifindex: u32,
}

fn mac6(b: &[u8]) -> Option<[u8; 6]> {
    let m: [u8; 6] = b.get(..6)?.try_into().ok()?;
    (m != [0; 6]).then_some(m)
}

fn address(msg: &LinkMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| if let LinkAttribute::Address(b) = a { mac6(b) } else { None })
}

fn perm_address(msg: &LinkMessage) -> Option<[u8; 6]> {
    msg.attributes.iter().find_map(|a| if let LinkAttribute::PermAddress(b) = a { mac6(b) } else { None })
}

/// `aa:bb:cc:dd:ee:ff`.
#[must_use]
pub fn format_mac(m: [u8; 6]) -> String {
    m.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(":")
}

/// The address a device owns: its permanent address (hardware NICs), else, for devices that have none
/// (veth, dummy...) and do not derive it from another device, its current address.
fn owned_address(msg: &LinkMessage) -> Option<[u8; 6]> {
    if let Some(p) = perm_address(msg) {
        return Some(p);
    }
    let kind = link_kind(msg);
    if DERIVED_KINDS.contains(&kind.as_str()) {
        return None;
    }
    address(msg)
}

/// For each bond in `managed` (ifindexes), the devices other than its members whose own address is the
/// bond's MAC. Members (`IFLA_MASTER` = the bond) are never donors: sharing the bond's MAC is their normal
/// state. Sorted.
#[must_use]
pub fn detect(links: &[LinkMessage], managed: &[u32]) -> Vec<Pitfall> {
    let mut out = Vec::new();
    for &bond_ifindex in managed {
        let Some(bond) = links.iter().find(|m| m.header.index == bond_ifindex) else { continue };
        let Some(mac) = address(bond) else { continue };
        let bond_controller = controller(bond);
        for l in links {
            let i = l.header.index;
            if i == bond_ifindex || controller(l) == Some(bond_ifindex) || Some(i) == bond_controller {
                continue;
            }
            if owned_address(l) == Some(mac) {
                out.push(Pitfall {
                    bond: name(bond).unwrap_or_default(),
                    bond_ifindex,
                    mac: format_mac(mac),
                    donor: name(l).unwrap_or_default(),
                    donor_ifindex: i,
                });
            }
        }
    }
    out.sort();
    out
}

/// The current pitfalls, shared between [`on_dump`] and the control socket (a leaf lock, see `shared.rs`).
pub struct Tracker {
    current: PiMutex<Vec<Pitfall>>,
}

impl Default for Tracker {
    fn default() -> Self {
        Self { current: PiMutex::with_rank(Vec::new(), LEAF) }
    }
}

impl Tracker {
    /// Replace the current list with `found`; returns (new ones, resolved ones).
    pub fn update(&self, found: Vec<Pitfall>) -> (Vec<Pitfall>, Vec<Pitfall>) {
        let mut cur = self.current.lock();
        let old: BTreeSet<Pitfall> = cur.iter().cloned().collect();
        let new: BTreeSet<Pitfall> = found.iter().cloned().collect();
        let added = new.difference(&old).cloned().collect();
        let resolved = old.difference(&new).cloned().collect();
        *cur = found;
        (added, resolved)
    }

    /// The current list.
    #[must_use]
    pub fn current(&self) -> Vec<Pitfall> {
        self.current.lock().clone()
    }

    /// The current list as a JSON array (the `pitfalls` control request).
    #[must_use]
    pub fn json(&self) -> String {
        serde_json::to_string(&self.current()).unwrap_or_else(|_| "[]".into())
    }
}

/// Look at `links` (a full dump): detect, log and emit what is new and what was resolved.
pub fn on_dump(shared: &Shared, links: &[LinkMessage]) {
    let managed: Vec<u32> = shared.publisher().managed().collect();
    let (added, resolved) = shared.pitfalls.update(detect(links, &managed));
    for p in resolved {
        tracing::info!(bond = %p.bond, donor = %p.donor, mac = %p.mac, "MAC pitfall resolved");
    }
    for p in added {
        tracing::warn!(
            bond = %p.bond,
            donor = %p.donor,
            mac = %p.mac,
            "MAC PITFALL: bond {} still uses MAC {}, the own address of {}, which is not (or no longer) one of \
             its members: two devices share one MAC. Give the bond another address (ip link set {} address \
             ...) or change {}'s, or set fail_over_mac before enslaving",
            p.bond,
            p.mac,
            p.donor,
            p.bond,
            p.donor
        );
        shared.emit(AgentEvent::MacPitfall { bond: p.bond, mac: p.mac, donor: p.donor });
    }
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{InfoKind, LinkInfo};

    use super::*;

    const BOND_MAC: [u8; 6] = [2, 0, 0, 0, 0, 0xa0];

    fn link(index: u32, ifname: &str, kind: Option<InfoKind>, attrs: Vec<LinkAttribute>) -> LinkMessage {
        let mut m = LinkMessage::default();
        m.header.index = index;
        m.attributes.push(LinkAttribute::IfName(ifname.into()));
        if let Some(k) = kind {
            m.attributes.push(LinkAttribute::LinkInfo(vec![LinkInfo::Kind(k)]));
        }
        m.attributes.extend(attrs);
        m
    }

    fn addr(m: [u8; 6]) -> LinkAttribute {
        LinkAttribute::Address(m.to_vec())
    }

    fn perm(m: [u8; 6]) -> LinkAttribute {
        LinkAttribute::PermAddress(m.to_vec())
    }

    /// bond0 (10) with member eth1 (12); eth0 (11) has left it and got its own address back.
    fn lab() -> Vec<LinkMessage> {
        vec![
            link(1, "lo", None, vec![addr([0; 6])]),
            link(10, "bond0", Some(InfoKind::Bond), vec![addr(BOND_MAC)]),
            link(11, "eth0", None, vec![addr(BOND_MAC), perm(BOND_MAC)]),
            link(12, "eth1", None, vec![addr(BOND_MAC), perm([2, 0, 0, 0, 0, 0xa1]), LinkAttribute::Controller(10)]),
        ]
    }

    #[test]
    fn former_member_with_the_bonds_mac_is_found() {
        let p = detect(&lab(), &[10]);
        assert_eq!(
            p,
            [Pitfall {
                bond: "bond0".into(),
                bond_ifindex: 10,
                mac: "02:00:00:00:00:a0".into(),
                donor: "eth0".into(),
                donor_ifindex: 11
            }]
        );
        assert!(detect(&lab(), &[]).is_empty(), "only managed bonds");
        assert!(detect(&lab(), &[99]).is_empty(), "absent bond");
    }

    #[test]
    fn members_sharing_the_mac_are_normal() {
        let mut links = lab();
        links[2].attributes.push(LinkAttribute::Controller(10));
        assert!(detect(&links, &[10]).is_empty());
    }

    #[test]
    fn the_permanent_address_decides_when_there_is_one() {
        let mut links = lab();
        // eth0 currently has another address, but its permanent one is the bond's: still the donor.
        links[2] = link(11, "eth0", None, vec![addr([2, 0, 0, 0, 0, 0x55]), perm(BOND_MAC)]);
        assert_eq!(detect(&links, &[10]).len(), 1);
        // eth0 was given the bond's MAC by hand but owns another one: not a donor.
        links[2] = link(11, "eth0", None, vec![addr(BOND_MAC), perm([2, 0, 0, 0, 0, 0x55])]);
        assert!(detect(&links, &[10]).is_empty());
    }

    #[test]
    fn devices_without_permanent_address_compare_their_address() {
        // veth/dummy: no IFLA_PERM_ADDRESS.
        let mut links = lab();
        links[2] = link(11, "v0", Some(InfoKind::Veth), vec![addr(BOND_MAC)]);
        assert_eq!(detect(&links, &[10])[0].donor, "v0");
    }

    #[test]
    fn derived_devices_are_not_donors() {
        let mut links = lab();
        links.remove(2);
        links.push(link(20, "bond0.10", Some(InfoKind::Vlan), vec![addr(BOND_MAC), LinkAttribute::Link(10)]));
        links.push(link(21, "mv0", Some(InfoKind::MacVlan), vec![addr(BOND_MAC)]));
        links.push(link(22, "br0", Some(InfoKind::Bridge), vec![addr(BOND_MAC)]));
        links[1].attributes.push(LinkAttribute::Controller(22));
        assert!(detect(&links, &[10]).is_empty(), "{:?}", detect(&links, &[10]));
    }

    #[test]
    fn bond_without_address_is_skipped() {
        let links = vec![link(10, "bond0", Some(InfoKind::Bond), vec![]), link(11, "d", None, vec![addr([0; 6])])];
        assert!(detect(&links, &[10]).is_empty());
    }

    #[test]
    fn tracker_reports_once() {
        let t = Tracker::default();
        let p = detect(&lab(), &[10]);
        let (added, resolved) = t.update(p.clone());
        assert_eq!((added.len(), resolved.len()), (1, 0));
        let (added, resolved) = t.update(p.clone());
        assert!(added.is_empty() && resolved.is_empty(), "not again");
        assert!(t.json().contains("\"donor\":\"eth0\""), "{}", t.json());
        let (added, resolved) = t.update(Vec::new());
        assert_eq!((added.len(), resolved.len()), (0, 1));
        assert_eq!(t.json(), "[]");
        assert_eq!(t.update(p).0.len(), 1, "back again: reported again");
    }
}
