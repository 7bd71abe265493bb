//! How the page content follows the bond: pure transitions from the current [`PageData`] to the next, given
//! a full view of the bond (netlink, poll, manage) or a failover event (eBPF). No I/O, unit-tested.

use exabond_common::page::{
    legacy, name_buf, ChangeSource, PageData, SlaveRecord, SlaveRole, FLAG_ACTIVE, FLAG_SLAVES_TRUNCATED, IFNAMSIZ,
    MAX_SLAVES, NO_SLOT,
};

use crate::bond_view::{BondView, SlaveView};

/// Clock readings for one publication.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Now {
    /// `CLOCK_MONOTONIC` ns.
    pub mono_ns: u64,
    /// `CLOCK_REALTIME` ns.
    pub real_ns: u64,
}

impl Now {
    /// The current time.
    #[must_use]
    pub fn read() -> Self {
        Self { mono_ns: exabond_common::clock::monotonic_ns(), real_ns: exabond_common::clock::realtime_ns() }
    }
}

/// The `SmartNIC` id and port the legacy word carries for a member in slot `slot` of the page.
///
/// `smartnic` is the (id, port) of an ExaNIC/SmartNIC port when known; other members (lab drivers allowed
/// with `--member-driver`) get id [`legacy::NON_SMARTNIC_ID`] and their slot as port, so that every member
/// still has its own word and a failover always changes it.
#[must_use]
pub fn legacy_location(smartnic: Option<(u8, u8)>, slot: usize) -> (u8, u8) {
    smartnic.unwrap_or((legacy::NON_SMARTNIC_ID, u8::try_from(slot).unwrap_or(u8::MAX)))
}

fn record(s: &SlaveView, slot: usize, active_ifindex: u32, smartnic: Option<(u8, u8)>) -> SlaveRecord {
    let (id, port) = legacy_location(smartnic, slot);
    let mut mac = [0u8; 8];
    mac[..6].copy_from_slice(&s.mac);
    SlaveRecord {
        name: name_buf(&s.name),
        ifindex: s.ifindex,
        link: s.link as u32,
        role: if s.ifindex == active_ifindex { SlaveRole::Active } else { SlaveRole::Backup } as u32,
        link_failures: s.link_failures,
        mac,
        smartnic_id: id,
        port,
        _reserved: [0; 6],
    }
}

/// Point the page at `active_ifindex` (0 = none). When that differs from what the page showed, count a
/// change and stamp it with `source`, `now` and `kernel_event_ns`. The slave table must be current.
fn set_active(d: &mut PageData, active_ifindex: u32, source: ChangeSource, now: Now, kernel_event_ns: u64) {
    let was_active = d.flags & FLAG_ACTIVE != 0;
    let changed = was_active != (active_ifindex != 0) || (active_ifindex != 0 && d.active_ifindex != active_ifindex);
    let slot = d.slaves().iter().position(|s| s.ifindex == active_ifindex && active_ifindex != 0);
    for s in &mut d.slaves[..(d.slave_count as usize).min(MAX_SLAVES)] {
        s.role = if Some(s.ifindex) == Some(active_ifindex).filter(|&i| i != 0) {
            SlaveRole::Active as u32
        } else {
            SlaveRole::Backup as u32
        };
    }
    if active_ifindex == 0 {
        d.flags &= !FLAG_ACTIVE;
        d.active_ifindex = 0;
        d.active_slot = NO_SLOT;
        d.active_name = [0; IFNAMSIZ];
        d.active_mac = [0; 8];
        // The original cleared the flags and kept the last id/port.
        d.legacy_word &= !0xffff;
    } else {
        d.flags |= FLAG_ACTIVE;
        d.active_ifindex = active_ifindex;
        if let Some(i) = slot {
            let s = d.slaves[i];
            d.active_slot = u32::try_from(i).unwrap_or(NO_SLOT);
            d.active_name = s.name;
            d.active_mac = s.mac;
            d.legacy_word = legacy::encode(true, s.smartnic_id, s.port);
        } else {
            // Not (yet) in the table: the next full view fills the name in.
            d.active_slot = NO_SLOT;
            if changed {
                d.active_name = [0; IFNAMSIZ];
                d.active_mac = [0; 8];
            }
            let (id, port) = legacy_location(None, MAX_SLAVES);
            d.legacy_word = legacy::encode(true, id, port);
        }
    }
    if changed {
        d.failover_count += 1;
        d.last_change_mono_ns = now.mono_ns;
        d.last_change_real_ns = now.real_ns;
        d.kernel_event_ns = kernel_event_ns;
        d.last_change_source = source as u32;
    }
}

/// The page after a full view of the bond seen by `source`. `smartnic` gives the (id, port) of each
/// member that is a `SmartNIC` port.
#[must_use]
pub fn render_view(
    prev: &PageData,
    view: &BondView,
    source: ChangeSource,
    now: Now,
    smartnic: &dyn Fn(&SlaveView) -> Option<(u8, u8)>,
) -> PageData {
    let mut d = *prev;
    d.bond_ifindex = view.ifindex;
    d.bond_name = name_buf(&view.name);
    d.slaves = [SlaveRecord::EMPTY; MAX_SLAVES];
    for (i, s) in view.slaves.iter().take(MAX_SLAVES).enumerate() {
        d.slaves[i] = record(s, i, view.active_ifindex, smartnic(s));
    }
    d.slave_count = u32::try_from(view.slaves.len().min(MAX_SLAVES)).unwrap_or(0);
    if view.slaves.len() > MAX_SLAVES {
        d.flags |= FLAG_SLAVES_TRUNCATED;
    } else {
        d.flags &= !FLAG_SLAVES_TRUNCATED;
    }
    set_active(&mut d, view.active_ifindex, source, now, 0);
    // A full view of the same active slave may still refresh its name/MAC (e.g. after a rename).
    if let Some(i) = d.slaves().iter().position(|s| s.ifindex == view.active_ifindex && view.active_ifindex != 0) {
        let s = d.slaves[i];
        d.active_name = s.name;
        d.active_mac = s.mac;
        d.active_slot = u32::try_from(i).unwrap_or(NO_SLOT);
        d.legacy_word = legacy::encode(true, s.smartnic_id, s.port);
    }
    stamp_update(prev, d, source, now)
}

/// The page after the eBPF probe saw the kernel switch to `new_ifindex` (0 = none) at `kernel_event_ns`.
#[must_use]
pub fn render_failover(prev: &PageData, new_ifindex: u32, kernel_event_ns: u64, now: Now) -> PageData {
    let mut d = *prev;
    set_active(&mut d, new_ifindex, ChangeSource::Ebpf, now, kernel_event_ns);
    stamp_update(prev, d, ChangeSource::Ebpf, now)
}

/// Stamp `next` as an update by `source` if it differs from `prev` in anything but the heartbeat.
fn stamp_update(prev: &PageData, mut next: PageData, source: ChangeSource, now: Now) -> PageData {
    let same = PageData {
        heartbeat_mono_ns: prev.heartbeat_mono_ns,
        last_update_mono_ns: prev.last_update_mono_ns,
        last_update_source: prev.last_update_source,
        ..next
    } == *prev;
    if !same {
        next.last_update_mono_ns = now.mono_ns;
        next.last_update_source = source as u32;
    }
    next
}

/// The page with a fresh heartbeat.
#[must_use]
pub fn render_heartbeat(prev: &PageData, now: Now) -> PageData {
    let mut d = *prev;
    d.heartbeat_mono_ns = now.mono_ns;
    d
}

#[cfg(test)]
mod tests {
    use super::*;
    use exabond_common::page::LinkState;
    use netlink_packet_route::link::BondMode;

    fn view(active: u32) -> BondView {
        let s = |i: u32, n: &str| SlaveView {
            ifindex: i,
            name: n.into(),
            mac: [2, 0, 0, 0, 0, u8::try_from(i).unwrap()],
            link: LinkState::Up,
            active: i == active,
            link_failures: 0,
            kind: "veth".into(),
        };
        BondView {
            ifindex: 10,
            name: "bond0".into(),
            mode: BondMode::ActiveBackup,
            active_ifindex: active,
            miimon_ms: 10,
            arp_interval_ms: 0,
            arp_targets: 0,
            up: true,
            slaves: vec![s(11, "eth-a"), s(12, "eth-b")],
        }
    }

    const T: Now = Now { mono_ns: 1000, real_ns: 2000 };
    fn none(_: &SlaveView) -> Option<(u8, u8)> {
        None
    }

    #[test]
    fn manage_then_failovers() {
        let p0 = PageData::new("bond0", 10, 1);
        let p1 = render_view(&p0, &view(11), ChangeSource::Manage, T, &none);
        assert_eq!(p1.active_name(), Some("eth-a"));
        assert_eq!(p1.failover_count, 1);
        assert_eq!(p1.source(), ChangeSource::Manage);
        assert_eq!(p1.legacy_word, legacy::encode(true, 0xff, 0));
        assert!(p1.slaves()[0].is_active() && !p1.slaves()[1].is_active());

        // eBPF sees the switch first; the later netlink view of the same state changes nothing.
        let p2 = render_failover(&p1, 12, 900, Now { mono_ns: 1500, real_ns: 2500 });
        assert_eq!(p2.active_name(), Some("eth-b"));
        assert_eq!(p2.failover_count, 2);
        assert_eq!(p2.source(), ChangeSource::Ebpf);
        assert_eq!(p2.kernel_event_ns, 900);
        assert_eq!(p2.legacy_word, legacy::encode(true, 0xff, 1));
        assert!(p2.slaves()[1].is_active() && !p2.slaves()[0].is_active());
        let p3 = render_view(&p2, &view(12), ChangeSource::Netlink, Now { mono_ns: 1600, real_ns: 2600 }, &none);
        assert_eq!(p3, p2, "a view of the same state publishes nothing new");
        let mut down = view(12);
        down.slaves[0].link = LinkState::Down;
        let p3b = render_view(&p3, &down, ChangeSource::Poll, Now { mono_ns: 1700, real_ns: 2700 }, &none);
        assert_eq!(
            (p3b.update_source(), p3b.last_update_mono_ns),
            (ChangeSource::Poll, 1700),
            "a link change is an update"
        );
        assert_eq!((p3b.source(), p3b.failover_count), (ChangeSource::Ebpf, 2), "but not a failover");
        assert_eq!(p2.update_source(), ChangeSource::Ebpf);
        assert_eq!(p3.failover_count, 2);
        assert_eq!(p3.source(), ChangeSource::Ebpf, "credit stays with the first source");
        assert_eq!(p3.last_change_mono_ns, 1500);

        // All slaves down: ACTIVE cleared, id/port kept.
        let p4 = render_view(&p3, &view(0), ChangeSource::Poll, T, &none);
        assert_eq!(p4.active_name(), None);
        assert!(!legacy::is_active(p4.legacy_word));
        assert_eq!(legacy::port(p4.legacy_word), 1);
        assert_eq!(p4.failover_count, 3);
        assert_eq!(p4.source(), ChangeSource::Poll);
        assert!(p4.slaves().iter().all(|s| !s.is_active()));
    }

    #[test]
    fn smartnic_location_and_unknown_slave() {
        let p0 = PageData::new("bond0", 10, 1);
        let nic = |s: &SlaveView| (s.ifindex == 12).then_some((3u8, 1u8));
        let p1 = render_view(&p0, &view(12), ChangeSource::Manage, T, &nic);
        assert_eq!(p1.legacy_word, legacy::encode(true, 3, 1));
        let p2 = render_failover(&p1, 77, 5, T);
        assert_eq!(p2.active_ifindex, 77);
        assert_eq!(p2.active_name(), Some(""), "unknown until the next view");
        assert_ne!(p2.legacy_word, p1.legacy_word, "readers of the word still see a change");
        let same = render_failover(&p2, 77, 6, T);
        assert_eq!(same.failover_count, p2.failover_count);
    }

    #[test]
    fn heartbeat_only_touches_heartbeat() {
        let p0 = render_view(&PageData::new("bond0", 10, 1), &view(11), ChangeSource::Manage, T, &none);
        let p1 = render_heartbeat(&p0, Now { mono_ns: 5, real_ns: 6 });
        assert_eq!(p1.heartbeat_mono_ns, 5);
        assert_eq!(PageData { heartbeat_mono_ns: p0.heartbeat_mono_ns, ..p1 }, p0);
    }
}
