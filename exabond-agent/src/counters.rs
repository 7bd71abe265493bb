//! What enforcement had to put right, counted for `exabond status` and the metrics: bypasses (a forbidden
//! member or mode found on a managed bond and repaired), rtnetlink resynchronisations after lost
//! notifications, self-check repairs; and whether enforcement is degraded (a self-check finding that could
//! not be repaired); the state of the failover kprobes and how often they were attached again.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::failover_probes::ProbeState;
use crate::pi_mutex::{PiMutex, PiMutexGuard};
use crate::shared::LEAF;

/// The counters. Their locks are leaves (see `shared.rs`).
pub struct Counters {
    /// Bypasses by (bond name, kind).
    bypasses: PiMutex<BTreeMap<(String, &'static str), u64>>,
    /// Full resynchronisations after an rtnetlink receive buffer overrun.
    resyncs: AtomicU64,
    /// Self-check findings repaired, by what was repaired (`pin`, `map`).
    repairs: PiMutex<BTreeMap<&'static str, u64>>,
    /// Why enforcement is degraded (empty: it is not), from the last self-check.
    degraded: PiMutex<Vec<String>>,
    /// The failover kprobes: attached, detached (and why) or off.
    probe: PiMutex<ProbeState>,
    /// Times the kprobes were attached again after the bonding module was loaded again.
    probe_reattaches: AtomicU64,
    /// Held while bypasses are repaired, so two tasks that saw the same one repair (and count) it once.
    repairing: PiMutex<()>,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            bypasses: PiMutex::with_rank(BTreeMap::new(), LEAF),
            resyncs: AtomicU64::new(0),
            repairs: PiMutex::with_rank(BTreeMap::new(), LEAF),
            degraded: PiMutex::with_rank(Vec::new(), LEAF),
            probe: PiMutex::with_rank(ProbeState::Off, LEAF),
            probe_reattaches: AtomicU64::new(0),
            repairing: PiMutex::with_rank((), LEAF),
        }
    }
}

impl Counters {
    /// Serialise repairs of bypasses (a leaf: take no other lock while holding it).
    pub fn repairing(&self) -> PiMutexGuard<'_, ()> {
        self.repairing.lock()
    }

    fn bypass_map(&self) -> PiMutexGuard<'_, BTreeMap<(String, &'static str), u64>> {
        self.bypasses.lock()
    }

    /// Count one bypass of `kind` on `bond`.
    pub fn count_bypass(&self, bond: &str, kind: &'static str) {
        *self.bypass_map().entry((bond.to_owned(), kind)).or_default() += 1;
    }

    /// Every bypass count: ((bond, kind), count).
    #[must_use]
    pub fn bypasses(&self) -> Vec<((String, &'static str), u64)> {
        self.bypass_map().iter().map(|(k, v)| (k.clone(), *v)).collect()
    }

    /// Bypasses counted on `bond`, all kinds.
    #[must_use]
    pub fn bypasses_of(&self, bond: &str) -> u64 {
        self.bypass_map().iter().filter(|((b, _), _)| b == bond).map(|(_, v)| v).sum()
    }

    /// Count one resynchronisation.
    pub fn count_resync(&self) {
        self.resyncs.fetch_add(1, Ordering::Relaxed);
    }

    /// Resynchronisations so far.
    #[must_use]
    pub fn resyncs(&self) -> u64 {
        self.resyncs.load(Ordering::Relaxed)
    }

    /// Count one self-check repair of `what`.
    pub fn count_repair(&self, what: &'static str) {
        *self.repairs.lock().entry(what).or_default() += 1;
    }

    /// Self-check repairs by what was repaired.
    #[must_use]
    pub fn repairs(&self) -> Vec<(&'static str, u64)> {
        self.repairs.lock().iter().map(|(k, v)| (*k, *v)).collect()
    }

    /// Record the last self-check's unrepaired findings; returns whether the degraded state changed.
    pub fn set_degraded(&self, reasons: Vec<String>) -> bool {
        let mut d = self.degraded.lock();
        let changed = d.is_empty() != reasons.is_empty() || *d != reasons;
        *d = reasons;
        changed
    }

    /// Record the state of the failover probes; returns whether it changed.
    pub fn set_probe(&self, state: ProbeState) -> bool {
        let mut p = self.probe.lock();
        let changed = *p != state;
        *p = state;
        changed
    }

    /// The state of the failover probes.
    #[must_use]
    pub fn probe(&self) -> ProbeState {
        self.probe.lock().clone()
    }

    /// Count one re-attach of the kprobes.
    pub fn count_probe_reattach(&self) {
        self.probe_reattaches.fetch_add(1, Ordering::Relaxed);
    }

    /// Re-attaches of the kprobes so far.
    #[must_use]
    pub fn probe_reattaches(&self) -> u64 {
        self.probe_reattaches.load(Ordering::Relaxed)
    }

    /// Why enforcement is degraded (empty: it is not).
    #[must_use]
    pub fn degraded(&self) -> Vec<String> {
        self.degraded.lock().clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_and_degraded_state() {
        let c = Counters::default();
        c.count_bypass("b0", "member");
        c.count_bypass("b0", "member");
        c.count_bypass("b0", "mode");
        c.count_bypass("b1", "mode");
        assert_eq!(c.bypasses_of("b0"), 3);
        assert_eq!(c.bypasses_of("b2"), 0);
        assert!(c.bypasses().contains(&(("b0".into(), "member"), 2)));
        c.count_resync();
        assert_eq!(c.resyncs(), 1);
        assert!(!c.set_degraded(Vec::new()), "not degraded, unchanged");
        assert!(c.set_degraded(vec!["link-x detached".into()]));
        assert!(!c.set_degraded(vec!["link-x detached".into()]), "same reasons: unchanged");
        assert_eq!(c.degraded(), ["link-x detached"]);
        assert!(c.set_degraded(Vec::new()), "repaired");
    }
}
