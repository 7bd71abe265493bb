//! rtnetlink: link dumps (initial state, poll backstop) and the link notification listener.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::TryStreamExt as _;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::NetlinkPayload;
use rtnetlink::Handle;
use tokio_util::sync::CancellationToken;

use exabond_common::page::ChangeSource;

use crate::bond_view::{controller, BondView};
use crate::publisher::{Publisher, ViewOutcome};

/// Dump every link (RTM_GETLINK, NLM_F_DUMP).
///
/// # Errors
/// The rtnetlink error.
pub async fn dump_links(handle: &Handle) -> Result<Vec<LinkMessage>, rtnetlink::Error> {
    handle.link().get().execute().try_collect().await
}

fn lock(p: &Mutex<Publisher>) -> std::sync::MutexGuard<'_, Publisher> {
    // A panic while holding the lock leaves pages consistent (each publish is complete): keep going.
    p.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Re-read every managed bond and publish what changed, crediting `source`. Retries a dump that may
/// predate an eBPF event already on the page.
///
/// # Errors
/// The rtnetlink error.
pub async fn refresh(
    publisher: &Mutex<Publisher>,
    handle: &Handle,
    source: ChangeSource,
) -> Result<(), rtnetlink::Error> {
    for _attempt in 0..20 {
        let gens: Vec<(u32, u64)> = {
            let p = lock(publisher);
            p.managed().map(|i| (i, p.ebpf_gen(i))).collect()
        };
        let dump_ns = exabond_common::clock::monotonic_ns();
        let links = dump_links(handle).await?;
        let mut stale = false;
        {
            let mut p = lock(publisher);
            for (ifindex, gen) in gens {
                match BondView::from_links(ifindex, &links) {
                    Some(view) => {
                        stale |= p.on_view(&view, source, gen, dump_ns) == ViewOutcome::Stale
                    }
                    None => p.bond_gone(ifindex),
                }
            }
        }
        if !stale {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok(())
}

/// Listen to RTNLGRP_LINK notifications; each burst that concerns a managed bond (the bond, a member, a
/// device naming a managed bond as master) triggers one refresh credited to netlink.
pub async fn listen(
    publisher: Arc<Mutex<Publisher>>,
    handle: Handle,
    mut messages: futures::channel::mpsc::UnboundedReceiver<(
        rtnetlink::packet_core::NetlinkMessage<RouteNetlinkMessage>,
        rtnetlink::sys::SocketAddr,
    )>,
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
        let mut relevant = concerns_managed(&publisher, &first.0);
        // Coalesce a burst (a failover raises several notifications).
        while let Ok(m) = messages.try_recv() {
            relevant |= concerns_managed(&publisher, &m.0);
        }
        if relevant {
            if let Err(e) = refresh(&publisher, &handle, ChangeSource::Netlink).await {
                tracing::warn!("rtnetlink refresh failed: {e}");
            }
        }
    }
}

fn concerns_managed(
    publisher: &Mutex<Publisher>,
    msg: &rtnetlink::packet_core::NetlinkMessage<RouteNetlinkMessage>,
) -> bool {
    match &msg.payload {
        NetlinkPayload::InnerMessage(
            RouteNetlinkMessage::NewLink(l) | RouteNetlinkMessage::DelLink(l),
        ) => lock(publisher).is_relevant(l.header.index, controller(l)),
        _ => false,
    }
}

/// The poll backstop: every MIN(miimon, arp_interval) of the managed bonds (200 ms by default, or
/// `override_ms`), re-read the bonds and refresh the heartbeat.
pub async fn poll(
    publisher: Arc<Mutex<Publisher>>,
    handle: Handle,
    override_ms: Option<u32>,
    cancel: CancellationToken,
) {
    loop {
        let ms = override_ms
            .unwrap_or_else(|| lock(&publisher).poll_interval_ms())
            .max(1);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(u64::from(ms))) => {}
        }
        if let Err(e) = refresh(&publisher, &handle, ChangeSource::Poll).await {
            tracing::warn!("poll: rtnetlink dump failed: {e}");
        }
        lock(&publisher).heartbeat();
    }
}
