//! Placing bonds under management and removing them: the operations behind `--bond`, the control socket's
//! `+bond` / `-bond`, and re-adoption after a restart.

use std::sync::Arc;

use netlink_packet_route::link::LinkMessage;
use rtnetlink::Handle;

use crate::bond_view::{self, BondView};
use crate::enforcement::Enforcement;
use crate::pi_mutex::{PiMutex, PiMutexGuard};
use crate::policy::{check_manage, ManageError};
use crate::publisher::Publisher;

/// Exit code for internal failures (netlink, page creation).
pub const EXIT_INTERNAL: u8 = 1;

/// What the agent shares between its tasks.
pub struct Shared {
    /// Pages. A priority-inheritance lock: the real-time eBPF event waiters take it too.
    pub publisher: Arc<PiMutex<Publisher>>,
    /// Policy state and maps.
    pub enforcement: Arc<PiMutex<Enforcement>>,
    /// rtnetlink requests.
    pub handle: Handle,
    /// Directory of the pages.
    pub page_dir: std::path::PathBuf,
}

/// Lock one of the agent's shared structures (a priority-inheritance mutex, see [`PiMutex`]).
pub fn lock<T>(m: &PiMutex<T>) -> PiMutexGuard<'_, T> {
    m.lock()
}

/// A refused or failed control request: message and exit code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A manage-time check failed.
    #[error(transparent)]
    Manage(#[from] ManageError),
    /// A device may not join a managed bond.
    #[error(transparent)]
    Member(#[from] crate::policy::MemberError),
    /// Something else failed.
    #[error("{0}")]
    Internal(String),
}

impl ControlError {
    /// The CLI exit code.
    #[must_use]
    pub const fn exit_code(&self) -> u8 {
        match self {
            Self::Manage(e) => e.exit_code(),
            Self::Member(e) => e.exit_code(),
            Self::Internal(_) => EXIT_INTERNAL,
        }
    }
}

fn internal<E: std::fmt::Display>(e: E) -> ControlError {
    ControlError::Internal(e.to_string())
}

/// Check and manage bond `name` from a fresh link dump.
///
/// # Errors
/// [`ControlError`] naming the refused check.
pub async fn manage(shared: &Shared, name: &str) -> Result<String, ControlError> {
    crate::ifname::validate(name).map_err(ManageError::from)?;
    let links = crate::netlink::dump_links(&shared.handle).await.map_err(internal)?;
    manage_from(shared, name, &links)
}

/// Like [`manage`] with a dump already at hand.
///
/// # Errors
/// As [`manage`].
pub fn manage_from(shared: &Shared, name: &str, links: &[LinkMessage]) -> Result<String, ControlError> {
    let msg = links.iter().find(|m| bond_view::name(m).as_deref() == Some(name));
    let view = msg.and_then(|m| BondView::from_links(m.header.index, links));
    let kind_of = |member: &str| {
        let kind = links
            .iter()
            .find(|m| bond_view::name(m).as_deref() == Some(member))
            .map(bond_view::link_kind)
            .unwrap_or_default();
        Enforcement::device_info(member, &kind)
    };
    let mut enf = lock(&shared.enforcement);
    check_manage(name, msg.is_some(), view.as_ref(), enf.policy(), &kind_of)?;
    let view = view.ok_or_else(|| internal("bond view vanished"))?;
    let mut publisher = lock(&shared.publisher);
    if publisher.is_managed(view.ifindex) {
        return Ok(format!("{name} is already managed"));
    }
    enf.manage(&view).map_err(internal)?;
    let page = publisher.manage(&view).map_err(internal)?;
    let active = page.active_name().unwrap_or("none").to_owned();
    enf.sync_pages(&publisher.page_inodes());
    Ok(format!("managing {name} (active {active})"))
}

/// Stop managing bond `name` (retire and remove its page, drop its guards).
///
/// # Errors
/// An invalid name.
pub fn unmanage(shared: &Shared, name: &str) -> Result<String, ControlError> {
    crate::ifname::validate(name).map_err(ManageError::from)?;
    let mut enf = lock(&shared.enforcement);
    let mut publisher = lock(&shared.publisher);
    let Some(ifindex) = publisher.ifindex_of(name) else {
        return Ok(format!("{name} was not managed"));
    };
    publisher.unmanage(ifindex);
    enf.unmanage(ifindex);
    enf.sync_pages(&publisher.page_inodes());
    Ok(format!("{name} is no longer managed"))
}

/// May device `name` join a managed bond? The agent's current verdict, the one the kernel-side veto applies.
///
/// # Errors
/// [`ControlError::Member`] saying why not (or that the agent knows no such device).
pub fn member(shared: &Shared, name: &str) -> Result<String, ControlError> {
    let enf = lock(&shared.enforcement);
    Ok(crate::policy::member_answer(name, enf.verdict_by_name(name))?)
}

/// The managed bonds, separated by spaces (the original's `exabond_masters` read).
#[must_use]
pub fn list(shared: &Shared) -> String {
    lock(&shared.publisher).names().join(" ")
}

/// The agent's state for `exabond status`, as one JSON object.
#[must_use]
pub fn status(shared: &Shared, page_dir: &std::path::Path) -> String {
    let enf = lock(&shared.enforcement);
    let p = lock(&shared.publisher);
    let bonds: Vec<serde_json::Value> = p
        .names()
        .into_iter()
        .filter_map(|n| p.ifindex_of(&n).map(|i| (n, i)))
        .map(|(name, ifindex)| serde_json::json!({ "bond": name, "ifindex": ifindex, "vetoes": p.vetoes(ifindex) }))
        .collect();
    serde_json::json!({
        "agent_pid": std::process::id(),
        "enforcement": enf.mode.as_str(),
        "member_drivers": enf.policy().drivers(),
        "page_dir": page_dir,
        "bonds": bonds,
    })
    .to_string()
}
