//! What the agent's tasks and threads share, who owns each piece, and the order its locks are taken in.
//!
//! | state | owner: the only writer | how others reach it |
//! |---|---|---|
//! | pages, the last view of each managed bond, eBPF generations | [`Publisher`] | `publisher` lock |
//! | member verdicts, the enforcement maps (managed bonds, guarded files, page guard inodes) | [`Enforcement`] | `enforcement` lock |
//! | the forbidden set: devices never published as active | [`Enforcement`] computes it from its verdicts | the publisher's read-only copy (see below) |
//! | bypass, resync and self-check counts, the degraded state | whoever repairs ([`Counters`]) | leaf locks and atomics |
//! | veto counts | the eBPF event thread ([`VetoCounts::count`]) | `vetoes` lock (leaf) |
//! | kernel event → page latencies | [`Shared::report`] of an eBPF failover | [`LatencyHistogram`]: atomics, no lock |
//! | `SmartNIC` locations of members | [`Shared::locations`] | `smartnic` lock (leaf) |
//! | fast-word slots and epochs, `BOND_SLOTS`, `MEMBER_WORDS` | [`FastWords`] (`fast_words::sync`) | `fast` lock (leaf) |
//! | MAC pitfalls | `mac_pitfall::Tracker` | its own lock (leaf) |
//! | events for observers | anyone emits on [`Bus`] (a broadcast sender, `Sync`) | [`Bus::subscribe`]; no agent lock |
//!
//! The forbidden set has one owner: the enforcement side computes it from the verdicts it keeps; the
//! publisher holds a read-only copy (a [`ForbiddenSet`](crate::enforcement::ForbiddenSet), an `Arc`'d set)
//! that only [`Shared::change_verdicts`] replaces, through `Publisher::set_forbidden_set`, under the
//! enforcement lock (so copies reach the publisher in the order the verdicts changed). The eBPF event thread
//! checks it holding the publisher lock alone.
//!
//! # Lock order
//!
//! Every lock here is a priority-inheritance mutex ([`PiMutex`]). A thread takes them only in this order
//! and never two of the same rank:
//!
//! 1. `enforcement` ([`ENFORCEMENT`])
//! 2. `publisher` ([`PUBLISHER`])
//! 3. a leaf ([`LEAF`]): `vetoes`, `smartnic`, the MAC pitfall list, the [`Counters`] (and their `repairing`
//!    lock, held while bypasses are repaired). Nothing else is taken while one is held.
//!
//! Places that hold both `enforcement` and `publisher`, in that order: `manage::manage_from`,
//! `manage::unmanage`, [`Shared::change_verdicts`] (`netlink::sync_verdicts`, `netlink::note`),
//! `netlink::refresh` (the page guard following retired pages), `page_watch::verify`,
//! `self_check::check_once` (the map audit) and
//! `cli::agent::adopt_bonds` (the page guard at start-up). The eBPF event waiters (`event_loop`) take their
//! ring buffer's turn lock (a `std` mutex only they use) and, under it, the publisher lock or `vetoes`, one
//! at a time; never `enforcement`, so a real-time waiter only ever waits for a publisher critical section.
//! Debug builds check the order at every lock ([`crate::pi_mutex::LockRank`]) and panic when it is broken.
//!
//! Two more rules keep the publisher's critical sections short:
//! - nothing logs (stderr I/O) and nothing reads sysfs or calls an ioctl while `publisher` is held: its
//!   methods return [`Notes`](crate::report::Notes), reported by [`Shared::report`] after the guard is
//!   dropped (asserted in debug builds); the `SmartNIC` locations a view needs are read before
//!   ([`Shared::locations`]);
//! - no guard lives across an `.await`: [`PiMutexGuard`] is not `Send`, so the compiler refuses it in a task.

use std::collections::BTreeMap;
use std::path::PathBuf;

use rtnetlink::Handle;

use crate::agent_events::{AgentEvent, Bus, LatencyHistogram};
use crate::bond_view::BondView;
use crate::counters::Counters;
use crate::enforcement::Enforcement;
use crate::fast_words::FastWords;
use crate::pi_mutex::{LockRank, PiMutex, PiMutexGuard};
use crate::publisher::Publisher;
use crate::report::Note;
use crate::smartnic::{Locations, SmartNicCache};

/// Rank of the enforcement lock: taken first.
pub const ENFORCEMENT: LockRank = LockRank::new(1, "enforcement");
/// Rank of the publisher lock: after `enforcement`, before any leaf.
pub const PUBLISHER: LockRank = LockRank::new(2, "publisher");
/// Rank of the leaf locks: nothing is taken while one is held.
pub const LEAF: LockRank = LockRank::new(3, "leaf");

/// What the agent shares between its tasks and threads.
pub struct Shared {
    /// Policy state and maps. Lock order 1.
    enforcement: PiMutex<Enforcement>,
    /// Pages. Lock order 2; the real-time eBPF event waiters take it too.
    publisher: PiMutex<Publisher>,
    /// `SmartNIC` locations of members, read before the publisher lock is taken. Leaf.
    smartnic: PiMutex<SmartNicCache>,
    /// The fast words (none without eBPF). Leaf.
    fast: Option<PiMutex<FastWords>>,
    /// Vetoes counted per bond.
    pub vetoes: VetoCounts,
    /// Bypasses, resyncs, self-check repairs and the degraded state.
    pub counters: Counters,
    /// Kernel event → page latencies (eBPF failovers).
    pub latency: LatencyHistogram,
    /// Observers (`exabond watch`, the metrics endpoint); emitting takes no agent lock.
    pub events: Bus,
    /// The current MAC pitfalls (`mac_pitfall::on_dump`; its own leaf lock).
    pub pitfalls: std::sync::Arc<crate::mac_pitfall::Tracker>,
    /// rtnetlink requests.
    pub handle: Handle,
    /// Directory of the pages.
    pub page_dir: PathBuf,
}

impl Shared {
    /// The shared state around `publisher` and `enforcement`.
    #[must_use]
    pub fn new(
        publisher: Publisher,
        enforcement: Enforcement,
        fast: Option<FastWords>,
        handle: Handle,
        page_dir: PathBuf,
    ) -> Self {
        Self {
            enforcement: PiMutex::with_rank(enforcement, ENFORCEMENT),
            publisher: PiMutex::with_rank(publisher, PUBLISHER),
            smartnic: PiMutex::with_rank(SmartNicCache::default(), LEAF),
            fast: fast.map(|f| PiMutex::with_rank(f, LEAF)),
            vetoes: VetoCounts::default(),
            counters: Counters::default(),
            latency: LatencyHistogram::default(),
            events: Bus::default(),
            pitfalls: std::sync::Arc::default(),
            handle,
            page_dir,
        }
    }

    /// Lock the enforcement state (lock order 1: never while holding `publisher` or a leaf).
    pub fn enforcement(&self) -> PiMutexGuard<'_, Enforcement> {
        self.enforcement.lock()
    }

    /// Lock the publisher (lock order 2: `enforcement` may be held, a leaf may not). Log nothing until the
    /// guard is dropped: report what its methods return with [`Shared::report`].
    pub fn publisher(&self) -> PiMutexGuard<'_, Publisher> {
        self.publisher.lock()
    }

    /// The fast words (a leaf lock), if the eBPF programs are loaded.
    #[must_use]
    pub fn fast(&self) -> Option<&PiMutex<FastWords>> {
        self.fast.as_ref()
    }

    /// The `SmartNIC` locations of the members of `views` (syscalls and logs: call it before taking the
    /// publisher lock).
    pub fn locations<'a>(&self, views: impl IntoIterator<Item = &'a BondView>) -> Locations {
        self.smartnic.lock().locations(views)
    }

    /// Change member verdicts with `change`, then, if the set of devices the policy refuses changed, hand the
    /// new set to the publisher: the only way the publisher's forbidden set is replaced. Takes
    /// `enforcement`, then `publisher` under it (so two changes reach the publisher in the order they were
    /// made).
    pub fn change_verdicts<R>(&self, change: impl FnOnce(&mut Enforcement) -> R) -> R {
        let mut enf = self.enforcement();
        let r = change(&mut enf);
        if let Some(set) = enf.forbidden_update() {
            self.publisher().set_forbidden_set(set);
        }
        r
    }

    /// Tell the log and the observers what the publisher did: each note's log lines, the latency of an eBPF
    /// failover, then its events. Called after the publisher guard is dropped.
    pub fn report(&self, notes: impl IntoIterator<Item = Note>) {
        debug_assert!(!crate::pi_mutex::holds(PUBLISHER), "reporting (logging) under the publisher lock");
        for note in notes {
            note.log();
            if let Note::Failover(f) = &note {
                if let Some(e) = f.ebpf {
                    self.latency.record(e.latency_ns);
                }
            }
            for ev in note.events() {
                self.events.emit(ev);
            }
        }
    }

    /// Tell observers one event.
    pub fn emit(&self, ev: AgentEvent) {
        self.events.emit(ev);
    }
}

/// Vetoes counted per bond ifindex: counted by the eBPF event thread, read by `status` and the metrics.
pub struct VetoCounts {
    by_bond: PiMutex<BTreeMap<u32, u64>>,
}

impl Default for VetoCounts {
    fn default() -> Self {
        Self { by_bond: PiMutex::with_rank(BTreeMap::new(), LEAF) }
    }
}

impl VetoCounts {
    fn lock(&self) -> PiMutexGuard<'_, BTreeMap<u32, u64>> {
        self.by_bond.lock()
    }

    /// Count a veto against a bond.
    pub fn count(&self, bond_ifindex: u32) {
        *self.lock().entry(bond_ifindex).or_default() += 1;
    }

    /// Vetoes counted for a bond.
    #[must_use]
    pub fn get(&self, bond_ifindex: u32) -> u64 {
        self.lock().get(&bond_ifindex).copied().unwrap_or(0)
    }
}

/// The unit tests' shared state: a publisher writing into `page_dir`, detect-and-revert enforcement without
/// maps, a fresh rtnetlink connection (needs a tokio runtime).
#[cfg(test)]
pub fn for_tests(page_dir: PathBuf) -> Shared {
    use crate::enforcement::Mode;
    use crate::policy::MemberPolicy;
    let (conn, handle, _) = rtnetlink::new_connection().expect("an rtnetlink socket");
    tokio::spawn(conn);
    Shared::new(
        Publisher::new(page_dir.clone()),
        Enforcement::new(None, MemberPolicy::new(&[]), Mode::DetectAndRevert),
        None,
        handle,
        page_dir,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vetoes_are_counted_per_bond() {
        let v = VetoCounts::default();
        v.count(10);
        v.count(10);
        v.count(11);
        assert_eq!((v.get(10), v.get(11), v.get(12)), (2, 1, 0));
    }
}
