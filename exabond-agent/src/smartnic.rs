//! The `SmartNIC` (card id, port) of each bond member, for the legacy word: read once per ifindex and name
//! ([`crate::exanic::page_location`]: `ETHTOOL_GDRVINFO`, the `EXAIOCGIFINFO` ioctl, and a loud log for an
//! `ExaNIC` port that does not answer). The publisher's callers read the locations of a view's members here
//! before they take the publisher lock, so that no syscall and no log happens under it.

use std::collections::BTreeMap;

use crate::bond_view::BondView;

/// (card id, port) by member ifindex; `None` for a member that is not a `SmartNIC` port (the page then gives
/// it id 255 and its slot, see `page_state::legacy_location`).
pub type Locations = BTreeMap<u32, Option<(u8, u8)>>;

/// What was read for each member seen, by ifindex, with the name it was read under (a new name, e.g. a
/// rename or a reused ifindex, is read again).
#[derive(Default)]
pub struct SmartNicCache {
    by_ifindex: BTreeMap<u32, (String, Option<(u8, u8)>)>,
}

impl SmartNicCache {
    /// The locations of the members of `views`, reading the ones not seen yet under their current name.
    pub fn locations<'a>(&mut self, views: impl IntoIterator<Item = &'a BondView>) -> Locations {
        self.locations_with(views, crate::exanic::page_location)
    }

    fn locations_with<'a>(
        &mut self,
        views: impl IntoIterator<Item = &'a BondView>,
        read: impl Fn(&str) -> Option<(u8, u8)>,
    ) -> Locations {
        views
            .into_iter()
            .flat_map(|v| &v.slaves)
            .map(|s| {
                let e = self.by_ifindex.entry(s.ifindex).or_insert_with(|| (String::new(), None));
                if e.0 != s.name {
                    *e = (s.name.clone(), read(&s.name));
                }
                (s.ifindex, e.1)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use exabond_common::page::LinkState;
    use netlink_packet_route::link::BondMode;

    use super::*;
    use crate::bond_view::SlaveView;

    fn bond(slaves: &[(u32, &str)]) -> BondView {
        BondView {
            ifindex: 1,
            name: "bond0".into(),
            mode: BondMode::ActiveBackup,
            active_ifindex: 0,
            miimon_ms: 10,
            arp_interval_ms: 0,
            arp_targets: 0,
            up: true,
            slaves: slaves
                .iter()
                .map(|&(ifindex, name)| SlaveView {
                    ifindex,
                    name: name.into(),
                    mac: [0; 6],
                    link: LinkState::Up,
                    active: false,
                    link_failures: 0,
                    kind: String::new(),
                })
                .collect(),
        }
    }

    #[test]
    fn read_once_per_ifindex_and_name() {
        let reads = Cell::new(0);
        let read = |name: &str| {
            reads.set(reads.get() + 1);
            (name == "exa0p1").then_some((0, 1))
        };
        let mut c = SmartNicCache::default();
        let l = c.locations_with([&bond(&[(11, "exa0p1"), (12, "veth0")])], read);
        assert_eq!(l, Locations::from([(11, Some((0, 1))), (12, None)]));
        assert_eq!(reads.get(), 2);
        c.locations_with([&bond(&[(11, "exa0p1"), (12, "veth0")])], read);
        assert_eq!(reads.get(), 2, "cached");
        let l = c.locations_with([&bond(&[(11, "renamed"), (12, "veth0")])], read);
        assert_eq!((l[&11], reads.get()), (None, 3), "a new name is read again");
    }
}
