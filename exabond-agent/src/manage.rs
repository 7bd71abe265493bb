//! Placing bonds under management and removing them: the operations behind `--bond`, the control socket's
//! `+bond` / `-bond`, and re-adoption after a restart; and the control socket's read-only answers.

use netlink_packet_route::link::LinkMessage;

use crate::bond_view::{self, BondView};
use crate::enforcement::{Enforcement, EnforcementError};
use crate::exit_code::Exit;
use crate::policy::{check_manage, ManageError, MemberError};
use crate::shared::Shared;

/// A refused or failed control request: message and exit code.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// A manage-time check failed.
    #[error(transparent)]
    Manage(#[from] ManageError),
    /// A device may not join a managed bond.
    #[error(transparent)]
    Member(#[from] MemberError),
    /// The link dump failed.
    #[error(transparent)]
    Netlink(#[from] rtnetlink::Error),
    /// The bond passed the checks but its view could not be built.
    #[error("bond view vanished")]
    BondVanished,
    /// The bond cannot be placed under the vetoes.
    #[error(transparent)]
    Enforcement(#[from] EnforcementError),
    /// The page cannot be created.
    #[error(transparent)]
    Page(#[from] exabond_common::writer::WriteError),
}

impl ControlError {
    /// The CLI exit code.
    #[must_use]
    pub const fn exit_code(&self) -> Exit {
        match self {
            Self::Manage(e) => e.exit_code(),
            Self::Member(e) => e.exit_code(),
            Self::Netlink(_) | Self::BondVanished | Self::Enforcement(_) | Self::Page(_) => Exit::Internal,
        }
    }
}

/// Check and manage bond `name` from a fresh link dump.
///
/// # Errors
/// [`ControlError`] naming the refused check.
pub async fn manage(shared: &Shared, name: &str) -> Result<String, ControlError> {
    crate::ifname::validate(name).map_err(ManageError::from)?;
    let links = crate::netlink::dump_links(&shared.handle).await?;
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
    // Read before the publisher lock (ioctls, and logs for a port that does not answer).
    let locs = shared.locations(view.as_ref());
    // Lock order: enforcement, then publisher.
    let mut enf = shared.enforcement();
    check_manage(name, msg.is_some(), view.as_ref(), enf.policy(), &kind_of)?;
    let view = view.ok_or(ControlError::BondVanished)?;
    let mut publisher = shared.publisher();
    if publisher.is_managed(view.ifindex) {
        return Ok(format!("{name} is already managed"));
    }
    enf.manage(&view)?;
    let (page, notes) = publisher.manage(&view, &locs)?;
    enf.sync_pages(&publisher.page_inodes());
    drop(publisher);
    drop(enf);
    shared.report(notes);
    crate::fast_words::sync(shared);
    let active = page.active_name().unwrap_or("none");
    Ok(format!("managing {name} (active {active})"))
}

/// Stop managing bond `name` (retire and remove its page, drop its guards).
///
/// # Errors
/// An invalid name.
pub fn unmanage(shared: &Shared, name: &str) -> Result<String, ControlError> {
    crate::ifname::validate(name).map_err(ManageError::from)?;
    let mut enf = shared.enforcement();
    let mut publisher = shared.publisher();
    let Some(ifindex) = publisher.ifindex_of(name) else {
        return Ok(format!("{name} was not managed"));
    };
    let notes = publisher.unmanage(ifindex).unwrap_or_default();
    enf.unmanage(ifindex);
    enf.sync_pages(&publisher.page_inodes());
    drop(publisher);
    drop(enf);
    shared.report(notes);
    crate::fast_words::sync(shared);
    Ok(format!("{name} is no longer managed"))
}

/// May device `name` join a managed bond? The agent's current verdict, the one the kernel-side veto applies.
///
/// # Errors
/// [`ControlError::Member`] saying why not (or that the agent knows no such device).
pub fn member(shared: &Shared, name: &str) -> Result<String, ControlError> {
    let enf = shared.enforcement();
    Ok(crate::policy::member_answer(name, enf.verdict_by_name(name))?)
}

/// The managed bonds, separated by spaces (the original's `exabond_masters` read).
#[must_use]
pub fn list(shared: &Shared) -> String {
    shared.publisher().names().join(" ")
}

/// The agent's state for `exabond status`, as one JSON object.
#[must_use]
pub fn status(shared: &Shared) -> String {
    let (mode, drivers) = {
        let enf = shared.enforcement();
        (enf.mode.as_str(), enf.policy().drivers().to_vec())
    };
    let managed: Vec<(String, u32)> = {
        let p = shared.publisher();
        p.names().into_iter().filter_map(|n| p.ifindex_of(&n).map(|i| (n, i))).collect()
    };
    let bonds: Vec<serde_json::Value> = managed
        .into_iter()
        .map(|(name, ifindex)| {
            serde_json::json!({
                "bond": name,
                "ifindex": ifindex,
                "vetoes": shared.vetoes.get(ifindex),
                "bypasses": shared.counters.bypasses_of(&name),
            })
        })
        .collect();
    let degraded = shared.counters.degraded();
    let probe = shared.counters.probe();
    serde_json::json!({
        "failover_probe": probe.as_str(),
        "failover_probe_reason": probe.reason(),
        "failover_probe_reattaches": shared.counters.probe_reattaches(),
        "agent_pid": std::process::id(),
        "enforcement": mode,
        "degraded": !degraded.is_empty(),
        "degraded_reasons": degraded,
        "netlink_resyncs": shared.counters.resyncs(),
        "member_drivers": drivers,
        "page_dir": shared.page_dir,
        "bonds": bonds,
    })
    .to_string()
}
