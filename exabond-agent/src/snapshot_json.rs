//! The JSON form of a page snapshot (`exabond read --json`).

use serde::Serialize;

use exabond_common::page::{legacy, PageData};
use exabond_common::reader::PageReader;

/// One member in JSON.
#[derive(Serialize)]
pub struct SlaveJson {
    /// Interface name.
    pub name: String,
    /// ifindex.
    pub ifindex: u32,
    /// `up`, `down` or `unknown`.
    pub link: &'static str,
    /// `active` or `backup`.
    pub role: &'static str,
    /// Link failure count.
    pub link_failures: u32,
    /// Permanent MAC.
    pub mac: String,
}

/// A page snapshot in JSON.
#[derive(Serialize)]
pub struct SnapshotJson {
    /// Bond name.
    pub bond: String,
    /// Bond ifindex.
    pub ifindex: u32,
    /// Active slave name, null if none.
    pub active_slave: Option<String>,
    /// Active slave ifindex (0 if none).
    pub active_ifindex: u32,
    /// The exasock-compatible word.
    pub legacy_word: u32,
    /// Its ACTIVE bit.
    pub legacy_active: bool,
    /// Members.
    pub slaves: Vec<SlaveJson>,
    /// Changes of the active slave since managed.
    pub failover_count: u64,
    /// Which source saw the last change of the active slave.
    pub last_change_source: &'static str,
    /// Which source made the last update of anything but the heartbeat (members, links, failovers).
    pub last_update_source: &'static str,
    /// `CLOCK_MONOTONIC` ns of that update.
    pub last_update_mono_ns: u64,
    /// `CLOCK_MONOTONIC` ns of the last change.
    pub last_change_mono_ns: u64,
    /// `CLOCK_MONOTONIC` ns of the kernel event behind it (0 if not seen by eBPF).
    pub kernel_event_ns: u64,
    /// Kernel event → page publication, µs (null if the change was not seen by eBPF).
    pub kernel_to_page_us: Option<f64>,
    /// ms since the agent's last heartbeat.
    pub heartbeat_age_ms: u64,
    /// Retired, or heartbeat older than the allowed age.
    pub stale: bool,
    /// The page was retired (bond unmanaged or deleted).
    pub retired: bool,
    /// The writing agent's pid.
    pub agent_pid: u32,
    /// Seqlock sequence of this copy.
    pub seq: u64,
}

fn mac(b: &[u8]) -> String {
    b[..6].iter().map(|x| format!("{x:02x}")).collect::<Vec<_>>().join(":")
}

impl SnapshotJson {
    /// Build from a snapshot; `max_age_ms` decides `stale`.
    #[must_use]
    pub fn new(d: &PageData, seq: u64, max_age_ms: u64) -> Self {
        let age_ms = PageReader::heartbeat_age_ns(d) / 1_000_000;
        Self {
            bond: d.bond_name().to_owned(),
            ifindex: d.bond_ifindex,
            active_slave: d.active_name().map(str::to_owned),
            active_ifindex: d.active_ifindex,
            legacy_word: d.legacy_word,
            legacy_active: legacy::is_active(d.legacy_word),
            slaves: d
                .slaves()
                .iter()
                .map(|s| SlaveJson {
                    name: s.name().to_owned(),
                    ifindex: s.ifindex,
                    link: s.link_state().as_str(),
                    role: if s.is_active() { "active" } else { "backup" },
                    link_failures: s.link_failures,
                    mac: mac(&s.mac),
                })
                .collect(),
            failover_count: d.failover_count,
            last_change_source: d.source().as_str(),
            last_update_source: d.update_source().as_str(),
            last_update_mono_ns: d.last_update_mono_ns,
            last_change_mono_ns: d.last_change_mono_ns,
            kernel_event_ns: d.kernel_event_ns,
            #[expect(clippy::cast_precision_loss, reason = "µs for display")]
            kernel_to_page_us: (d.kernel_event_ns != 0)
                .then(|| d.last_change_mono_ns.saturating_sub(d.kernel_event_ns) as f64 / 1000.0),
            heartbeat_age_ms: age_ms,
            stale: d.is_retired() || age_ms > max_age_ms,
            retired: d.is_retired(),
            agent_pid: d.agent_pid,
            seq,
        }
    }

    /// A human-readable multi-line rendering.
    #[must_use]
    pub fn to_text(&self) -> String {
        use std::fmt::Write as _;
        let mut s = String::new();
        let _ = writeln!(
            s,
            "bond {} (ifindex {}): active {}{}",
            self.bond,
            self.ifindex,
            self.active_slave.as_deref().unwrap_or("none"),
            if self.stale { "  [STALE: agent not updating]" } else { "" }
        );
        for sl in &self.slaves {
            let _ = writeln!(
                s,
                "  {:<15} ifindex {:<4} link {:<7} {:<6} failures {} mac {}",
                sl.name, sl.ifindex, sl.link, sl.role, sl.link_failures, sl.mac
            );
        }
        let _ = writeln!(
            s,
            "failovers {}  last change by {}{}  heartbeat {} ms ago  legacy word {:#010x}",
            self.failover_count,
            self.last_change_source,
            self.kernel_to_page_us.map(|u| format!(" (kernel→page {u:.1} µs)")).unwrap_or_default(),
            self.heartbeat_age_ms,
            self.legacy_word
        );
        s
    }
}
