//! The kprobes on the bonding module's functions (`bond_change_active_slave`, `bond_option_mode_set`)
//! across an unload and reload of the module.
//!
//! A kprobe on a module function goes with the module: after `modprobe -r bonding; modprobe bonding` the
//! old probes never fire again, and failovers would reach the pages only through rtnetlink and the poll.
//! Every self-check ([`crate::self_check::EVERY`]) looks at the module's identity: the inode of
//! `/sys/module/bonding` (a kernfs directory made anew at each load, whose inode number is never reused
//! right away: kernfs allocates ids cyclically with a generation), taken only once the module's
//! `initstate` says `live` (its functions can be probed). Polling sysfs is used rather than rtnetlink: the
//! module can go and come back without any bond (no link message at all), and a 2 s check costs two
//! `stat`s.
//!
//! - Module absent: the probes are *detached* (`exabond status`, `exabond_failover_probe_attached 0`, a
//!   `watch` event). This is not degraded enforcement: the BPF LSM vetoes do not depend on the module.
//! - Module back, same struct offsets in its BTF as the ones baked into the loaded object (`OFFSETS`):
//!   both kprobes are attached again (old links detached first), logged and counted
//!   (`exabond_failover_probe_reattaches_total`).
//! - Module back with different offsets: the probes are left detached (they would read the wrong fields)
//!   and the state says to restart the agent, which loads its object with the new offsets.

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

use aya::programs::kprobe::KProbeLinkId;
use aya::Ebpf;
use exabond_common::offsets::KernelOffsets;

use crate::agent_events::AgentEvent;
use crate::ebpf_loader::{self, KPROBES};
use crate::shared::Shared;

/// Where the module's sysfs directory is.
const MODULE_DIR: &str = "/sys/module/bonding";

/// The state of the failover probes, as `exabond status` and the metrics show it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum ProbeState {
    /// The eBPF programs are not loaded (`--no-ebpf`).
    #[default]
    Off,
    /// Attached to the loaded bonding module.
    Attached,
    /// Not firing, and why.
    Detached(String),
}

impl ProbeState {
    /// `off`, `attached` or `detached`.
    #[must_use]
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Attached => "attached",
            Self::Detached(_) => "detached",
        }
    }

    /// Why the probes are detached (empty otherwise).
    #[must_use]
    pub fn reason(&self) -> &str {
        match self {
            Self::Detached(r) => r,
            _ => "",
        }
    }
}

/// Identity of one load of the module: the inode of its sysfs directory, `None` while the module is absent
/// or not yet (or no longer) live.
#[must_use]
pub fn module_identity(dir: &Path) -> Option<u64> {
    let before = std::fs::metadata(dir).ok()?.ino();
    let state = std::fs::read_to_string(dir.join("initstate")).ok()?;
    // Looked at again after `initstate`: a reload between the two reads is not taken for this load.
    let after = std::fs::metadata(dir).ok()?.ino();
    (state.trim() == "live" && before == after).then_some(before)
}

/// What one look at the module asks for.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Nothing changed.
    Keep,
    /// The module is gone: the probes are detached.
    Gone,
    /// A new load of the module: attach again (if its offsets are the same).
    Reload(u64),
}

/// Compare the identity the probes are attached to with the one seen now.
#[must_use]
pub fn step(attached_to: Option<u64>, now: Option<u64>) -> Step {
    match (attached_to, now) {
        (a, n) if a == n => Step::Keep,
        (_, None) => Step::Gone,
        (_, Some(n)) => Step::Reload(n),
    }
}

/// The loaded object and its kprobe links, owned by the self-check task.
pub struct Probes {
    ebpf: Ebpf,
    links: Vec<Option<KProbeLinkId>>,
    offsets: KernelOffsets,
    btf_dir: PathBuf,
    module_dir: PathBuf,
    /// The module load the probes are attached to (`None`: not attached to any).
    attached_to: Option<u64>,
}

impl Probes {
    /// Take the loaded object, its kprobe links and the offsets it was loaded with; records in `shared`
    /// that the probes are attached.
    #[must_use]
    pub fn new(
        shared: &Shared,
        ebpf: Ebpf,
        links: Vec<KProbeLinkId>,
        offsets: KernelOffsets,
        btf_dir: PathBuf,
    ) -> Self {
        let module_dir = PathBuf::from(MODULE_DIR);
        let attached_to = module_identity(&module_dir);
        shared.counters.set_probe(ProbeState::Attached);
        Self { ebpf, links: links.into_iter().map(Some).collect(), offsets, btf_dir, module_dir, attached_to }
    }

    /// Look at the module; detach or re-attach as it asks, and report a change of state.
    pub fn check(&mut self, shared: &Shared) {
        match step(self.attached_to, module_identity(&self.module_dir)) {
            Step::Keep => {}
            Step::Gone => {
                self.attached_to = None;
                set(
                    shared,
                    ProbeState::Detached(
                        "the bonding module is not loaded: failovers reach the pages through rtnetlink and the \
                         poll; the probes are attached again when it is loaded"
                            .into(),
                    ),
                );
            }
            Step::Reload(id) => self.reattach(shared, id),
        }
    }

    fn reattach(&mut self, shared: &Shared, id: u64) {
        match crate::btf_offsets::read(&self.btf_dir) {
            Ok(now) if now == self.offsets => {}
            Ok(now) => {
                // Tried again at the next load only: these offsets will not change while this one lasts.
                self.attached_to = Some(id);
                tracing::error!(loaded = ?self.offsets, now = ?now, "bonding module reloaded with other struct offsets");
                set(
                    shared,
                    ProbeState::Detached(
                        "the bonding module was loaded again with struct offsets other than the ones the eBPF \
                         object was loaded with: the failover probes stay detached; restart the agent to load \
                         it with the new offsets"
                            .into(),
                    ),
                );
                return;
            }
            Err(e) => {
                // The module may be half there (BTF not yet registered): tried again at the next check.
                set(
                    shared,
                    ProbeState::Detached(format!("bonding module loaded again but its BTF cannot be read: {e}")),
                );
                return;
            }
        }
        for ((name, func), link) in KPROBES.iter().zip(&mut self.links) {
            match ebpf_loader::reattach_kprobe(&mut self.ebpf, name, func, link.take()) {
                Ok(l) => *link = Some(l),
                Err(e) => {
                    set(shared, ProbeState::Detached(format!("bonding module loaded again; {e} (tried again in 2 s)")));
                    return;
                }
            }
        }
        self.attached_to = Some(id);
        shared.counters.count_probe_reattach();
        tracing::warn!(
            module_inode = id,
            "the bonding module was loaded again: failover and mode-audit kprobes attached again"
        );
        set(shared, ProbeState::Attached);
    }
}

/// Record `state`; log and emit it when it changed.
fn set(shared: &Shared, state: ProbeState) {
    let event = AgentEvent::FailoverProbe { state: state.as_str(), reason: state.reason().to_owned() };
    if !shared.counters.set_probe(state) {
        return;
    }
    if let AgentEvent::FailoverProbe { state: "detached", reason, .. } = &event {
        tracing::error!("FAILOVER PROBE DETACHED: {reason}");
    }
    shared.emit(event);
    // The fast words speak for their bonds only while the probe writes them: epochs follow.
    crate::fast_words::sync(shared);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps() {
        assert_eq!(step(Some(7), Some(7)), Step::Keep);
        assert_eq!(step(None, None), Step::Keep);
        assert_eq!(step(Some(7), None), Step::Gone);
        assert_eq!(step(Some(7), Some(9)), Step::Reload(9));
        assert_eq!(step(None, Some(9)), Step::Reload(9));
    }

    #[test]
    fn identity_needs_a_live_module() {
        let dir = std::env::temp_dir().join(format!("exabond-module-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        assert_eq!(module_identity(&dir), None, "no initstate file");
        std::fs::write(dir.join("initstate"), "coming\n").unwrap();
        assert_eq!(module_identity(&dir), None, "not live yet");
        std::fs::write(dir.join("initstate"), "live\n").unwrap();
        assert_eq!(module_identity(&dir), Some(std::fs::metadata(&dir).unwrap().ino()));
        std::fs::remove_dir_all(&dir).unwrap();
        assert_eq!(module_identity(&dir), None, "module gone");
    }

    #[test]
    fn states() {
        assert_eq!(ProbeState::Detached("x".into()).as_str(), "detached");
        assert_eq!(ProbeState::Detached("x".into()).reason(), "x");
        assert_eq!(ProbeState::Attached.reason(), "");
        assert_eq!(ProbeState::default(), ProbeState::Off);
    }
}
