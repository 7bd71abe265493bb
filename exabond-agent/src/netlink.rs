//! rtnetlink: link dumps (initial state, poll backstop) and the link notification listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkMessage, NetlinkPayload};
use rtnetlink::Handle;
use tokio_util::sync::CancellationToken;

use exabond_common::page::ChangeSource;

use crate::active_check::ActiveFiles;
use crate::agent_events::AgentEvent;
use crate::bond_view::{controller, BondView};
use crate::publisher::ViewOutcome;
use crate::report::Notes;
use crate::shared::Shared;

/// Dump every link (`RTM_GETLINK`, `NLM_F_DUMP`). A dump interrupted by concurrent link changes (the kernel
/// flags it and it surfaces as EBUSY) is retried.
///
/// # Errors
/// The rtnetlink error, after a few retries.
pub async fn dump_links(handle: &Handle) -> Result<Vec<LinkMessage>, rtnetlink::Error> {
    let mut attempt = 0;
    loop {
        match handle.link().get().execute().try_collect().await {
            Ok(v) => return Ok(v),
            Err(e) if attempt < 10 => {
                attempt += 1;
                tracing::debug!("link dump failed ({e}), retrying");
                tokio::time::sleep(Duration::from_millis(2 * attempt)).await;
            }
            Err(e) => return Err(e),
        }
    }
}

/// Recompute every device's member verdict from a full dump (and the publisher's forbidden set with them).
pub fn sync_verdicts(shared: &Shared, links: &[LinkMessage]) {
    shared.change_verdicts(|enf| enf.sync_all(links));
}

/// Re-read every managed bond and publish what changed, crediting `source`. Retries a dump that may
/// predate an eBPF event already on the page. Without the BPF LSM, reverts forbidden changes it sees.
///
/// # Errors
/// The rtnetlink error.
pub async fn refresh(shared: &Shared, source: ChangeSource) -> Result<(), rtnetlink::Error> {
    for _attempt in 0..20 {
        let gens: Vec<(u32, u64)> = {
            let p = shared.publisher();
            p.managed().map(|i| (i, p.ebpf_gen(i))).collect()
        };
        if gens.is_empty() {
            return Ok(());
        }
        let dump_ns = exabond_common::clock::monotonic_ns();
        let links = dump_links(&shared.handle).await?;
        let bonds: Vec<(u32, u64, Option<BondView>)> =
            gens.into_iter().map(|(ifindex, gen)| (ifindex, gen, BondView::from_links(ifindex, &links))).collect();
        let locs = shared.locations(bonds.iter().filter_map(|(_, _, v)| v.as_ref()));
        let mut stale = false;
        let mut views = Vec::new();
        let mut gone = Vec::new();
        let mut notes = Notes::new();
        {
            let mut p = shared.publisher();
            for (ifindex, gen, view) in bonds {
                if let Some(view) = view {
                    let (outcome, n) = p.on_view(&view, &locs, source, gen, dump_ns);
                    stale |= outcome == ViewOutcome::Stale;
                    notes.extend(n);
                    views.push(view);
                } else {
                    notes.extend(p.bond_gone(ifindex));
                    gone.push(ifindex);
                }
            }
        }
        shared.report(notes);
        let mut reverts = Vec::new();
        {
            // Lock order: enforcement, then publisher.
            let mut enf = shared.enforcement();
            if !gone.is_empty() {
                for i in gone {
                    enf.unmanage(i);
                }
                enf.sync_pages(&shared.publisher().page_inodes());
            }
            for v in &views {
                enf.rename_bond(v.ifindex, &v.name);
                reverts.extend(enf.revert(v).into_iter().map(|action| (v.name.clone(), action)));
            }
        }
        for (bond, action) in reverts {
            tracing::warn!(bond = %bond, "detect-and-revert: {action}");
            shared.emit(AgentEvent::Revert { bond, action });
        }
        if !stale {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// One rtnetlink notification, as the multicast connection delivers it.
pub type Notification = (NetlinkMessage<RouteNetlinkMessage>, rtnetlink::sys::SocketAddr);

/// Listen to `RTNLGRP_LINK` notifications: every device's verdict follows its changes, and each burst that
/// concerns a managed bond (the bond, a member, a device naming it as master) triggers one refresh
/// credited to netlink.
pub async fn listen(
    shared: Arc<Shared>,
    mut messages: futures::channel::mpsc::UnboundedReceiver<Notification>,
    cancel: CancellationToken,
) {
    use futures::StreamExt as _;
    loop {
        let first = tokio::select! {
            () = cancel.cancelled() => return,
            m = messages.next() => m,
        };
        let Some(first) = first else {
            tracing::error!("rtnetlink notification stream ended; the poll backstop continues");
            return;
        };
        let mut relevant = note(&shared, &first.0);
        // Coalesce a burst (a failover raises several notifications).
        while let Ok(m) = messages.try_recv() {
            relevant |= note(&shared, &m.0);
        }
        if relevant {
            if let Err(e) = refresh(&shared, ChangeSource::Netlink).await {
                tracing::warn!("rtnetlink refresh failed: {e}");
            }
        }
    }
}

/// Track one notification; true if it concerns a managed bond.
fn note(shared: &Shared, msg: &NetlinkMessage<RouteNetlinkMessage>) -> bool {
    match &msg.payload {
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::NewLink(l)) => {
            shared.change_verdicts(|enf| enf.sync_link(l));
            shared.publisher().is_relevant(l.header.index, controller(l))
        }
        NetlinkPayload::InnerMessage(RouteNetlinkMessage::DelLink(l)) => {
            shared.change_verdicts(|enf| enf.remove_link(l.header.index));
            shared.publisher().is_relevant(l.header.index, controller(l))
        }
        _ => false,
    }
}

/// A full re-read at least this often, even when every bond's sysfs `active_slave` agrees with its page
/// (member link states and counters change without a failover).
const FULL_REFRESH_EVERY: Duration = Duration::from_millis(500);

/// The poll backstop: every MIN(miimon, `arp_interval`) of the managed bonds (200 ms by default, or
/// `override_ms`), compare each bond's active slave (sysfs) with its page, re-read everything over
/// rtnetlink when one differs (or every [`FULL_REFRESH_EVERY`]), and refresh the heartbeat. The cheap check
/// ([`ActiveFiles`]: one pread(2) per bond) keeps the agent's idle cost low with many bonds polled every
/// 10 ms.
pub async fn poll(shared: Arc<Shared>, override_ms: Option<u32>, cancel: CancellationToken) {
    let mut last_full = std::time::Instant::now();
    let mut files = ActiveFiles::new(Path::new("/sys/class/net"));
    loop {
        let ms = override_ms.unwrap_or_else(|| shared.publisher().poll_interval_ms()).max(1);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(u64::from(ms))) => {}
        }
        let actives = shared.publisher().actives();
        if last_full.elapsed() >= FULL_REFRESH_EVERY || !files.all_match(&actives) {
            if last_full.elapsed() >= FULL_REFRESH_EVERY {
                // Pages written by someone else through a mapping or write(2) (no inotify event for those).
                crate::page_watch::verify(&shared);
            }
            last_full = std::time::Instant::now();
            if let Err(e) = refresh(&shared, ChangeSource::Poll).await {
                tracing::warn!("poll: rtnetlink dump failed: {e}");
            }
        }
        shared.publisher().heartbeat();
    }
}
