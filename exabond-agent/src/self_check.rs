//! The enforcement self-check: every [`EVERY`], are the agent's pins under `/sys/fs/bpf/exabond` still
//! there and still its own objects, are its BPF LSM links attached, and do the maps hold what it wrote?
//! A pin removed (or replaced by another object) is pinned again from the descriptor the agent holds (it
//! opened every pin right after loading, so a removed link pin does not even detach the veto); a map
//! entry changed behind its back is rewritten (`Enforcement::audit_maps`). Each repair is logged at error
//! level, counted (`exabond_self_check_repairs_total{what}`) and sent to `exabond watch`. What cannot be
//! repaired makes enforcement *degraded* (`exabond status`, `exabond_enforcement_degraded`, a `watch`
//! event) until a later check finds it right again. The same task keeps the failover kprobes attached
//! across a reload of the bonding module (`failover_probes.rs`).

use std::os::fd::{AsFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::agent_events::AgentEvent;
use crate::bpf_obj;
use crate::shared::Shared;

/// How often the self-check runs.
pub const EVERY: Duration = Duration::from_secs(2);

/// One pinned object the agent holds a descriptor of.
struct Held {
    /// File name under the pin directory.
    name: String,
    fd: OwnedFd,
    id: u32,
    /// An LSM link (`link-<hook>`), not a map.
    link: bool,
}

/// The agent's pins, each with a descriptor of its object.
pub struct Pins {
    dir: PathBuf,
    held: Vec<Held>,
}

/// What one look at the pins found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct PinCheck {
    /// Put right.
    pub repaired: Vec<String>,
    /// Not put right.
    pub failed: Vec<String>,
}

impl PinCheck {
    fn record(
        &mut self,
        r: std::io::Result<()>,
        done: impl FnOnce() -> String,
        failed: impl FnOnce(std::io::Error) -> String,
    ) {
        match r {
            Ok(()) => self.repaired.push(done()),
            Err(e) => self.failed.push(failed(e)),
        }
    }
}

impl Pins {
    /// Open every pin in `dir` (call it right after loading: they are this agent's objects). A pin that
    /// cannot be opened is logged and left out.
    #[must_use]
    pub fn open(dir: &Path) -> Self {
        let mut held = Vec::new();
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .map(|d| d.flatten().filter_map(|e| e.file_name().into_string().ok()).collect())
            .unwrap_or_default();
        names.sort();
        for name in names {
            let path = dir.join(&name);
            match bpf_obj::open_pin(&path).and_then(|fd| bpf_obj::info(fd.as_fd()).map(|(id, _)| (fd, id))) {
                Ok((fd, id)) => held.push(Held { link: name.starts_with("link-"), name, fd, id }),
                Err(e) => tracing::error!(pin = %path.display(), "self-check: cannot open the pin: {e}"),
            }
        }
        tracing::info!(pins = held.len(), dir = %dir.display(), "self-check: holding every pinned object");
        Self { dir: dir.to_owned(), held }
    }

    /// Look at every pin; re-pin what is missing or replaced.
    #[must_use]
    pub fn check(&self) -> PinCheck {
        let mut c = PinCheck::default();
        for h in &self.held {
            let path = self.dir.join(&h.name);
            let shown = path.display();
            let now = bpf_obj::open_pin(&path).and_then(|fd| bpf_obj::info(fd.as_fd()));
            match now {
                Ok((id, _)) if id == h.id => {}
                Ok((id, _)) => {
                    let r = std::fs::remove_file(&path).and_then(|()| bpf_obj::pin(h.fd.as_fd(), &path));
                    c.record(
                        r,
                        || format!("pin {shown} held another object (id {id}): re-pinned ours (id {})", h.id),
                        |e| format!("pin {shown} holds another object (id {id}), cannot re-pin ours: {e}"),
                    );
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    let r = std::fs::create_dir_all(&self.dir).and_then(|()| bpf_obj::pin(h.fd.as_fd(), &path));
                    c.record(
                        r,
                        || format!("pin {shown} was removed: re-pinned (id {})", h.id),
                        |e| format!("pin {shown} was removed and cannot be re-pinned: {e}"),
                    );
                }
                Err(e) => c.failed.push(format!("pin {shown}: cannot open it: {e}")),
            }
            if h.link {
                match bpf_obj::info(h.fd.as_fd()) {
                    Ok((_, 0)) => c.failed.push(format!("BPF LSM link {} is detached from its program", h.name)),
                    Ok(_) => {}
                    Err(e) => c.failed.push(format!("BPF LSM link {}: {e}", h.name)),
                }
            }
        }
        c
    }
}

/// Every how many self-checks the per-device maps are audited too (the others audit only the small maps:
/// see `Enforcement::audit_maps`).
pub const FULL_AUDIT_EVERY: u32 = 15;

/// One self-check: pins, then maps (all of them if `full`); repairs reported, the degraded state updated.
pub fn check_once(shared: &Shared, pins: Option<&Pins>, full: bool) {
    let pin = pins.map(Pins::check).unwrap_or_default();
    let maps = {
        // Lock order: enforcement, then publisher.
        let mut enf = shared.enforcement();
        let pages = shared.publisher().page_inodes();
        enf.audit_maps(&pages, full)
    };
    for (what, list) in [("pin", &pin.repaired), ("map", &maps.repaired)] {
        for r in list {
            tracing::error!(what, "SELF-CHECK REPAIR: {r}");
            shared.counters.count_repair(what);
            shared.emit(AgentEvent::SelfCheck { what: r.clone(), action: format!("{what} repaired") });
        }
    }
    let reasons: Vec<String> = pin.failed.into_iter().chain(maps.failed).collect();
    if shared.counters.set_degraded(reasons.clone()) {
        if reasons.is_empty() {
            tracing::warn!("enforcement is no longer degraded: the self-check finds everything in place");
            shared.emit(AgentEvent::Enforcement { state: "ok", reasons });
        } else {
            tracing::error!("ENFORCEMENT DEGRADED: {}", reasons.join("; "));
            shared.emit(AgentEvent::Enforcement { state: "degraded", reasons });
        }
    }
}

/// Run the self-check every [`EVERY`] until `cancel`; with the kprobes on the bonding module, which it
/// attaches again when the module is loaded again ([`crate::failover_probes`]). The object (and with it
/// the kprobes) is dropped when the task ends.
pub async fn run(
    shared: Arc<Shared>,
    pins: Option<Pins>,
    mut probes: Option<crate::failover_probes::Probes>,
    cancel: CancellationToken,
) {
    for round in 1u32.. {
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
        check_once(&shared, pins.as_ref(), round % FULL_AUDIT_EVERY == 0);
        if let Some(p) = probes.as_mut() {
            p.check(&shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_held_nothing_found() {
        let dir = std::env::temp_dir().join(format!("exabond-selfcheck-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("not-a-pin"), b"x").unwrap();
        // A plain file is no BPF object: it cannot be opened as one, so it is not held.
        let pins = Pins::open(&dir);
        assert!(pins.held.is_empty());
        assert_eq!(pins.check(), PinCheck::default());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
