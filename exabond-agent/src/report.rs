//! What the publisher did, told once its lock is released.
//!
//! The publisher lock is taken by the real-time eBPF event waiters: nothing may log (stderr I/O) or do other
//! slow work while it is held. So the publisher's methods only write the pages and return [`Note`]s; the
//! caller drops the guard, then hands them to `Shared::report`, which logs each one ([`Note::log`]), records
//! the kernel → page latency of eBPF failovers and emits the observers' events ([`Note::events`]).

use exabond_common::page::ChangeSource;
use exabond_common::writer::Opened;

use crate::agent_events::AgentEvent;

/// Notes of one or more publisher calls, in the order things happened.
pub type Notes = Vec<Note>;

/// The active slave of a managed bond changed on its page.
#[derive(Clone, Debug, PartialEq)]
pub struct Failover {
    /// The bond.
    pub bond: String,
    /// Previous active slave.
    pub from: Option<String>,
    /// New active slave (`None`: none, or for eBPF a member not in the table yet, see `new_ifindex`).
    pub to: Option<String>,
    /// Which source saw it first.
    pub source: ChangeSource,
    /// The page's failover count after it.
    pub count: u64,
    /// For a failover seen by the eBPF probe: the new active slave's ifindex and the kernel event → page
    /// latency in ns.
    pub ebpf: Option<EbpfDetail>,
}

/// What only an eBPF-seen failover knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EbpfDetail {
    /// The ifindex the kernel switched to (0: none).
    pub new_ifindex: u32,
    /// Kernel event → page published, ns.
    pub latency_ns: u64,
}

/// A check of a page that could not be made or a repair that failed ([`Note::PageProblem`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PageProblem {
    /// The page was removed or replaced and cannot be re-created.
    NotRecreated(String),
    /// The page cannot be stat'ed (with its path).
    Stat {
        /// The page file.
        page: String,
        /// The error.
        error: String,
    },
    /// Its permissions cannot be checked.
    Mode(String),
    /// Its size cannot be checked.
    Size(String),
}

/// One thing the publisher did that the log and the observers must hear of.
#[derive(Clone, Debug, PartialEq)]
pub enum Note {
    /// The active slave changed on the page.
    Failover(Failover),
    /// An eBPF event older than the last view applied was dropped (applying it would bring back an older
    /// state).
    OlderEbpfEvent {
        /// The bond.
        bond: String,
    },
    /// A member joined or left a managed bond, or its link changed ([`AgentEvent::Member`] or
    /// [`AgentEvent::Link`]).
    Member(AgentEvent),
    /// How the page of a bond placed under management came about (adopted in place, or a foreign file
    /// replaced; nothing is said of a new page).
    Opened {
        /// The bond.
        bond: String,
        /// The page file.
        page: String,
        /// What was found there.
        opened: Opened,
    },
    /// A bond was placed under management.
    Managed {
        /// The bond.
        bond: String,
        /// The page file.
        page: String,
        /// The active slave on the first page.
        active: Option<String>,
        /// Neither miimon nor a usable ARP monitor is set.
        no_monitor: bool,
    },
    /// A bond was unmanaged: its page retired and removed (or the error doing so).
    Unmanaged {
        /// The bond.
        bond: String,
        /// Why the page could not be retired or removed.
        error: Option<String>,
    },
    /// A managed bond disappeared: its page retired and removed (or the error doing so).
    Gone {
        /// The bond.
        bond: String,
        /// Why the page could not be retired or removed.
        error: Option<String>,
    },
    /// A managed bond was renamed; its page file was renamed in place.
    Renamed {
        /// The old name.
        from: String,
        /// The new name.
        to: String,
        /// The page file (new path).
        page: String,
    },
    /// A managed bond was renamed but its page file could not follow.
    RenameFailed {
        /// The new name.
        bond: String,
        /// The error.
        error: String,
    },
    /// Another process changed a page; the agent mended it.
    Repaired {
        /// The bond.
        bond: String,
        /// What was done.
        action: &'static str,
    },
    /// A page could not be checked or mended.
    PageProblem {
        /// The bond.
        bond: String,
        /// What failed.
        problem: PageProblem,
    },
}

impl Note {
    /// Write the log line(s) of this note. Never called with the publisher lock held.
    pub fn log(&self) {
        match self {
            Self::Failover(f) => f.log(),
            Self::OlderEbpfEvent { bond } => {
                tracing::debug!(bond = %bond, "eBPF event older than the last view; ignored");
            }
            Self::Member(ev) => tracing::info!(?ev, "bond member change"),
            Self::Opened { bond, page, opened } => log_opened(bond, page, opened),
            Self::Managed { bond, page, active, no_monitor } => {
                tracing::info!(bond = %bond, page, active = ?active.as_deref(), "bond managed");
                if *no_monitor {
                    tracing::warn!(bond = %bond, "neither miimon nor a usable arp_interval is set: the bonding driver can miss link-down events; set /sys/class/net/{bond}/bonding/miimon");
                }
            }
            Self::Unmanaged { bond, error: None } => {
                tracing::info!(bond = %bond, "bond unmanaged: page retired and removed");
            }
            Self::Unmanaged { bond, error: Some(e) } => tracing::error!(bond = %bond, "bond unmanaged: {e}"),
            Self::Gone { bond, error: None } => {
                tracing::warn!(bond = %bond, "managed bond disappeared: page retired and removed");
            }
            Self::Gone { bond, error: Some(e) } => tracing::error!(bond = %bond, "managed bond disappeared: {e}"),
            Self::Renamed { from, to, page } => {
                tracing::warn!(from = %from, to = %to, page = %page, "managed bond renamed: page file renamed in place");
            }
            Self::RenameFailed { bond, error } => {
                tracing::error!(bond = %bond, "rename: cannot rename the page: {error}");
            }
            Self::Repaired { bond, action } => tracing::error!(bond = %bond, "{action}"),
            Self::PageProblem { bond, problem } => match problem {
                PageProblem::NotRecreated(e) => {
                    tracing::error!(bond = %bond, "page file removed or replaced, and cannot be re-created: {e}");
                }
                PageProblem::Stat { page, error } => {
                    tracing::warn!(bond = %bond, page = %page, "cannot stat the page: {error}");
                }
                PageProblem::Mode(e) => tracing::warn!(bond = %bond, "cannot check the page's permissions: {e}"),
                PageProblem::Size(e) => tracing::warn!(bond = %bond, "cannot check the page's size: {e}"),
            },
        }
    }

    /// The events observers get for this note (`exabond watch`, in this order).
    #[must_use]
    pub fn events(&self) -> Vec<AgentEvent> {
        match self {
            Self::Failover(f) => vec![f.event()],
            Self::Member(ev) => vec![ev.clone()],
            Self::Managed { bond, .. } => vec![AgentEvent::Manage { bond: bond.clone() }],
            Self::Unmanaged { bond, .. } => vec![AgentEvent::Unmanage { bond: bond.clone(), reason: "unmanaged" }],
            Self::Gone { bond, .. } => vec![AgentEvent::Unmanage { bond: bond.clone(), reason: "deleted" }],
            Self::Renamed { from, to, .. } => vec![
                AgentEvent::Unmanage { bond: from.clone(), reason: "renamed" },
                AgentEvent::Manage { bond: to.clone() },
            ],
            Self::Repaired { bond, action } => {
                vec![AgentEvent::Revert { bond: bond.clone(), action: (*action).to_owned() }]
            }
            Self::OlderEbpfEvent { .. }
            | Self::Opened { .. }
            | Self::RenameFailed { .. }
            | Self::PageProblem { .. } => Vec::new(),
        }
    }
}

fn log_opened(bond: &str, page: &str, opened: &Opened) {
    match opened {
        Opened::Created => {}
        Opened::Adopted { repaired_odd_seq, from_version, .. } => {
            tracing::info!(bond = %bond, page, "adopted the existing page in place (same inode: readers that map it keep working)");
            if *repaired_odd_seq {
                tracing::warn!(bond = %bond, page, "the page was left mid-publication (odd sequence) by a writer that died: repaired");
            }
            if *from_version != exabond_common::page::LAYOUT_VERSION {
                tracing::warn!(bond = %bond, page, from_version, to_version = exabond_common::page::LAYOUT_VERSION, "page layout changed in place (the legacy word did not move)");
            }
        }
        Opened::Replaced(why) => {
            tracing::warn!(bond = %bond, page, "replaced a file that was not an exabond page ({why})");
        }
    }
}

impl Failover {
    fn log(&self) {
        let from = self.from.as_deref().unwrap_or("none");
        if let Some(EbpfDetail { new_ifindex, latency_ns }) = self.ebpf {
            tracing::info!(
                bond = %self.bond,
                from,
                to = self.to.as_deref().unwrap_or(if new_ifindex == 0 { "none" } else { "?" }),
                new_ifindex,
                kernel_to_page_us = latency_ns / 1000,
                source = self.source.as_str(),
                "active slave changed"
            );
        } else {
            tracing::info!(
                bond = %self.bond,
                from,
                to = self.to.as_deref().unwrap_or("none"),
                source = self.source.as_str(),
                "active slave changed"
            );
        }
    }

    fn event(&self) -> AgentEvent {
        #[expect(clippy::cast_precision_loss, reason = "µs for display")]
        let kernel_to_page_us = self.ebpf.map(|e| e.latency_ns as f64 / 1000.0);
        AgentEvent::Failover {
            bond: self.bond.clone(),
            from: self.from.clone(),
            to: self.to.clone(),
            source: self.source.as_str(),
            failover_count: self.count,
            kernel_to_page_us,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_of_notes() {
        let f = Failover {
            bond: "bond0".into(),
            from: Some("eth0".into()),
            to: None,
            source: ChangeSource::Ebpf,
            count: 3,
            ebpf: Some(EbpfDetail { new_ifindex: 7, latency_ns: 1_500 }),
        };
        let line = serde_json::to_string(&Note::Failover(f).events()[0]).unwrap();
        assert_eq!(
            line,
            r#"{"event":"failover","bond":"bond0","from":"eth0","to":null,"source":"ebpf","failover_count":3,"kernel_to_page_us":1.5}"#
        );
        let renamed = Note::Renamed { from: "a".into(), to: "b".into(), page: "/dev/exabond-b".into() };
        let lines: Vec<String> = renamed.events().iter().map(|e| serde_json::to_string(e).unwrap()).collect();
        assert_eq!(
            lines,
            [r#"{"event":"unmanage","bond":"a","reason":"renamed"}"#, r#"{"event":"manage","bond":"b"}"#]
        );
        assert!(Note::OlderEbpfEvent { bond: "bond0".into() }.events().is_empty());
    }
}
