//! Defence in depth: a managed bond that the agent sees (rtnetlink listener, poll, start-up) with a member
//! the verdicts refuse, or in a mode other than active-backup, got past the vetoes (or there are none: no
//! BPF LSM, `--no-lsm`). In every enforcement mode it is repaired at once: the member released through
//! sysfs `bonding/slaves`, the mode restored through `bonding/mode`; each is logged at error level,
//! counted (`exabond_bypasses_total{bond,kind}`, `exabond status`) and sent to `exabond watch`. A refused
//! member is never published as active meanwhile (the forbidden set, see `enforcement.rs`).

use std::path::Path;

use netlink_packet_route::link::BondMode;

use crate::agent_events::AgentEvent;
use crate::bond_view::{BondView, SlaveView};
use crate::enforcement::Enforcement;
use crate::policy::Verdict;
use crate::shared::Shared;

/// What got past the vetoes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Bypass {
    /// A member the policy refuses.
    Member {
        /// The bond.
        bond: String,
        /// The member.
        member: String,
    },
    /// A mode other than active-backup.
    Mode {
        /// The bond.
        bond: String,
        /// The mode found.
        mode: String,
    },
}

impl Bypass {
    /// The counter's `kind` label.
    #[must_use]
    pub const fn kind(&self) -> &'static str {
        match self {
            Self::Member { .. } => "member",
            Self::Mode { .. } => "mode",
        }
    }

    /// The bond.
    #[must_use]
    pub fn bond(&self) -> &str {
        match self {
            Self::Member { bond, .. } | Self::Mode { bond, .. } => bond,
        }
    }

    /// The device or value concerned (member name or mode).
    #[must_use]
    pub fn detail(&self) -> &str {
        match self {
            Self::Member { member, .. } => member,
            Self::Mode { mode, .. } => mode,
        }
    }

    /// The sysfs write that repairs it: (file under `bonding/`, value).
    #[must_use]
    pub fn repair_write(&self) -> (&'static str, String) {
        match self {
            Self::Member { member, .. } => ("slaves", format!("-{member}")),
            Self::Mode { .. } => ("mode", "active-backup".to_owned()),
        }
    }
}

/// The bypasses in `view` (pure): members for which `refused` holds, released first, then a wrong mode (the
/// driver changes the mode of a bond without members only).
pub fn find(view: &BondView, refused: impl Fn(&SlaveView) -> bool) -> Vec<Bypass> {
    let mut found: Vec<Bypass> = view
        .slaves
        .iter()
        .filter(|s| refused(s))
        .map(|s| Bypass::Member { bond: view.name.clone(), member: s.name.clone() })
        .collect();
    if view.mode != BondMode::ActiveBackup {
        found.push(Bypass::Mode { bond: view.name.clone(), mode: crate::policy::mode_name(view.mode) });
    }
    found
}

/// The bypasses of a managed bond by the agent's verdicts (a member without a verdict yet is judged now);
/// none for a bond that is not managed.
#[must_use]
pub fn find_managed(enf: &Enforcement, view: &BondView) -> Vec<Bypass> {
    if enf.bond_name(view.ifindex).is_none() {
        return Vec::new();
    }
    find_judged(enf, view)
}

/// The bypasses of bond `view` by the agent's verdicts, managed or not (start-up, before it manages it).
#[must_use]
pub fn find_judged(enf: &Enforcement, view: &BondView) -> Vec<Bypass> {
    find(view, |s| match enf.verdict(s.ifindex) {
        Some(v) => *v != Verdict::Allowed,
        None => enf.policy().verdict(&Enforcement::device_info(&s.name, &s.kind)) != Verdict::Allowed,
    })
}

/// One repair done: what was found and how the write went.
#[derive(Debug)]
pub struct Repair {
    /// What was found.
    pub bypass: Bypass,
    /// The sysfs write's outcome.
    pub result: std::io::Result<()>,
}

/// Whether a bypass is still there now (sysfs): another task may have repaired it since the dump that
/// showed it.
fn still_there(b: &Bypass, sys: &Path) -> bool {
    match b {
        Bypass::Member { member, .. } => {
            std::fs::read_to_string(sys.join("slaves")).is_ok_and(|s| s.split_whitespace().any(|m| m == member))
        }
        Bypass::Mode { .. } => std::fs::read_to_string(sys.join("mode"))
            .is_ok_and(|m| m.split_whitespace().next() != Some("active-backup")),
    }
}

/// Repair each bypass that is still there (sysfs writes under `/sys/class/net/<bond>/bonding`), one task
/// at a time: the listener and the poll may both have seen it, it is repaired and counted once. Call it
/// with no agent lock held.
#[must_use]
pub fn repair(shared: &Shared, found: Vec<Bypass>) -> Vec<Repair> {
    let _one_at_a_time = shared.counters.repairing();
    found
        .into_iter()
        .filter_map(|bypass| {
            let sys = Path::new("/sys/class/net").join(bypass.bond()).join("bonding");
            if !still_there(&bypass, &sys) {
                return None;
            }
            let (file, value) = bypass.repair_write();
            let result = std::fs::write(sys.join(file), value);
            Some(Repair { bypass, result })
        })
        .collect()
}

/// Log (error level), count and emit each repair; `seen_by` says how it was seen.
pub fn report(shared: &Shared, repairs: &[Repair], seen_by: &'static str) {
    for r in repairs {
        let b = &r.bypass;
        let outcome = match &r.result {
            Ok(()) => "repaired".to_owned(),
            Err(e) => format!("REPAIR FAILED: {e}"),
        };
        match b {
            Bypass::Member { bond, member } => tracing::error!(
                bond = %bond,
                device = %member,
                seen_by,
                "BYPASS: refused member {member} found in managed bond {bond} (seen by {seen_by}); released refused member {member}: {outcome}"
            ),
            Bypass::Mode { bond, mode } => tracing::error!(
                bond = %bond,
                mode = %mode,
                seen_by,
                "BYPASS: managed bond {bond} found in mode {mode} (seen by {seen_by}); restored mode active-backup: {outcome}"
            ),
        }
        shared.counters.count_bypass(b.bond(), b.kind());
        shared.emit(AgentEvent::Bypass {
            bond: b.bond().to_owned(),
            kind: b.kind(),
            detail: b.detail().to_owned(),
            seen_by,
            outcome,
        });
    }
}

#[cfg(test)]
mod tests {
    use exabond_common::page::LinkState;

    use super::*;

    fn slave(ifindex: u32, name: &str) -> SlaveView {
        SlaveView {
            ifindex,
            name: name.into(),
            mac: [0; 6],
            link: LinkState::Up,
            active: false,
            link_failures: 0,
            kind: String::new(),
        }
    }

    fn view(mode: BondMode, slaves: Vec<SlaveView>) -> BondView {
        BondView {
            ifindex: 5,
            name: "b0".into(),
            mode,
            active_ifindex: 0,
            miimon_ms: 0,
            arp_interval_ms: 0,
            arp_targets: 0,
            up: true,
            slaves,
        }
    }

    #[test]
    fn refused_members_then_mode() {
        let v = view(BondMode::BalanceRr, vec![slave(7, "eth0"), slave(8, "dum0"), slave(9, "dum1")]);
        let found = find(&v, |s| s.name.starts_with("dum"));
        assert_eq!(
            found,
            [
                Bypass::Member { bond: "b0".into(), member: "dum0".into() },
                Bypass::Member { bond: "b0".into(), member: "dum1".into() },
                Bypass::Mode { bond: "b0".into(), mode: crate::policy::mode_name(BondMode::BalanceRr) },
            ]
        );
        assert_eq!(found[0].repair_write(), ("slaves", "-dum0".to_owned()));
        assert_eq!(found[2].repair_write(), ("mode", "active-backup".to_owned()));
        assert_eq!((found[0].kind(), found[2].kind()), ("member", "mode"));
    }

    #[test]
    fn nothing_to_repair() {
        let v = view(BondMode::ActiveBackup, vec![slave(7, "eth0")]);
        assert!(find(&v, |_| false).is_empty());
    }

    #[test]
    fn only_managed_bonds() {
        use crate::enforcement::Mode;
        use crate::policy::MemberPolicy;
        // No such device on the host: no driver, so the default policy refuses it.
        let v = view(BondMode::BalanceRr, vec![slave(900_001, "exb-test-x")]);
        let mut e = Enforcement::new(None, MemberPolicy::new(&[]), Mode::LsmVeto);
        assert!(find_managed(&e, &v).is_empty(), "an unmanaged bond is none of our business");
        e.manage(&v).expect("no maps: nothing can fail");
        let found = find_managed(&e, &v);
        assert_eq!(found.len(), 2, "in LSM mode too: {found:?}");
        assert_eq!(found[0], Bypass::Member { bond: "b0".into(), member: "exb-test-x".into() });
    }
}
