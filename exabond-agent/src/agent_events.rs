//! What the agent tells its observers (`exabond watch`, the metrics endpoint): an event bus and the
//! page-update latency histogram. Neither needs one of the agent's locks (see `shared.rs`).

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;
use tokio::sync::broadcast;

/// Events a subscriber may fall behind by before it is told it missed some.
pub const BUS_CAPACITY: usize = 1024;

/// The observers' event bus: a broadcast channel. Emitting takes none of the agent's locks (a broadcast
/// sender is `Sync`), so any task or thread emits after it has released them.
#[derive(Clone)]
pub struct Bus(broadcast::Sender<AgentEvent>);

impl Default for Bus {
    fn default() -> Self {
        Self(broadcast::channel(BUS_CAPACITY).0)
    }
}

impl Bus {
    /// Tell every subscriber.
    pub fn emit(&self, ev: AgentEvent) {
        // An error only says that nobody is subscribed: fine.
        let _ = self.0.send(ev);
    }

    /// A receiver of every later event.
    #[must_use]
    pub fn subscribe(&self) -> broadcast::Receiver<AgentEvent> {
        self.0.subscribe()
    }
}

/// One thing that happened, as `exabond watch --json` prints it.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AgentEvent {
    /// The active slave of a managed bond changed (on the page).
    Failover {
        /// Bond.
        bond: String,
        /// Previous active slave.
        from: Option<String>,
        /// New active slave.
        to: Option<String>,
        /// Which source saw it first.
        source: &'static str,
        /// The page's failover count after it.
        failover_count: u64,
        /// Kernel event → page, µs (eBPF only).
        kernel_to_page_us: Option<f64>,
    },
    /// A member's link state changed.
    Link {
        /// Bond.
        bond: String,
        /// Member.
        member: String,
        /// `up` / `down`.
        link: &'static str,
        /// Link failure count.
        link_failures: u32,
    },
    /// A member joined or left a managed bond.
    Member {
        /// Bond.
        bond: String,
        /// Member.
        member: String,
        /// `added` / `removed`.
        change: &'static str,
    },
    /// An operation on a managed bond was refused in the kernel.
    Veto {
        /// Bond ifindex.
        bond_ifindex: u32,
        /// What was refused.
        what: &'static str,
        /// The refused value (member name or mode).
        detail: String,
        /// errno returned.
        errno: u32,
        /// Process id.
        pid: u32,
        /// Process name.
        comm: String,
    },
    /// A bond was placed under management.
    Manage {
        /// Bond.
        bond: String,
    },
    /// A bond left management.
    Unmanage {
        /// Bond.
        bond: String,
        /// `unmanaged`, `deleted` or `renamed`.
        reason: &'static str,
    },
    /// Detect-and-revert undid a forbidden change.
    Revert {
        /// Bond.
        bond: String,
        /// What was done.
        action: String,
    },
    /// A forbidden member or mode was found on a managed bond (it got past the vetoes, or there are none)
    /// and repaired.
    Bypass {
        /// Bond.
        bond: String,
        /// `member` or `mode`.
        kind: &'static str,
        /// The member, or the mode found.
        detail: String,
        /// How it was seen (`rtnetlink`, `poll`, `start-up`, `resync`).
        seen_by: &'static str,
        /// `repaired` or why the repair failed.
        outcome: String,
    },
    /// rtnetlink notifications were lost (receive buffer overrun): everything was re-read from a full dump.
    Resync {
        /// Devices in the dump.
        devices: usize,
    },
    /// The self-check found a pin missing or replaced, or a map entry changed behind the agent's back.
    SelfCheck {
        /// What was wrong (a pin path, a map and key).
        what: String,
        /// What was done (`re-pinned`, `rewritten`, or why it could not be).
        action: String,
    },
    /// Enforcement became degraded (something the self-check cannot repair) or healthy again.
    Enforcement {
        /// `degraded` or `ok`.
        state: &'static str,
        /// Why it is degraded (empty when ok).
        reasons: Vec<String>,
    },
    /// The failover kprobes were detached (the bonding module went) or attached again.
    FailoverProbe {
        /// `attached` or `detached`.
        state: &'static str,
        /// Why they are detached (empty when attached).
        reason: String,
    },
    /// A managed bond keeps the MAC address of a device that has left it.
    MacPitfall {
        /// Bond.
        bond: String,
        /// The MAC.
        mac: String,
        /// The former member that still has it.
        donor: String,
    },
}

/// Upper bounds (µs) of the kernel-event → page latency buckets.
pub const LATENCY_BUCKETS_US: [u64; 12] = [10, 25, 50, 100, 250, 500, 1_000, 2_500, 5_000, 10_000, 50_000, 100_000];

/// A Prometheus-style cumulative histogram of kernel-event → page latencies, lock-free.
#[derive(Default)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; LATENCY_BUCKETS_US.len()],
    count: AtomicU64,
    sum_ns: AtomicU64,
}

impl LatencyHistogram {
    /// Record one latency.
    pub fn record(&self, ns: u64) {
        let us = ns / 1000;
        for (b, le) in self.buckets.iter().zip(LATENCY_BUCKETS_US) {
            if us <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// (cumulative counts per bucket, total count, sum in ns).
    #[must_use]
    pub fn snapshot(&self) -> ([u64; LATENCY_BUCKETS_US.len()], u64, u64) {
        let mut b = [0; LATENCY_BUCKETS_US.len()];
        for (d, s) in b.iter_mut().zip(&self.buckets) {
            *d = s.load(Ordering::Relaxed);
        }
        (b, self.count.load(Ordering::Relaxed), self.sum_ns.load(Ordering::Relaxed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = LatencyHistogram::default();
        h.record(5_000); // 5 µs
        h.record(700_000); // 700 µs
        h.record(1_000_000_000); // 1 s: only in +Inf
        let (b, n, sum) = h.snapshot();
        assert_eq!(n, 3);
        assert_eq!(sum, 1_000_705_000);
        assert_eq!(b[0], 1, "≤10 µs");
        assert_eq!(b[5], 1, "≤500 µs");
        assert_eq!(b[6], 2, "≤1 ms");
        assert_eq!(b[11], 2, "≤100 ms");
    }

    #[test]
    fn json_shape() {
        let e = AgentEvent::Member { bond: "bond0".into(), member: "eth0".into(), change: "added" };
        assert_eq!(
            serde_json::to_string(&e).unwrap(),
            r#"{"event":"member","bond":"bond0","member":"eth0","change":"added"}"#
        );
    }
}
