//! `exabond agent`.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{bail, Context as _};
use netlink_packet_route::link::BondMode;
use tokio_util::sync::CancellationToken;

use crate::bond_view::{self, BondView};
use crate::publisher::Publisher;
use crate::{ebpf_loader, event_loop, ifname, netlink};

/// Arguments of `exabond agent`.
#[derive(clap::Args)]
pub struct AgentArgs {
    /// A bond to manage (repeatable). It must exist and be in active-backup mode.
    #[arg(long = "bond", value_name = "BOND", required = true)]
    pub bonds: Vec<String>,
    /// Also accept members bound to this driver (repeatable; `exanic` always is). For labs and tests.
    #[arg(long = "member-driver", value_name = "DRIVER")]
    pub member_drivers: Vec<String>,
    /// Directory of the pages (`DIR/exabond-<bond>`).
    #[arg(long, value_name = "DIR", default_value = exabond_common::page::DEFAULT_PAGE_DIR)]
    pub page_dir: PathBuf,
    /// Directory of the kernel's BTF (vmlinux and module BTF).
    #[arg(
        long,
        value_name = "DIR",
        default_value = "/sys/kernel/btf",
        hide = true
    )]
    pub btf_dir: PathBuf,
    /// Poll period in ms instead of MIN(miimon, arp_interval).
    #[arg(long, value_name = "MS")]
    pub poll_ms: Option<u32>,
    /// Do not load the eBPF programs (netlink and poll only; for tests and kernels without kprobes).
    #[arg(long)]
    pub no_ebpf: bool,
}

/// Run the agent until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up failures, with what to do about them.
pub fn run(args: &AgentArgs) -> anyhow::Result<()> {
    for b in &args.bonds {
        ifname::validate(b).with_context(|| format!("--bond {b:?}"))?;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(run_async(args))
}

async fn run_async(args: &AgentArgs) -> anyhow::Result<()> {
    // Subscribe first, so nothing between the initial dump and the listener is missed.
    let (mconn, mhandle, messages) =
        rtnetlink::new_multicast_connection(&[rtnetlink::MulticastGroup::Link])
            .context("cannot open an rtnetlink socket")?;
    tokio::spawn(mconn);
    drop(mhandle);
    let (conn, handle, _) =
        rtnetlink::new_connection().context("cannot open an rtnetlink socket")?;
    tokio::spawn(conn);

    std::fs::create_dir_all(&args.page_dir).with_context(|| {
        format!(
            "cannot create the page directory {}",
            args.page_dir.display()
        )
    })?;

    let loaded = if args.no_ebpf {
        tracing::warn!("--no-ebpf: failovers are seen by rtnetlink and the poll only");
        None
    } else {
        Some(ebpf_loader::load(&args.btf_dir).context("loading the eBPF programs")?)
    };
    // `ebpf` keeps the programs attached; the ring buffer moves to the event thread.
    let (mut ebpf, mut managed, events) = match loaded {
        Some(l) => (Some(l.ebpf), Some(l.managed), Some(l.events)),
        None => (None, None, None),
    };
    let logger = ebpf
        .as_mut()
        .and_then(|e| match aya_log::EbpfLogger::init(e) {
            Ok(lg) => Some(lg),
            Err(err) => {
                tracing::debug!("no aya-log records from eBPF: {err}");
                None
            }
        });

    let links = netlink::dump_links(&handle)
        .await
        .context("rtnetlink link dump")?;
    let publisher = Arc::new(Mutex::new(Publisher::new(args.page_dir.clone())));
    for name in &args.bonds {
        let view = find_bond(name, &links)?;
        if let Some(m) = managed.as_mut() {
            m.insert(view.ifindex, 0, 0)
                .with_context(|| format!("MANAGED_BONDS insert for {name}"))?;
        }
        publisher
            .lock()
            .map_err(|_| anyhow::anyhow!("publisher lock poisoned"))?
            .manage(&view)
            .with_context(|| format!("bond {name}"))?;
    }
    // A failover between the dump above and the map insert is caught by this refresh.
    netlink::refresh(
        &publisher,
        &handle,
        exabond_common::page::ChangeSource::Netlink,
    )
    .await?;

    let stop = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let tracker = tokio_util::task::TaskTracker::new();
    let events_thread = match events {
        Some(ev) => Some(event_loop::spawn(
            ev,
            logger,
            publisher.clone(),
            stop.clone(),
        )?),
        None => None,
    };
    tracker.spawn(netlink::listen(
        publisher.clone(),
        handle.clone(),
        messages,
        cancel.clone(),
    ));
    tracker.spawn(netlink::poll(
        publisher.clone(),
        handle.clone(),
        args.poll_ms,
        cancel.clone(),
    ));
    tracker.close();
    tracing::info!(bonds = ?args.bonds, page_dir = %args.page_dir.display(), ebpf = ebpf.is_some(), "exabond agent running");

    wait_for_signal().await?;
    tracing::info!("shutting down");
    cancel.cancel();
    stop.store(true, Ordering::Relaxed);
    tracker.wait().await;
    if let Some(t) = events_thread {
        let _ = t.join();
    }
    drop(managed);
    drop(ebpf);
    tracing::info!("stopped; pages stay in place with their heartbeat stopped");
    Ok(())
}

fn find_bond(
    name: &str,
    links: &[netlink_packet_route::link::LinkMessage],
) -> anyhow::Result<BondView> {
    let Some(msg) = links
        .iter()
        .find(|m| bond_view::name(m).as_deref() == Some(name))
    else {
        bail!("no such interface: {name} (create it first: echo +{name} > /sys/class/net/bonding_masters)");
    };
    let Some(view) = BondView::from_links(msg.header.index, links) else {
        bail!("{name} is not a bond (bonding driver master)");
    };
    if view.mode != BondMode::ActiveBackup {
        bail!(
            "bond {name} is in mode {:?}, only active-backup is supported (with no slaves: echo active-backup > /sys/class/net/{name}/bonding/mode)",
            view.mode
        );
    }
    Ok(view)
}

async fn wait_for_signal() -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    Ok(())
}
