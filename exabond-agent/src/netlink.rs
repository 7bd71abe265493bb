//! rtnetlink: link dumps (initial state, poll backstop) and the link notification listener.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt as _;
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::packet_core::{NetlinkBuffer, NetlinkMessage, NetlinkPayload};
use rtnetlink::Handle;
use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use exabond_common::page::ChangeSource;

use crate::active_check::ActiveFiles;
use crate::agent_events::AgentEvent;
use crate::bond_view::{controller, BondView};
use crate::bypass;
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

/// Judge the devices of `links` that have no verdict yet, or a verdict under another name.
fn judge_unknown(shared: &Shared, links: &[LinkMessage]) {
    let unknown: Vec<&LinkMessage> = {
        let enf = shared.enforcement();
        links.iter().filter(|l| enf.verdict(l.header.index).is_none()).collect()
    };
    if !unknown.is_empty() {
        shared.change_verdicts(|enf| unknown.into_iter().for_each(|l| enf.sync_link(l)));
    }
}

/// How a refresh credited to `source` saw what it found, for the bypass reports.
const fn seen_by(source: ChangeSource) -> &'static str {
    match source {
        ChangeSource::Poll => "poll",
        ChangeSource::Manage => "start-up",
        _ => "rtnetlink",
    }
}

/// Re-read every managed bond and publish what changed, crediting `source`. Retries a dump that may
/// predate an eBPF event already on the page. In every enforcement mode, repairs forbidden members and
/// modes it finds on a managed bond (see `bypass.rs`).
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
            crate::mac_pitfall::on_dump(shared, &[]);
            return Ok(());
        }
        let dump_ns = exabond_common::clock::monotonic_ns();
        let links = dump_links(&shared.handle).await?;
        crate::mac_pitfall::on_dump(shared, &links);
        // Every device in the dump has a verdict before a view is published: a member enslaved before its
        // own notification was read is judged here (until then the forbidden set keeps it off the pages).
        judge_unknown(shared, &links);
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
        let found = {
            // Lock order: enforcement, then publisher.
            let mut enf = shared.enforcement();
            if !gone.is_empty() {
                for i in gone {
                    enf.unmanage(i);
                }
                enf.sync_pages(&shared.publisher().page_inodes());
            }
            let mut found = Vec::new();
            for v in &views {
                enf.rename_bond(v.ifindex, &v.name);
                found.extend(bypass::find_managed(&enf, v));
            }
            found
        };
        if !found.is_empty() {
            bypass::report(shared, &bypass::repair(shared, found), seen_by(source));
        }
        if !stale {
            crate::fast_words::sync(shared);
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    crate::fast_words::sync(shared);
    Ok(())
}

/// The receive buffer asked for the listener's socket (with `SO_RCVBUFFORCE`, so above `rmem_max`): room
/// for a burst of several thousand link notifications while the agent is busy.
pub const LISTENER_RCVBUF: usize = 8 << 20;
/// The largest datagram read at once; a longer one (never seen for link notifications) counts as lost.
const DATAGRAM_MAX: usize = 64 << 10;

/// The socket of the rtnetlink listener: `NETLINK_ROUTE` subscribed to `RTNLGRP_LINK`, non-blocking, read
/// by [`listen`]. Opened before the initial dump, so nothing between that dump and the listener is missed.
pub struct LinkSocket(AsyncFd<netlink_sys::Socket>);

impl LinkSocket {
    /// Open and subscribe; `rcvbuf` replaces [`LISTENER_RCVBUF`] (the e2e suite shrinks it to provoke an
    /// overrun).
    ///
    /// # Errors
    /// The socket cannot be created, bound or subscribed.
    pub fn open(rcvbuf: Option<usize>) -> std::io::Result<Self> {
        let mut sock = netlink_sys::Socket::new(netlink_sys::protocols::NETLINK_ROUTE)?;
        sock.bind(&netlink_sys::SocketAddr::new(0, 0))?;
        sock.add_membership(libc::RTNLGRP_LINK)?;
        sock.set_non_blocking(true)?;
        let size = rcvbuf.unwrap_or(LISTENER_RCVBUF);
        if let Err(e) = set_rcvbuf(&sock, size, rcvbuf.is_none()) {
            tracing::warn!(
                "rtnetlink listener: cannot set its receive buffer to {size} bytes ({e}); a burst of link changes \
                 may overrun it (then the agent resynchronises)"
            );
        }
        // SAFETY: the socket owns its descriptor and moves into the AsyncFd, which it outlives nowhere.
        Ok(Self(unsafe { AsyncFd::register(sock) }?))
    }
}

/// `SO_RCVBUFFORCE` (needs `CAP_NET_ADMIN`; above `net.core.rmem_max`) when `force`, else `SO_RCVBUF`.
fn set_rcvbuf(sock: &netlink_sys::Socket, size: usize, force: bool) -> std::io::Result<()> {
    use std::os::fd::AsRawFd as _;
    let v = libc::c_int::try_from(size).unwrap_or(libc::c_int::MAX);
    let opt = if force { libc::SO_RCVBUFFORCE } else { libc::SO_RCVBUF };
    // SAFETY: a valid socket fd and a c_int option value of the right length.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            opt,
            (&raw const v).cast(),
            libc::socklen_t::try_from(std::mem::size_of::<libc::c_int>()).unwrap_or(4),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One read of the listener's socket, classified.
#[derive(Debug)]
enum Received {
    /// A datagram of this length.
    Data(usize),
    /// Notifications were lost: the kernel said ENOBUFS (receive buffer overrun), or a datagram did not
    /// fit.
    Lost,
    /// Nothing more to read now.
    Drained,
    /// Another error.
    Failed(std::io::Error),
}

fn classify(r: std::io::Result<usize>) -> Received {
    match r {
        Ok(n) if n > DATAGRAM_MAX => Received::Lost,
        Ok(n) => Received::Data(n),
        Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => Received::Lost,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => Received::Drained,
        Err(e) => Received::Failed(e),
    }
}

/// What one burst of reads calls for.
#[derive(Debug, Default, PartialEq, Eq)]
struct Burst {
    /// A notification concerned a managed bond.
    relevant: bool,
    /// Notifications were lost.
    lost: bool,
}

/// What the listener does after a burst.
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Nothing concerned a managed bond.
    Nothing,
    /// Re-read the managed bonds.
    Refresh,
    /// Notifications were lost: re-judge every device from a full dump, then re-read the managed bonds.
    Resync,
}

impl Burst {
    const fn action(&self) -> Action {
        if self.lost {
            Action::Resync
        } else if self.relevant {
            Action::Refresh
        } else {
            Action::Nothing
        }
    }
}

/// Listen to `RTNLGRP_LINK` notifications: every device's verdict follows its changes, and each burst that
/// concerns a managed bond (the bond, a member, a device naming it as master) triggers one refresh
/// credited to netlink. A receive buffer overrun (ENOBUFS: notifications lost) is logged and followed by a
/// resynchronisation from a full dump ([`resync`]).
pub async fn listen(shared: Arc<Shared>, sock: LinkSocket, cancel: CancellationToken) {
    let mut buf: Vec<u8> = Vec::with_capacity(DATAGRAM_MAX);
    loop {
        let guard = tokio::select! {
            () = cancel.cancelled() => return,
            g = sock.0.readable() => g,
        };
        let mut guard = match guard {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("rtnetlink listener: {e}; the poll backstop continues");
                return;
            }
        };
        // Drain what is there (a failover raises several notifications), then act once.
        let mut burst = Burst::default();
        loop {
            buf.clear();
            let r = match guard.try_io(|s| s.get_ref().recv(&mut buf, libc::MSG_TRUNC)) {
                Ok(r) => r,
                Err(_would_block) => break,
            };
            match classify(r) {
                Received::Data(n) => burst.relevant |= note_datagram(&shared, &buf[..n]),
                Received::Lost => burst.lost = true,
                Received::Drained => break,
                Received::Failed(e) => {
                    tracing::error!("rtnetlink listener: recv: {e}; the poll backstop continues");
                    return;
                }
            }
        }
        drop(guard);
        let r = match burst.action() {
            Action::Nothing => Ok(()),
            Action::Refresh => refresh(&shared, ChangeSource::Netlink).await,
            Action::Resync => {
                tracing::warn!(
                    "rtnetlink notifications were LOST (receive buffer overrun, ENOBUFS): resynchronising every \
                     device and managed bond from a full link dump"
                );
                resync(&shared).await
            }
        };
        if let Err(e) = r {
            tracing::warn!("rtnetlink refresh failed: {e}");
        }
    }
}

/// After lost notifications: every verdict from a full dump (devices created, renamed or deleted meanwhile),
/// then every managed bond re-read (reverting what got past the vetoes). Logged and counted.
///
/// # Errors
/// The rtnetlink error.
pub async fn resync(shared: &Shared) -> Result<(), rtnetlink::Error> {
    let links = dump_links(&shared.handle).await?;
    sync_verdicts(shared, &links);
    shared.counters.count_resync();
    tracing::warn!(devices = links.len(), "rtnetlink resynchronised: verdicts of {} devices re-judged", links.len());
    shared.emit(AgentEvent::Resync { devices: links.len() });
    refresh(shared, ChangeSource::Netlink).await
}

/// Track the notifications of one datagram; true if one concerns a managed bond.
fn note_datagram(shared: &Shared, mut data: &[u8]) -> bool {
    let mut relevant = false;
    while !data.is_empty() {
        let Ok(len) = NetlinkBuffer::new_checked(data).map(|b| b.length() as usize) else { break };
        let end = len.min(data.len());
        match NetlinkMessage::<RouteNetlinkMessage>::deserialize(&data[..end]) {
            Ok(m) => relevant |= note(shared, &m),
            Err(e) => tracing::debug!("rtnetlink listener: undecodable notification: {e}"),
        }
        // Messages are 4-byte aligned.
        data = data.get(end.next_multiple_of(4).max(16)..).unwrap_or_default();
    }
    relevant
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

/// A full re-read at least this often when the poll checks sysfs (no fast words): member link states and
/// counters change without a failover.
const FULL_REFRESH_EVERY: Duration = Duration::from_millis(500);
/// A full re-read at least this often while the kernel publishes the fast words: the rtnetlink listener
/// (which resynchronises after a loss) carries member changes, so this is only the deepest backstop (and the
/// latest a MAC pitfall caused by a device outside the bond is seen).
const DEEP_REFRESH_EVERY: Duration = Duration::from_secs(60);
/// A mismatch between a fast word and its page counts only once the kernel's change is this old (the page
/// follows the kernel's word within the agent's latency).
const FAST_SETTLE_NS: u64 = 50_000_000;
/// At most one repair of mismatches this often (a mismatch that outlives a repair is not hammered).
const REPAIR_BACKOFF: Duration = Duration::from_millis(200);
/// The poll's period while the kernel publishes the fast words, unless `--poll-ms` says otherwise: the
/// original module's period for bonds without a monitor. The failover reaches the pages through the eBPF
/// event and rtnetlink; this check only catches what both missed, and each wake-up has a cost.
pub const FAST_POLL_MS: u32 = 200;

/// The poll's period: `override_ms`, else MIN(miimon, `arp_interval`) of the bonds (`bonds_ms`), at least
/// [`FAST_POLL_MS`] while the fast words are live.
#[must_use]
pub fn poll_period_ms(override_ms: Option<u32>, bonds_ms: u32, fast_live: bool) -> u32 {
    match override_ms {
        Some(ms) => ms,
        None if fast_live => bonds_ms.max(FAST_POLL_MS),
        None => bonds_ms,
    }
    .max(1)
}

/// The poll backstop: every MIN(miimon, `arp_interval`) of the managed bonds (200 ms by default, or
/// `override_ms`; see [`poll_period_ms`] while the fast words are live), check that each bond's page agrees
/// with the kernel, refresh the heartbeat, and re-read everything over rtnetlink when something differs or
/// a full re-read is due.
///
/// While the kernel publishes the fast words the check costs no system call: each page is compared with
/// the slot the failover probe keeps in memory (`fast_words::FastWords::state`). A mismatch (older than
/// [`FAST_SETTLE_NS`]) means a full refresh, and the kernel is asked to re-derive the slots concerned. Without
/// them (no eBPF, or the failover probe detached) it reads each bond's sysfs `active_slave`
/// ([`ActiveFiles`]: one pread(2) per bond), as before.
pub async fn poll(shared: Arc<Shared>, override_ms: Option<u32>, cancel: CancellationToken) {
    let mut last_full = std::time::Instant::now();
    let mut last_verify = std::time::Instant::now();
    let mut last_repair: Option<std::time::Instant> = None;
    // Without the page guard (no BPF LSM) a page written through a mapping is found by this check alone.
    let guarded = shared.enforcement().mode == crate::enforcement::Mode::LsmVeto;
    let verify_every = if guarded { DEEP_REFRESH_EVERY } else { FULL_REFRESH_EVERY };
    let mut files = ActiveFiles::new(Path::new("/sys/class/net"));
    let mut pages = Vec::new();
    loop {
        let live = shared.fast().is_some_and(|f| f.lock().is_live());
        let ms = poll_period_ms(override_ms, shared.publisher().poll_interval_ms(), live);
        tokio::select! {
            () = cancel.cancelled() => return,
            () = tokio::time::sleep(Duration::from_millis(u64::from(ms))) => {}
        }
        shared.publisher().heartbeat_and_words(&mut pages);
        let fast = shared.fast().filter(|f| f.lock().is_live());
        let (due, mismatched) = if let Some(f) = fast {
            let now = exabond_common::clock::monotonic_ns();
            let f = f.lock();
            let bad: Vec<u32> = pages
                .iter()
                .filter(|p| {
                    f.state(p.bond_ifindex).is_some_and(|st| {
                        (st.word != p.word || st.active_ifindex != p.active)
                            && now.saturating_sub(st.kernel_ns) > FAST_SETTLE_NS
                    })
                })
                .map(|p| p.bond_ifindex)
                .collect();
            (last_full.elapsed() >= DEEP_REFRESH_EVERY, bad)
        } else {
            let actives = shared.publisher().actives();
            let bad = if files.all_match(&actives) { Vec::new() } else { actives.iter().map(|a| a.0).collect() };
            (last_full.elapsed() >= FULL_REFRESH_EVERY, bad)
        };
        // The sysfs check repairs at once, as it always did; a fast-word mismatch that outlived a repair is
        // repaired again only after a pause.
        let repair =
            !mismatched.is_empty() && (fast.is_none() || last_repair.is_none_or(|t| t.elapsed() >= REPAIR_BACKOFF));
        if last_verify.elapsed() >= verify_every {
            // Pages written by someone else through a mapping or write(2) (no inotify event for those).
            crate::page_watch::verify(&shared);
            last_verify = std::time::Instant::now();
        }
        if !due && !repair {
            continue;
        }
        last_full = std::time::Instant::now();
        if repair {
            last_repair = Some(last_full);
        }
        if let Err(e) = refresh(&shared, ChangeSource::Poll).await {
            tracing::warn!("poll: rtnetlink dump failed: {e}");
        }
        if repair && fast.is_some() {
            let names: Vec<String> = {
                let p = shared.publisher();
                mismatched.iter().filter_map(|&i| p.name_of(i)).collect()
            };
            tracing::debug!(bonds = ?names, "poll: fast word and page differ: page re-read, kernel asked to re-derive the word");
            for n in names {
                crate::fast_words::request_refresh(&n);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_poll_slows_down_only_while_the_kernel_publishes() {
        assert_eq!(poll_period_ms(None, 10, false), 10, "MIN(miimon, arp_interval) as the original");
        assert_eq!(poll_period_ms(None, 10, true), FAST_POLL_MS);
        assert_eq!(poll_period_ms(None, 500, true), 500);
        assert_eq!(poll_period_ms(Some(10), 10, true), 10, "--poll-ms wins");
        assert_eq!(poll_period_ms(Some(0), 10, false), 1);
    }

    #[test]
    fn an_overrun_means_a_resync() {
        let lost = classify(Err(std::io::Error::from_raw_os_error(libc::ENOBUFS)));
        assert!(matches!(lost, Received::Lost), "{lost:?}");
        assert!(matches!(classify(Ok(DATAGRAM_MAX + 1)), Received::Lost), "a truncated datagram is lost too");
        assert!(matches!(classify(Ok(1200)), Received::Data(1200)));
        assert!(matches!(classify(Err(std::io::ErrorKind::WouldBlock.into())), Received::Drained));
        assert!(matches!(classify(Err(std::io::Error::from_raw_os_error(libc::EBADF))), Received::Failed(_)));
        // A burst with a loss resyncs whether or not what was read concerned a managed bond.
        assert_eq!(Burst { relevant: false, lost: true }.action(), Action::Resync);
        assert_eq!(Burst { relevant: true, lost: true }.action(), Action::Resync);
        assert_eq!(Burst { relevant: true, lost: false }.action(), Action::Refresh);
        assert_eq!(Burst::default().action(), Action::Nothing);
    }
}
