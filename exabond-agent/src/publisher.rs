//! The single writer of every managed bond's page: applies views (netlink, poll, manage) and failover
//! events (eBPF) to each bond's page, in one place, under one lock (`Shared::publisher`).
//!
//! That lock is taken by the real-time eBPF event waiters, so the publisher does nothing but keep the pages:
//! no logging, no events, no sysfs or ioctl reads. Its methods return [`Notes`] for the caller to report
//! once it has dropped the guard (`Shared::report`); the `SmartNIC` locations of a view's members come in
//! with the view ([`Locations`]); the forbidden set is a read-only copy owned by the enforcement side
//! ([`Publisher::set_forbidden_set`]).

use std::collections::BTreeMap;
use std::path::PathBuf;

use exabond_common::event::FailoverEvent;
use exabond_common::page::{ChangeSource, PageData};
use exabond_common::policy_maps::PageInode;
use exabond_common::writer::{Opened, PageWriter, WriteError};

use crate::agent_events::AgentEvent;
use crate::bond_view::{BondView, SlaveView};
use crate::enforcement::ForbiddenSet;
use crate::page_state::{render_failover, render_heartbeat, render_view, Now};
use crate::report::{EbpfDetail, Failover, Note, Notes, PageProblem};
use crate::smartnic::Locations;

/// A page's legacy word and active slave (0: none), as the poll compares them with the fast word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PageWord {
    /// The bond.
    pub bond_ifindex: u32,
    /// The page's legacy word.
    pub word: u32,
    /// The page's active slave, 0 if none.
    pub active: u32,
}

/// How long after an eBPF-seen failover a contradicting view is taken as older than the event (the probe
/// fires at the entry of `bond_change_active_slave`, before the kernel has finished the switch).
pub const SETTLE_NS: u64 = 100_000_000;

/// One managed bond.
pub struct Managed {
    writer: PageWriter,
    view: BondView,
    ebpf_gen: u64,
    /// `CLOCK_MONOTONIC` ns when the dump behind the last applied view started.
    view_dump_ns: u64,
}

/// What became of a view handed to [`Publisher::on_view`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ViewOutcome {
    /// Published (possibly with no change of the active slave).
    Applied,
    /// The view may predate an eBPF event already published: dump again.
    Stale,
    /// The bond is not managed.
    NotManaged,
}

/// What became of an event handed to [`Publisher::on_failover`].
#[derive(Clone, Debug, PartialEq)]
pub enum FailoverOutcome {
    /// The page changed: the failover to report.
    Published(Note),
    /// The page already showed it (at most the kernel's time of the change was added).
    AlreadyOnPage,
    /// Older than the last view applied: dropped (the note says so at debug level).
    Older(Note),
    /// The bond is not managed.
    NotManaged,
}

impl FailoverOutcome {
    /// The failover published, if the page changed.
    #[cfg(test)]
    #[must_use]
    pub fn published(&self) -> Option<&Note> {
        match self {
            Self::Published(n) => Some(n),
            _ => None,
        }
    }

    /// What to report.
    #[must_use]
    pub fn into_notes(self) -> Notes {
        match self {
            Self::Published(n) | Self::Older(n) => vec![n],
            Self::AlreadyOnPage | Self::NotManaged => Vec::new(),
        }
    }
}

/// What [`Publisher::verify_pages`] found and did.
#[derive(Debug, Default)]
pub struct Verified {
    /// A page changed inode (re-created): the page guard must follow.
    pub moved: bool,
    /// Repairs and problems to report.
    pub notes: Notes,
}

/// All managed bonds and their pages.
pub struct Publisher {
    page_dir: PathBuf,
    pid: u32,
    bonds: BTreeMap<u32, Managed>,
    /// Devices the member policy refuses: never published as the active slave. A read-only copy of the
    /// enforcement side's set, replaced only by [`Publisher::set_forbidden_set`].
    forbidden: ForbiddenSet,
    /// Test hook: crash in the middle of the next failover publication.
    crash_on_failover: bool,
}

impl Publisher {
    /// A publisher writing pages into `page_dir`.
    #[must_use]
    pub fn new(page_dir: PathBuf) -> Self {
        Self {
            page_dir,
            pid: std::process::id(),
            bonds: BTreeMap::new(),
            forbidden: ForbiddenSet::default(),
            crash_on_failover: false,
        }
    }

    /// Test hook (`exabond agent --test-crash-mid-publish`): the next publication of a failover, on any
    /// bond, stops half-way and aborts the agent (see `PageWriter::crash_on_next_failover`).
    pub fn crash_on_next_failover(&mut self) {
        self.crash_on_failover = true;
        for m in self.bonds.values_mut() {
            m.writer.crash_on_next_failover();
        }
    }

    /// The inode of every managed bond's page, with the bond's ifindex (what the page guard protects).
    #[must_use]
    pub fn page_inodes(&self) -> BTreeMap<PageInode, u32> {
        self.bonds.iter().map(|(&i, m)| (m.writer.inode(), i)).collect()
    }

    /// The page directory.
    #[must_use]
    pub fn page_dir(&self) -> &std::path::Path {
        &self.page_dir
    }

    /// Check every page against what this agent wrote: a page file removed or replaced by another
    /// process is re-created (readers of the old one see it retired), changed permissions are put back,
    /// content written by someone else is republished. Each repair is in the notes (to be logged loudly
    /// and reported to observers), after the checks that failed.
    #[must_use = "report the notes once the publisher lock is released"]
    pub fn verify_pages(&mut self) -> Verified {
        let mut moved = false;
        let mut problems = Vec::new();
        let mut repairs = Vec::new();
        for m in self.bonds.values_mut() {
            let name = m.view.name.clone();
            let problem = |problem| Note::PageProblem { bond: name.clone(), problem };
            let repaired = |action| Note::Repaired { bond: name.clone(), action };
            match m.writer.in_place() {
                Ok(true) => {}
                Ok(false) => match m.writer.recreate(&self.page_dir, &name) {
                    Ok(()) => {
                        moved = true;
                        repairs.push(repaired("page file removed or replaced by another process: re-created (readers of the old file see it retired and must re-open)"));
                    }
                    Err(e) => problems.push(problem(PageProblem::NotRecreated(e.to_string()))),
                },
                Err(e) => problems.push(problem(PageProblem::Stat {
                    page: m.writer.path().display().to_string(),
                    error: e.to_string(),
                })),
            }
            match m.writer.restore_mode() {
                Ok(true) => repairs.push(repaired("page permissions changed by another process: set back to 0444")),
                Ok(false) => {}
                Err(e) => problems.push(problem(PageProblem::Mode(e.to_string()))),
            }
            match m.writer.restore_size() {
                Ok(true) => repairs.push(repaired("page truncated or resized by another process: size restored")),
                Ok(false) => {}
                Err(e) => problems.push(problem(PageProblem::Size(e.to_string()))),
            }
            if !m.writer.intact() {
                m.writer.republish();
                repairs.push(repaired("page content written by another process: republished"));
            }
        }
        problems.append(&mut repairs);
        Verified { moved, notes: problems }
    }

    /// Current page of every managed bond (for metrics).
    #[must_use]
    pub fn pages(&self) -> Vec<PageData> {
        self.bonds.values().map(|m| *m.writer.current()).collect()
    }

    /// What the fast word of every managed bond should be made of (`fast_words.rs`): its page's word and
    /// active slave, and the word each member shows when active (refused and not yet judged members
    /// left out, as the page never shows them active).
    #[must_use]
    pub fn fast_desired(&self) -> Vec<crate::fast_words::Desired> {
        self.bonds
            .iter()
            .map(|(&ifindex, m)| {
                let d = m.writer.current();
                let members = m
                    .view
                    .slaves
                    .iter()
                    .filter(|s| !self.forbidden.contains(s.ifindex))
                    .map(|s| {
                        let (id, port) = d.slaves().iter().find(|r| r.ifindex == s.ifindex).map_or_else(
                            || crate::page_state::legacy_location(None, exabond_common::page::MAX_SLAVES),
                            |r| (r.smartnic_id, r.port),
                        );
                        (s.ifindex, exabond_common::page::legacy::encode(true, id, port))
                    })
                    .collect();
                crate::fast_words::Desired {
                    bond_ifindex: ifindex,
                    name: m.view.name.clone(),
                    page_word: d.legacy_word,
                    page_active: if d.flags & exabond_common::page::FLAG_ACTIVE != 0 { d.active_ifindex } else { 0 },
                    members,
                }
            })
            .collect()
    }

    /// Bond ifindex, bond name and active slave name of every page (for the poll's cheap check).
    #[must_use]
    pub fn actives(&self) -> Vec<crate::active_check::PageActive> {
        self.bonds
            .iter()
            .map(|(&i, m)| {
                let d = m.writer.current();
                (i, d.bond_name, d.active_name)
            })
            .collect()
    }

    /// Replace the set of devices the member policy refuses (never published as the active slave). Called
    /// only by `Shared::change_verdicts`, with the set the enforcement side computed: the publisher never
    /// changes it itself.
    pub fn set_forbidden_set(&mut self, forbidden: ForbiddenSet) {
        self.forbidden = forbidden;
    }

    fn publishable(&self, ifindex: u32) -> u32 {
        if self.forbidden.contains(ifindex) {
            0
        } else {
            ifindex
        }
    }

    /// Whether a bond is managed.
    #[must_use]
    pub fn is_managed(&self, ifindex: u32) -> bool {
        self.bonds.contains_key(&ifindex)
    }

    /// ifindex of the managed bond called `name`.
    #[must_use]
    pub fn ifindex_of(&self, name: &str) -> Option<u32> {
        self.bonds.iter().find(|(_, m)| m.view.name == name).map(|(i, _)| *i)
    }

    /// Names of the managed bonds.
    #[must_use]
    pub fn names(&self) -> Vec<String> {
        self.bonds.values().map(|m| m.view.name.clone()).collect()
    }

    /// Stop managing a bond: retire its page (readers still mapping it see RETIRED) and remove the file.
    /// `None` if it was not managed.
    #[must_use = "report the notes once the publisher lock is released"]
    pub fn unmanage(&mut self, ifindex: u32) -> Option<Notes> {
        let m = self.bonds.remove(&ifindex)?;
        let bond = m.view.name.clone();
        let error = m.writer.retire_and_remove().err().map(|e| e.to_string());
        Some(vec![Note::Unmanaged { bond, error }])
    }

    /// Place a bond under management: create its page from `view` (`locs`: its members' `SmartNIC`
    /// locations). Returns the first page and what to report.
    ///
    /// # Errors
    /// [`WriteError`] if the page cannot be created.
    pub fn manage(&mut self, view: &BondView, locs: &Locations) -> Result<(PageData, Notes), WriteError> {
        let now = Now::read();
        let blank = PageData::new(&view.name, view.ifindex, self.pid);
        let mut shown = view.clone();
        shown.active_ifindex = self.publishable(view.active_ifindex);
        let loc = |s: &SlaveView| locs.get(&s.ifindex).copied().flatten();
        let first = render_heartbeat(&render_view(&blank, &shown, ChangeSource::Manage, now, &loc), now);
        let (mut writer, opened) = PageWriter::open(&self.page_dir, &view.name, &first)?;
        let page = writer.path().display().to_string();
        if let Opened::Adopted { failover_count, .. } = opened {
            if failover_count > first.failover_count {
                // The count readers know never goes back.
                let mut d = first;
                d.failover_count = failover_count;
                writer.publish(&d);
            }
        }
        if self.crash_on_failover {
            writer.crash_on_next_failover();
        }
        let notes = vec![
            Note::Opened { bond: view.name.clone(), page: page.clone(), opened },
            Note::Managed {
                bond: view.name.clone(),
                page,
                active: first.active_name().map(str::to_owned),
                no_monitor: view.has_no_monitor(),
            },
        ];
        let m = self.bonds.entry(view.ifindex).or_insert(Managed {
            writer,
            view: view.clone(),
            ebpf_gen: 0,
            view_dump_ns: now.mono_ns,
        });
        Ok((*m.writer.current(), notes))
    }

    /// ifindexes of the managed bonds.
    pub fn managed(&self) -> impl Iterator<Item = u32> + '_ {
        self.bonds.keys().copied()
    }

    /// The eBPF generation of a bond (changes whenever an eBPF event is applied).
    #[must_use]
    pub fn ebpf_gen(&self, ifindex: u32) -> u64 {
        self.bonds.get(&ifindex).map_or(0, |m| m.ebpf_gen)
    }

    /// The shortest poll period over the managed bonds (200 ms when none).
    #[must_use]
    pub fn poll_interval_ms(&self) -> u32 {
        self.bonds.values().map(|m| m.view.poll_interval_ms()).min().unwrap_or(crate::bond_view::DEFAULT_POLL_MS)
    }

    /// Whether a link message about `index` (with `IFLA_MASTER` `controller`) concerns a managed bond.
    #[must_use]
    pub fn is_relevant(&self, index: u32, controller: Option<u32>) -> bool {
        self.bonds.contains_key(&index)
            || controller.is_some_and(|c| self.bonds.contains_key(&c))
            || self.bonds.values().any(|m| m.view.slave(index).is_some())
    }

    /// Apply a failover seen by the eBPF probe.
    #[must_use = "report the notes once the publisher lock is released"]
    pub fn on_failover(&mut self, ev: &FailoverEvent) -> FailoverOutcome {
        let new_ifindex = self.publishable(ev.new_ifindex);
        let Some(m) = self.bonds.get_mut(&ev.bond_ifindex) else {
            return FailoverOutcome::NotManaged;
        };
        let now = Now::read();
        let before = *m.writer.current();
        let next = render_failover(&before, new_ifindex, ev.header.ktime_ns, now);
        m.ebpf_gen += 1;
        if next == before {
            // Already on the page (a netlink/poll view won the race): keep its credit, but record the
            // kernel's time of the change so its event-to-page latency is known.
            if before.kernel_event_ns == 0
                && before.failover_count > 0
                && before.last_change_mono_ns >= ev.header.ktime_ns
            {
                let mut annotated = before;
                annotated.kernel_event_ns = ev.header.ktime_ns;
                m.writer.publish(&annotated);
            }
            return FailoverOutcome::AlreadyOnPage;
        }
        if ev.header.ktime_ns < m.view_dump_ns {
            // A netlink/poll view read after this event is already on the page: applying the event now
            // would briefly bring back an older state.
            return FailoverOutcome::Older(Note::OlderEbpfEvent { bond: m.view.name.clone() });
        }
        m.writer.publish(&next);
        FailoverOutcome::Published(Note::Failover(Failover {
            bond: m.view.name.clone(),
            from: before.active_name().map(str::to_owned),
            to: next.active_name().map(str::to_owned),
            source: ChangeSource::Ebpf,
            count: next.failover_count,
            ebpf: Some(EbpfDetail {
                new_ifindex: ev.new_ifindex,
                latency_ns: now.mono_ns.saturating_sub(ev.header.ktime_ns),
            }),
        }))
    }

    /// Apply a full view of a bond seen by `source` (`locs`: its members' `SmartNIC` locations);
    /// `gen_at_dump` is [`Self::ebpf_gen`] read before the dump that produced the view was requested, at
    /// `CLOCK_MONOTONIC` `dump_ns`.
    #[must_use = "report the notes once the publisher lock is released"]
    pub fn on_view(
        &mut self,
        view: &BondView,
        locs: &Locations,
        source: ChangeSource,
        gen_at_dump: u64,
        dump_ns: u64,
    ) -> (ViewOutcome, Notes) {
        let mut notes = Notes::new();
        let shown;
        let view = if self.forbidden.contains(view.active_ifindex) {
            let mut v = view.clone();
            v.active_ifindex = 0;
            shown = v;
            &shown
        } else {
            view
        };
        if self.bonds.get(&view.ifindex).is_some_and(|m| m.view.name != view.name) {
            notes.extend(self.rename(view));
        }
        let loc = |s: &SlaveView| locs.get(&s.ifindex).copied().flatten();
        let Some(m) = self.bonds.get_mut(&view.ifindex) else {
            return (ViewOutcome::NotManaged, notes);
        };
        let now = Now::read();
        let before = *m.writer.current();
        if m.ebpf_gen != gen_at_dump {
            return (ViewOutcome::Stale, notes);
        }
        let contradicts = view.active_ifindex != before.active_ifindex;
        if contradicts
            && before.source() == ChangeSource::Ebpf
            && now.mono_ns.saturating_sub(before.last_change_mono_ns) < SETTLE_NS
        {
            return (ViewOutcome::Stale, notes);
        }
        let next = render_view(&before, view, source, now, &loc);
        let old_view = std::mem::replace(&mut m.view, view.clone());
        m.view_dump_ns = m.view_dump_ns.max(dump_ns);
        if next != before {
            m.writer.publish(&next);
            if next.failover_count != before.failover_count {
                notes.push(Note::Failover(Failover {
                    bond: view.name.clone(),
                    from: before.active_name().map(str::to_owned),
                    to: next.active_name().map(str::to_owned),
                    source,
                    count: next.failover_count,
                    ebpf: None,
                }));
            }
        }
        notes.extend(member_changes(&old_view, view).into_iter().map(Note::Member));
        (ViewOutcome::Applied, notes)
    }

    /// A managed bond was renamed: it stays managed under its new name, and its page file is renamed in
    /// place (same inode: readers that map it keep working and see the new `bond_name`).
    fn rename(&mut self, view: &BondView) -> Option<Note> {
        let m = self.bonds.get_mut(&view.ifindex)?;
        let before = *m.writer.current();
        let mut data = before;
        data.bond_name = exabond_common::page::name_buf(&view.name);
        // The new name is on the page before the file has it: whoever finds the file under the new name
        // reads that name in it.
        m.writer.publish(&data);
        Some(match m.writer.rename(&self.page_dir, &view.name) {
            Ok(()) => {
                let from = std::mem::replace(&mut m.view.name, view.name.clone());
                Note::Renamed { from, to: view.name.clone(), page: m.writer.path().display().to_string() }
            }
            Err(e) => {
                m.writer.publish(&before);
                Note::RenameFailed { bond: view.name.clone(), error: e.to_string() }
            }
        })
    }

    /// A managed bond no longer exists: retire its page and remove the file.
    #[must_use = "report the notes once the publisher lock is released"]
    pub fn bond_gone(&mut self, ifindex: u32) -> Notes {
        let Some(m) = self.bonds.remove(&ifindex) else {
            return Notes::new();
        };
        let bond = m.view.name.clone();
        let error = m.writer.retire_and_remove().err().map(|e| e.to_string());
        vec![Note::Gone { bond, error }]
    }

    /// Refresh every page's heartbeat (stores only: one word and the sequences of each page).
    pub fn heartbeat(&mut self) {
        let now = exabond_common::clock::monotonic_ns();
        for m in self.bonds.values_mut() {
            m.writer.heartbeat(now);
        }
    }

    /// [`Self::heartbeat`], and each page's word and active slave into `out` (a buffer the poll keeps:
    /// no allocation once it has room), for the poll's comparison with the fast words.
    pub fn heartbeat_and_words(&mut self, out: &mut Vec<PageWord>) {
        self.heartbeat();
        out.clear();
        out.extend(self.bonds.iter().map(|(&bond_ifindex, m)| {
            let d = m.writer.current();
            PageWord {
                bond_ifindex,
                word: d.legacy_word,
                active: if d.flags & exabond_common::page::FLAG_ACTIVE != 0 { d.active_ifindex } else { 0 },
            }
        }));
    }

    /// The name of a managed bond.
    #[must_use]
    pub fn name_of(&self, ifindex: u32) -> Option<String> {
        self.bonds.get(&ifindex).map(|m| m.view.name.clone())
    }
}

/// Members added or removed and link changes between two views of a bond.
fn member_changes(old: &BondView, new: &BondView) -> Vec<AgentEvent> {
    let mut out = Vec::new();
    for s in &new.slaves {
        match old.slave(s.ifindex) {
            None => out.push(AgentEvent::Member { bond: new.name.clone(), member: s.name.clone(), change: "added" }),
            Some(o) if o.link != s.link => out.push(AgentEvent::Link {
                bond: new.name.clone(),
                member: s.name.clone(),
                link: s.link.as_str(),
                link_failures: s.link_failures,
            }),
            Some(_) => {}
        }
    }
    for o in &old.slaves {
        if new.slave(o.ifindex).is_none() {
            out.push(AgentEvent::Member { bond: new.name.clone(), member: o.name.clone(), change: "removed" });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bond_view::SlaveView;
    use exabond_common::event::{EventHeader, FailoverEvent};
    use exabond_common::page::LinkState;
    use exabond_common::reader::PageReader;
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

    fn ev(new: u32, ktime_ns: u64) -> FailoverEvent {
        FailoverEvent {
            header: EventHeader { kind: 1, ktime_ns, ..Default::default() },
            bond_ifindex: 10,
            old_ifindex: 0,
            new_ifindex: new,
            _pad: 0,
        }
    }

    const NO_LOCS: Locations = Locations::new();

    fn setup(tag: &str) -> (std::path::PathBuf, Publisher) {
        let dir = std::env::temp_dir().join(format!("exabond-pub-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let mut p = Publisher::new(dir.clone());
        p.manage(&view(11), &NO_LOCS).unwrap();
        (dir, p)
    }

    #[test]
    fn ebpf_first_then_views() {
        let (dir, mut p) = setup("order");
        let r = PageReader::open_in(&dir, "bond0").unwrap();
        let now = exabond_common::clock::monotonic_ns();
        assert!(p.on_failover(&ev(12, now)).published().is_some());
        assert_eq!(r.snapshot().unwrap().active_name(), Some("eth-b"));
        // A view dumped before the switch completed contradicts the event: rejected, page unchanged.
        let gen = p.ebpf_gen(10);
        assert_eq!(p.on_view(&view(11), &NO_LOCS, ChangeSource::Netlink, gen, now).0, ViewOutcome::Stale);
        assert_eq!(r.snapshot().unwrap().active_name(), Some("eth-b"));
        // A view whose dump raced with an event is rejected whatever it says.
        assert_eq!(p.on_view(&view(12), &NO_LOCS, ChangeSource::Netlink, gen - 1, now).0, ViewOutcome::Stale);
        // The consistent view is applied, credit stays with eBPF.
        assert_eq!(p.on_view(&view(12), &NO_LOCS, ChangeSource::Netlink, gen, now + 1).0, ViewOutcome::Applied);
        let d = r.snapshot().unwrap();
        assert_eq!((d.failover_count, d.source()), (2, ChangeSource::Ebpf));
        // An eBPF event older than the last applied view would bring back an old state: ignored.
        assert!(p.on_failover(&ev(11, now)).published().is_none());
        assert_eq!(r.snapshot().unwrap().active_name(), Some("eth-b"));
        assert_eq!(p.on_view(&view(12), &NO_LOCS, ChangeSource::Poll, p.ebpf_gen(10), now + 2).0, ViewOutcome::Applied);
    }

    #[test]
    fn late_ebpf_event_annotates_kernel_time() {
        let (dir, mut p) = setup("late");
        let r = PageReader::open_in(&dir, "bond0").unwrap();
        let t = exabond_common::clock::monotonic_ns();
        assert_eq!(p.on_view(&view(12), &NO_LOCS, ChangeSource::Netlink, 0, t).0, ViewOutcome::Applied);
        assert_eq!(r.snapshot().unwrap().kernel_event_ns, 0);
        assert!(p.on_failover(&ev(12, t - 1000)).published().is_none());
        let d = r.snapshot().unwrap();
        assert_eq!((d.source(), d.kernel_event_ns, d.failover_count), (ChangeSource::Netlink, t - 1000, 2));
    }

    #[test]
    fn gone_bond_is_retired_and_removed() {
        let (dir, mut p) = setup("gone");
        let r = PageReader::open_in(&dir, "bond0").unwrap();
        assert!(p.is_relevant(10, None) && p.is_relevant(11, None) && p.is_relevant(99, Some(10)));
        assert!(!p.is_relevant(99, Some(98)));
        assert_eq!(p.bond_gone(10), [Note::Gone { bond: "bond0".into(), error: None }]);
        assert!(r.snapshot().unwrap().is_retired());
        assert!(!dir.join("exabond-bond0").exists());
        assert_eq!(p.managed().count(), 0);
        assert_eq!(p.on_view(&view(11), &NO_LOCS, ChangeSource::Poll, 0, 0).0, ViewOutcome::NotManaged);
    }
}
