//! `exabond agent`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use netlink_packet_route::link::LinkMessage;
use tokio_util::sync::CancellationToken;
use toml::Spanned;

use crate::bypass;
use crate::config::{AgentConfig, ConfigError, Settings};
use crate::enforcement::{Enforcement, Mode};
use crate::policy::MemberPolicy;
use crate::publisher::Publisher;
use crate::shared::Shared;
use crate::{config, control, ebpf_loader, event_loop, manage, metrics, netlink, sysinfo};

/// Arguments of `exabond agent`.
#[derive(clap::Args)]
#[expect(clippy::struct_excessive_bools, reason = "clap flags: each is an independent on/off switch")]
pub struct AgentArgs {
    #[expect(clippy::doc_markdown, reason = "clap help text, shown as written by --help: no Markdown backticks")]
    /// Read the settings from this TOML file (keys: bonds, member_drivers, page_dir, poll_ms,
    /// metrics_addr, socket); a flag given here wins over the file, a list given by flags replaces the file's.
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// A bond to manage at start (repeatable); more can be added with `exabond manage`. Bonds a previous
    /// agent managed (recorded in the pinned maps) are re-adopted as well.
    #[arg(long = "bond", value_name = "BOND")]
    pub bonds: Vec<String>,
    /// Also accept members bound to this driver (repeatable; `exanic` always is). For labs and tests.
    #[arg(long = "member-driver", value_name = "DRIVER")]
    pub member_drivers: Vec<String>,
    /// Directory of the pages (`DIR/exabond-<bond>`) [default: /dev].
    #[arg(long, value_name = "DIR")]
    pub page_dir: Option<PathBuf>,
    /// The control socket [default: /run/exabond/control.sock].
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The reader socket, where any local process gets a descriptor of the fast words to map read-only (the
    /// kernel's own publication of each managed bond's legacy word) [default: /run/exabond/reader.sock].
    #[arg(long, value_name = "PATH")]
    pub reader_socket: Option<PathBuf>,
    #[expect(clippy::doc_markdown, reason = "clap help text, shown as written by --help: no Markdown backticks")]
    /// Serve Prometheus metrics (OpenMetrics text) at http://ADDR/metrics, e.g. 127.0.0.1:9464. Off by
    /// default.
    #[arg(long, value_name = "ADDR")]
    pub metrics_addr: Option<SocketAddr>,
    /// Directory of the kernel's BTF (vmlinux and module BTF).
    #[arg(long, value_name = "DIR", default_value = "/sys/kernel/btf", hide = true)]
    pub btf_dir: PathBuf,
    #[expect(clippy::doc_markdown, reason = "clap help text, shown as written by --help: no Markdown backticks")]
    /// Poll period in ms instead of MIN(miimon, arp_interval).
    #[arg(long, value_name = "MS")]
    pub poll_ms: Option<u32>,
    /// Do not load the eBPF programs (netlink and poll only, detect-and-revert enforcement).
    #[arg(long)]
    pub no_ebpf: bool,
    /// Do not attach the BPF LSM vetoes even if the kernel has the BPF LSM (detect-and-revert).
    #[arg(long)]
    pub no_lsm: bool,
    /// On exit, remove the pinned programs and maps: enforcement stops with the agent. Without it the
    /// vetoes stay in force (pinned under /sys/fs/bpf/exabond) until the next agent takes over.
    #[arg(long)]
    pub release: bool,
    /// The eBPF event thread busy-polls the ring buffer instead of sleeping in poll(2): faster failover
    /// publication (no wake-up) for a whole CPU; with a CPU number, the thread is pinned to that CPU.
    #[arg(long, value_name = "CPU", num_args = 0..=1, default_missing_value = "any")]
    pub busy_poll: Option<String>,
    /// Test hook for the end-to-end suite: abort in the middle of the next failover publication (page
    /// sequence left odd, block half written), as a crash would.
    #[arg(long, hide = true)]
    pub test_crash_mid_publish: bool,
    /// Test hook for the end-to-end suite: the rtnetlink listener's receive buffer in bytes (`SO_RCVBUF`,
    /// instead of a forced 8 MiB), small enough for a burst of link changes to overrun it.
    #[arg(long, hide = true, value_name = "BYTES")]
    pub test_rcvbuf: Option<usize>,
}

impl AgentArgs {
    /// The settings the flags give (a list counts as given when it is not empty), for [`config::resolve`].
    ///
    /// # Errors
    /// [`ConfigError::Flag`] for an invalid `--bond`.
    pub fn settings(&self) -> Result<Settings, ConfigError> {
        for b in &self.bonds {
            crate::ifname::validate(b).map_err(|e| ConfigError::Flag {
                flag: "--bond",
                value: b.clone(),
                message: e.to_string(),
            })?;
        }
        Ok(Settings {
            bonds: (!self.bonds.is_empty()).then(|| self.bonds.iter().map(|b| Spanned::new(0..0, b.clone())).collect()),
            member_drivers: (!self.member_drivers.is_empty()).then(|| self.member_drivers.clone()),
            page_dir: self.page_dir.clone(),
            poll_ms: self.poll_ms,
            metrics_addr: self.metrics_addr,
            socket: self.socket.clone(),
            reader_socket: self.reader_socket.clone(),
        })
    }
}

/// Run the agent until SIGTERM or SIGINT.
///
/// # Errors
/// Start-up failures, with what to do about them.
pub fn run(args: &AgentArgs) -> anyhow::Result<()> {
    sysinfo::lean_memory();
    let cfg = config::resolve(args.settings()?, args.config.as_deref())?;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    rt.block_on(run_async(args, &cfg))
}

fn enforcement_mode(args: &AgentArgs) -> Mode {
    if args.no_ebpf || args.no_lsm {
        return Mode::DetectAndRevert;
    }
    match sysinfo::bpf_lsm_active() {
        Some(true) => Mode::LsmVeto,
        Some(false) => {
            tracing::error!(
                "THE BPF LSM IS NOT ACTIVE (bpf missing from /sys/kernel/security/lsm): forbidden mode changes and \
                 members cannot be refused in the kernel; falling back to detect-and-revert. Boot with \
                 lsm=...,bpf to get vetoes."
            );
            Mode::DetectAndRevert
        }
        None => {
            tracing::error!(
                "cannot read /sys/kernel/security/lsm (securityfs not mounted?): falling back to detect-and-revert"
            );
            Mode::DetectAndRevert
        }
    }
}

async fn run_async(args: &AgentArgs, cfg: &AgentConfig) -> anyhow::Result<()> {
    // Handlers first: a SIGTERM during start-up is a clean stop too.
    let signals = Signals::new()?;
    // Bound first: a taken port fails the start before anything is loaded.
    let metrics_listener = match cfg.metrics_addr {
        Some(a) => Some(metrics::bind(a).await.with_context(|| format!("cannot serve metrics on {a}"))?),
        None => None,
    };
    // Subscribe first, so nothing between the initial dump and the listener is missed.
    let link_socket = netlink::LinkSocket::open(args.test_rcvbuf).context("cannot open an rtnetlink socket")?;
    let (conn, handle, _) = rtnetlink::new_connection().context("cannot open an rtnetlink socket")?;
    tokio::spawn(conn);

    std::fs::create_dir_all(&cfg.page_dir)
        .with_context(|| format!("cannot create the page directory {}", cfg.page_dir.display()))?;

    let mut mode = enforcement_mode(args);
    let loaded = if args.no_ebpf {
        tracing::warn!("--no-ebpf: failovers are seen by rtnetlink and the poll only");
        None
    } else {
        Some(ebpf_loader::load(&args.btf_dir, mode == Mode::LsmVeto).context("loading the eBPF programs")?)
    };
    if loaded.as_ref().is_some_and(|l| !l.lsm) {
        mode = Mode::DetectAndRevert;
    }
    tracing::info!(enforcement = mode.as_str(), "enforcement mode");
    // Every pin is this agent's now: the self-check holds a descriptor of each, to re-pin what goes.
    let pins = loaded
        .as_ref()
        .map(|_| crate::self_check::Pins::open(std::path::Path::new(exabond_common::policy_maps::PIN_DIR)));
    // `ebpf` keeps the kprobes attached; the ring buffer moves to the event thread.
    let (mut ebpf, mut maps, events, kprobes, fast_maps) = match loaded {
        Some(l) => (Some(l.ebpf), Some(l.maps), Some(l.events), Some((l.kprobe_links, l.offsets)), Some(l.fast)),
        None => (None, None, None, None, None),
    };
    // Before any page is opened (and the fast words mapped): the page guard refuses writes by anyone but
    // the registered agent.
    if let Some(m) = maps.as_mut() {
        ebpf_loader::register_agent(&mut m.agent).context("registering with the page guard")?;
    } else if ebpf_loader::register_with_pinned_guard().context("registering with the pinned page guard")? {
        tracing::info!("registered with the page guard a previous agent left pinned");
    }
    let fast = fast_maps.and_then(open_fast_words);
    // The BTF parses and the object's relocation are done: their freed memory goes back.
    sysinfo::trim_heap();
    let logger = ebpf.as_mut().and_then(|e| match aya_log::EbpfLogger::init(e) {
        Ok(lg) => Some(lg),
        Err(err) => {
            tracing::debug!("no aya-log records from eBPF: {err}");
            None
        }
    });

    let shared = Arc::new(Shared::new(
        Publisher::new(cfg.page_dir.clone()),
        Enforcement::new(maps, MemberPolicy::new(&cfg.member_drivers), mode),
        fast,
        handle.clone(),
        cfg.page_dir.clone(),
    ));

    // Bound before any page appears: once a page is there, `exabond list/manage` reach this agent (requests
    // wait in the backlog until the server task starts below).
    let listener = control::bind(&cfg.socket).with_context(|| format!("control socket {}", cfg.socket.display()))?;
    // Bound before any page appears too; answered once the fast words are set (requests wait in the backlog).
    let readers = crate::reader_socket::bind(&cfg.reader_socket)
        .with_context(|| format!("reader socket {}", cfg.reader_socket.display()))?;
    let links = netlink::dump_links(&handle).await.context("rtnetlink link dump")?;
    let names = adopt_bonds(&shared, links, &cfg.bonds).await?;
    if args.test_crash_mid_publish {
        tracing::warn!("--test-crash-mid-publish: this agent aborts in the middle of the next failover publication");
        shared.publisher().crash_on_next_failover();
    }
    let page_watch = crate::page_watch::open(&cfg.page_dir)
        .with_context(|| format!("cannot watch the page directory {} (inotify)", cfg.page_dir.display()))?;
    // A failover between the dump above and the map inserts is caught by this refresh.
    netlink::refresh(&shared, exabond_common::page::ChangeSource::Netlink).await?;

    let stop = Arc::new(AtomicBool::new(false));
    let cancel = CancellationToken::new();
    let events_thread = match events {
        Some(ev) => Some(event_loop::spawn(ev, logger, shared.clone(), stop.clone(), busy_poll(args)?)?),
        None => None,
    };
    let tracker = spawn_tasks(&shared, cfg, link_socket, page_watch, metrics_listener, listener, &cancel);
    let with_ebpf = ebpf.is_some();
    // The self-check task owns the object from now on: it attaches the kprobes again after a reload of the
    // bonding module, and drops them (the pinned LSM links stay) when it ends.
    let probes = ebpf.take().zip(kprobes).map(|(e, (links, offsets))| {
        crate::failover_probes::Probes::new(&shared, e, links, offsets, args.btf_dir.clone())
    });
    // The probes are attached (their state is recorded): the managed bonds get their fast words, then
    // readers get answers.
    crate::fast_words::sync(&shared);
    tracker.spawn(crate::reader_socket::serve(readers, shared.clone(), cancel.clone()));
    tracker.spawn(crate::self_check::run(shared.clone(), pins, probes, cancel.clone()));
    sysinfo::trim_heap();
    tracing::info!(
        bonds = ?names,
        page_dir = %cfg.page_dir.display(),
        socket = %cfg.socket.display(),
        reader_socket = %cfg.reader_socket.display(),
        metrics = ?cfg.metrics_addr,
        ebpf = with_ebpf,
        enforcement = mode.as_str(),
        "exabond agent running"
    );

    signals.wait().await;
    tracing::info!("shutting down");
    cancel.cancel();
    stop.store(true, Ordering::Relaxed);
    tracker.wait().await;
    if let Some(t) = events_thread {
        let _ = t.join();
    }
    release_or_keep(args.release, mode);
    tracing::info!("stopped; pages stay in place with their heartbeat stopped");
    Ok(())
}

/// Start the agent's tasks, which run until `cancel`: the rtnetlink listener, the poll backstop, the page
/// directory watch, the metrics endpoint (if bound) and the control socket.
fn spawn_tasks(
    shared: &Arc<Shared>,
    cfg: &AgentConfig,
    link_socket: netlink::LinkSocket,
    page_watch: tokio::io::unix::AsyncFd<std::os::fd::OwnedFd>,
    metrics_listener: Option<tokio::net::TcpListener>,
    listener: tokio::net::UnixListener,
    cancel: &CancellationToken,
) -> tokio_util::task::TaskTracker {
    let tracker = tokio_util::task::TaskTracker::new();
    tracker.spawn(netlink::listen(shared.clone(), link_socket, cancel.clone()));
    tracker.spawn(netlink::poll(shared.clone(), cfg.poll_ms, cancel.clone()));
    tracker.spawn(crate::page_watch::watch(shared.clone(), page_watch, cancel.clone()));
    let pitfalls = shared.pitfalls.clone();
    if let Some(l) = metrics_listener {
        tracker.spawn(metrics::serve(l, shared.clone(), pitfalls.clone(), cancel.clone()));
    }
    tracker.spawn(control::serve(listener, cfg.socket.clone(), shared.clone(), pitfalls, cancel.clone()));
    tracker.close();
    tracker
}

/// Judge every device in `links`, then manage the bonds a previous agent managed (pinned map) and the
/// `configured` ones, and drop what is left of other bonds (guards pinned by a previous agent, orphaned
/// pages). Returns the names of the bonds managed.
///
/// A bond found in a forbidden state (a refused member, a mode other than active-backup: a previous
/// agent's vetoes were bypassed or absent) is repaired first, each repair reported as a bypass. What cannot
/// be repaired leaves a re-adopted bond unmanaged (logged: the agent still starts) and fails the start for
/// a `--bond` (its message says how to fix it).
async fn adopt_bonds(shared: &Shared, links: Vec<LinkMessage>, configured: &[String]) -> anyhow::Result<Vec<String>> {
    let mut links = links;
    netlink::sync_verdicts(shared, &links);
    // Bonds a previous agent managed (pinned map), then the ones named on the command line.
    let pinned: Vec<String> = shared
        .enforcement()
        .pinned_managed()
        .into_iter()
        .filter_map(|i| links.iter().find(|m| m.header.index == i).and_then(crate::bond_view::name))
        .collect();
    if !pinned.is_empty() {
        tracing::info!(bonds = ?pinned, "re-adopting bonds managed by a previous agent");
    }
    let mut names = pinned.clone();
    for b in configured {
        if !names.contains(b) {
            names.push(b.clone());
        }
    }
    let found: Vec<bypass::Bypass> = {
        let enf = shared.enforcement();
        names
            .iter()
            .filter_map(|n| links.iter().find(|m| crate::bond_view::name(m).as_deref() == Some(n.as_str())))
            .filter_map(|m| crate::bond_view::BondView::from_links(m.header.index, &links))
            .flat_map(|v| bypass::find_judged(&enf, &v))
            .collect()
    };
    if !found.is_empty() {
        bypass::report(shared, &bypass::repair(shared, found), "start-up");
        links = netlink::dump_links(&shared.handle).await.context("rtnetlink link dump after the repairs")?;
        netlink::sync_verdicts(shared, &links);
    }
    let mut managed = Vec::new();
    for name in &names {
        match manage::manage_from(shared, name, &links) {
            Ok(msg) => {
                tracing::info!("{msg}");
                managed.push(name.clone());
            }
            Err(e) if pinned.contains(name) => tracing::error!(
                bond = %name,
                "CANNOT RE-ADOPT bond {name}, managed by a previous agent: {e}; it stays unmanaged (no vetoes, no \
                 page updates) until fixed and placed under management again with `exabond manage {name}`"
            ),
            Err(e) => anyhow::bail!("--bond {name}: {e}"),
        }
    }
    shared.enforcement().drop_stale_guards();
    retire_orphan_pages(shared);
    {
        // The page guard protects exactly the pages of the bonds managed now. Lock order: enforcement, then
        // publisher.
        let mut enf = shared.enforcement();
        enf.sync_pages(&shared.publisher().page_inodes());
    }
    Ok(managed)
}

/// Pages in the page directory whose bond is not managed now (a bond deleted or unmanaged while no agent
/// ran): retired (a reader that still maps one sees RETIRED) and removed. Other files are left alone.
fn retire_orphan_pages(shared: &Shared) {
    let (managed, dir) = {
        let p = shared.publisher();
        (p.names(), p.page_dir().to_owned())
    };
    let Ok(entries) = std::fs::read_dir(&dir) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(bond) = name.to_str().and_then(|n| n.strip_prefix(exabond_common::page::PAGE_FILE_PREFIX)) else {
            continue;
        };
        if managed.iter().any(|m| m == bond) {
            continue;
        }
        match exabond_common::writer::retire_orphan(&e.path()) {
            Ok(true) => {
                tracing::warn!(bond, page = %e.path().display(), "page of a bond that is no longer managed: retired and removed");
            }
            Ok(false) => {}
            Err(err) => tracing::error!(bond, "cannot retire an orphaned page: {err}"),
        }
    }
}

/// On exit: remove the pins (`--release`), or say the vetoes stay.
fn release_or_keep(release: bool, mode: Mode) {
    if release {
        ebpf_loader::release_pins();
        tracing::info!("--release: pinned programs and maps removed; enforcement ends now");
    } else if mode == Mode::LsmVeto {
        tracing::info!(
            "vetoes stay in force (pinned in {}) until the next agent",
            exabond_common::policy_maps::PIN_DIR
        );
    }
}

/// The agent's side of the fast words, or none (logged: readers then get the page only).
fn open_fast_words(maps: crate::fast_words::FastMaps) -> Option<crate::fast_words::FastWords> {
    match crate::fast_words::FastWords::new(maps, sysinfo::own_netns()) {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::error!("{e}: readers get the page only (no fast words)");
            None
        }
    }
}

/// How the eBPF event thread waits (`--busy-poll [CPU]`).
fn busy_poll(args: &AgentArgs) -> anyhow::Result<event_loop::Wait> {
    Ok(match args.busy_poll.as_deref() {
        None => event_loop::Wait::Block,
        Some("any") => event_loop::Wait::BusyPoll { cpu: None },
        Some(c) => event_loop::Wait::BusyPoll {
            cpu: Some(c.parse().with_context(|| format!("--busy-poll {c:?}: not a CPU number"))?),
        },
    })
}

/// SIGTERM and SIGINT, caught from the start.
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl Signals {
    fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn wait(mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}
