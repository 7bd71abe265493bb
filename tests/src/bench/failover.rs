//! Failover → visible: for each failover of a real bond, the kernel's time of the decision (the page's
//! `kernel_event_ns`, stamped by the eBPF probe at the entry of `bond_change_active_slave`) and, in the same
//! run, when each observer saw the new active slave:
//! - a reader process spinning on the page (`PageReader::changed` on a page-only reader, then a snapshot),
//!   on its own CPU, and in the same loop on the bond's fast word (the kernel's own publication: a reader
//!   attached to it, `changed`, then the slot's `kernel_ns`, which is the page's `kernel_event_ns`);
//! - the agent's publication (the page's `last_change_mono_ns`);
//! - a plain rtnetlink listener (`RTM_NEWLINK` with `IFLA_EVENT_BONDING_FAILOVER` for the bond);
//! - a poller of sysfs `active_slave` every `MIN(miimon, arp_interval)` = 10 ms (the original module's way).
//!
//! The machine is laid out as a trading host would be: CPU 0 is the reader's own ("isolated") core, every
//! other thread — the agent (started with that affinity), the baselines, the commands that trigger the
//! failovers and the kernel's unbound workqueues — runs on the other CPUs.
//!
//! All times are `CLOCK_MONOTONIC`, the clock of `bpf_ktime_get_ns`. Failovers cycle through carrier loss
//! (peer of the active veth down), a write to `active_slave` and admin-down of the active slave, with the
//! member restored in between.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use exabond_common::clock::monotonic_ns;
use exabond_common::reader::{FastSource, PageReader};
use serde_json::{json, Value};

use super::{percentile, pin_to, PAGE_DIR};
use crate::lab::{sh, Agent, Bond};

/// The bond used here.
pub const BOND: &str = "fobench";
/// The sysfs poll period of baseline (c): `MIN(miimon, arp_interval)` of the lab bond.
const POLL_PERIOD_NS: u64 = 10_000_000;
/// How long to wait for every observer to see one failover.
const SEE_TIMEOUT: Duration = Duration::from_secs(5);

/// The kinds of failover, in the order they are cycled.
const KINDS: [&str; 3] = ["carrier", "write", "admin_down"];

/// What the spinning reader saw.
#[derive(Clone, Copy)]
struct ReaderSeen {
    t: u64,
    count: u64,
}

#[derive(Default)]
struct Observed {
    reader: Mutex<Vec<ReaderSeen>>,
    /// (the fast word's `kernel_ns`, when the reader saw it).
    fast: Mutex<Vec<(u64, u64)>>,
    /// Why the reader process has no fast word (empty if it has one).
    fast_note: Mutex<String>,
    netlink: Mutex<Vec<u64>>,
    poll: Mutex<Vec<(u64, String)>>,
    stalls: Mutex<Vec<(u64, u64)>>,
    stop: AtomicBool,
}

/// A gap longer than this between two checks of the reader loop counts as the reader being off CPU.
const STALL_NS: u64 = 50_000;

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The spinning reader: a separate process (as a trading process would be), pinned to CPU 0, its own
/// core. It prints `<failover count> <t>` when it sees the page's legacy word change, `F <kernel_ns> <t>`
/// when it sees the fast word change, and `S <from> <to>` for each stretch it was off CPU (diagnostics); a
/// thread here collects the lines.
fn start_reader(obs: Arc<Observed>) -> anyhow::Result<(std::process::Child, std::thread::JoinHandle<()>)> {
    use std::io::BufRead as _;
    let exe = std::env::current_exe()?;
    let mut child = std::process::Command::new(exe)
        .args(["bench-reader", PAGE_DIR, BOND, "0"])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("spawn the reader process")?;
    let mut out = std::io::BufReader::new(child.stdout.take().context("reader stdout")?);
    let mut line = String::new();
    out.read_line(&mut line)?;
    if line.starts_with("nofast") {
        line.trim().clone_into(&mut lock(&obs.fast_note));
        line.clear();
        out.read_line(&mut line)?;
    }
    anyhow::ensure!(line.trim() == "ready", "reader process: {line:?}");
    let t = std::thread::Builder::new().name("reader-lines".into()).spawn(move || {
        for l in out.lines().map_while(Result::ok) {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f.as_slice() {
                ["F", k, t] => {
                    if let (Ok(k), Ok(t)) = (k.parse(), t.parse()) {
                        lock(&obs.fast).push((k, t));
                    }
                }
                ["nofast", ..] => lock(&obs.fast_note).clone_from(&l),
                ["S", a, b] => {
                    if let (Ok(a), Ok(b)) = (a.parse(), b.parse()) {
                        lock(&obs.stalls).push((a, b));
                    }
                }
                [c, t] => {
                    if let (Ok(count), Ok(t)) = (c.parse(), t.parse()) {
                        lock(&obs.reader).push(ReaderSeen { t, count });
                    }
                }
                _ => {}
            }
        }
    })?;
    Ok((child, t))
}

/// `exabond-e2e bench-reader DIR BOND CPU`: spin on the page until killed.
pub fn reader_process(args: &[String]) -> std::process::ExitCode {
    use std::io::Write as _;
    let [dir, bond, cpu] = args else {
        eprintln!("usage: exabond-e2e bench-reader DIR BOND CPU");
        return std::process::ExitCode::from(2);
    };
    pin_to(cpu.parse().unwrap_or(0));
    let path = exabond_common::writer::page_path(Path::new(dir), bond);
    let opened = PageReader::open_path_with(&path, FastSource::Off)
        .and_then(|page| Ok((page, PageReader::open_path_with(&path, FastSource::Default)?)));
    let (mut r, mut fast) = match opened {
        Ok(rs) => rs,
        Err(e) => {
            println!("error {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout().lock();
    if !fast.uses_fast() {
        let _ = writeln!(out, "nofast {}", fast.fast_note().unwrap_or("?"));
    }
    let _ = writeln!(out, "ready");
    let _ = out.flush();
    let mut i = 0u32;
    let mut last = monotonic_ns();
    loop {
        if fast.changed() {
            let t = monotonic_ns();
            let k = fast.active().map_or(0, |a| a.kernel_ns);
            if writeln!(out, "F {k} {t}").and_then(|()| out.flush()).is_err() {
                return std::process::ExitCode::SUCCESS;
            }
            last = monotonic_ns();
        }
        if r.changed() {
            let t = monotonic_ns();
            let count = r.snapshot().map_or(0, |s| s.failover_count);
            if t - last > STALL_NS {
                let _ = writeln!(out, "S {last} {t}");
            }
            if writeln!(out, "{count} {t}").and_then(|()| out.flush()).is_err() {
                return std::process::ExitCode::SUCCESS;
            }
            last = monotonic_ns();
        }
        i = i.wrapping_add(1);
        if i % 256 == 0 {
            // Off-CPU stretches of the reader (preemption, interrupts, or a descheduled vCPU).
            let now = monotonic_ns();
            if now - last > STALL_NS {
                let _ = writeln!(out, "S {last} {now}");
            }
            last = now;
        }
        std::hint::spin_loop();
    }
}

fn netlink_thread(obs: Arc<Observed>, bond_ifindex: u32) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let mut l = super::netlink::Listener::open(100)?;
    Ok(std::thread::Builder::new().name("netlink".into()).spawn(move || {
        while !obs.stop.load(Ordering::Relaxed) {
            match l.recv() {
                Ok(Some(bonds)) => {
                    let t = monotonic_ns();
                    if bonds.contains(&bond_ifindex) {
                        lock(&obs.netlink).push(t);
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    eprintln!("netlink listener: {e}");
                    break;
                }
            }
        }
    })?)
}

fn poll_thread(obs: Arc<Observed>) -> anyhow::Result<std::thread::JoinHandle<()>> {
    use std::os::unix::fs::FileExt as _;
    let f = std::fs::File::open(format!("/sys/class/net/{BOND}/bonding/active_slave"))?;
    Ok(std::thread::Builder::new().name("sysfs-poll".into()).spawn(move || {
        let mut buf = [0u8; 64];
        let mut last = String::new();
        let mut next = monotonic_ns();
        while !obs.stop.load(Ordering::Relaxed) {
            let n = f.read_at(&mut buf, 0).unwrap_or(0);
            let t = monotonic_ns();
            let cur = String::from_utf8_lossy(&buf[..n]).trim().to_owned();
            if cur != last {
                lock(&obs.poll).push((t, cur.clone()));
                last = cur;
            }
            next += POLL_PERIOD_NS;
            let ts = libc::timespec {
                tv_sec: i64::try_from(next / 1_000_000_000).unwrap_or(0),
                tv_nsec: i64::try_from(next % 1_000_000_000).unwrap_or(0),
            };
            // SAFETY: a valid timespec; absolute sleep on CLOCK_MONOTONIC keeps the period exact.
            unsafe {
                libc::clock_nanosleep(libc::CLOCK_MONOTONIC, libc::TIMER_ABSTIME, &raw const ts, std::ptr::null_mut())
            };
        }
    })?)
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    f()
}

/// One failover of `kind`; a JSON record of what each observer saw (times in `CLOCK_MONOTONIC` ns, null
/// when it did not see it in time).
fn one(bond: &Bond, page: &PageReader, obs: &Observed, kind: &str) -> anyhow::Result<Value> {
    let before = page.snapshot()?;
    let n = before.failover_count;
    let old = bond.active().context("active_slave")?;
    let other = bond.members.iter().find(|m| **m != old).context("a second member")?.clone();
    let (ri, ni, pi) = (lock(&obs.reader).len(), lock(&obs.netlink).len(), lock(&obs.poll).len());
    let t_trigger = monotonic_ns();
    match kind {
        "carrier" => drop(sh(&format!("ip link set {old}p down"))?),
        "write" => bond.opt("active_slave", &other)?,
        _ => drop(sh(&format!("ip link set {old} down"))?),
    }
    let fi = lock(&obs.fast).len();
    let reader = |obs: &Observed| lock(&obs.reader)[ri..].iter().find(|s| s.count > n).map(|s| s.t);
    let netlink = |obs: &Observed| lock(&obs.netlink).get(ni).copied();
    let poll = |obs: &Observed| lock(&obs.poll)[pi..].iter().find(|(_, a)| *a == other).map(|(t, _)| *t);
    wait_until(SEE_TIMEOUT, || reader(obs).is_some() && netlink(obs).is_some() && poll(obs).is_some());
    // The kernel's time of the change: stamped on the page by the eBPF event, even when netlink won.
    wait_until(Duration::from_secs(1), || {
        page.snapshot().is_ok_and(|s| s.failover_count > n && s.kernel_event_ns != 0)
    });
    let after = page.snapshot()?;
    // The fast word of this failover: the one the kernel stamped with the same time as the page's event.
    let fast = (after.kernel_event_ns != 0)
        .then(|| lock(&obs.fast)[fi..].iter().find(|(k, _)| *k == after.kernel_event_ns).map(|(_, t)| *t))
        .flatten();
    // Time the reader was off CPU between the kernel's event and its seeing the change.
    let (k, seen) = (after.kernel_event_ns, reader(obs).unwrap_or(0));
    let stalled: u64 =
        lock(&obs.stalls).iter().filter(|(a, b)| *b > k && *a < seen).map(|(a, b)| (*b).min(seen) - (*a).max(k)).sum();
    let rec = json!({
        "reader_stalled_ns": stalled,
        "kind": kind,
        "trigger_ns": t_trigger,
        "kernel_ns": after.kernel_event_ns,
        "page_ns": after.last_change_mono_ns,
        "source": after.source().as_str(),
        "count_step": after.failover_count - n,
        "reader_ns": reader(obs),
        "fast_ns": fast,
        "netlink_ns": netlink(obs),
        "poll_ns": poll(obs),
        "active_ok": after.active_name() == Some(other.as_str()),
    });
    // Restore the member (no failover back: no primary).
    bond.restore(&old)?;
    Ok(rec)
}

/// Run `count` failovers with an agent started with `agent_args`; the per-failover records.
/// `own_cpu`: the agent busy-polls on the last CPU, kept free of other work when there are 3 CPUs or more.
pub fn run(exabond: &Path, agent_args: &[&str], own_cpu: bool, count: usize) -> anyhow::Result<Vec<Value>> {
    let _layout = Housekeeping::enter(own_cpu);
    let bond = Bond::create(BOND, 2)?;
    let mut args = vec!["--release"];
    args.extend_from_slice(agent_args);
    let mut agent = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &args)?;
    let ifindex: u32 = crate::lab::read_sysfs(&format!("/sys/class/net/{BOND}/ifindex"))?.parse()?;
    let page =
        PageReader::open_path_with(&exabond_common::writer::page_path(Path::new(PAGE_DIR), BOND), FastSource::Off)?;
    let obs = Arc::new(Observed::default());
    let (mut reader, reader_lines) = start_reader(obs.clone())?;
    let note = lock(&obs.fast_note).clone();
    if !note.is_empty() {
        println!("E2E BENCH   the reader process has no fast word: {note}");
    }
    let threads = [reader_lines, netlink_thread(obs.clone(), ifindex)?, poll_thread(obs.clone())?];
    std::thread::sleep(Duration::from_millis(200));
    let mut out = Vec::with_capacity(count);
    let mut err = None;
    for i in 0..count {
        match one(&bond, &page, &obs, KINDS[i % KINDS.len()]) {
            Ok(v) => out.push(v),
            Err(e) => {
                err = Some(e.context(format!("failover {i}")));
                break;
            }
        }
        if (i + 1) % 50 == 0 {
            println!("E2E BENCH   {} failovers done", i + 1);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    obs.stop.store(true, Ordering::Relaxed);
    let _ = reader.kill();
    let _ = reader.wait();
    for t in threads {
        let _ = t.join();
    }
    let _ = agent.terminate(Duration::from_secs(15));
    drop(bond);
    if let Some(e) = err {
        if out.is_empty() {
            return Err(e);
        }
        println!("E2E BENCH   stopped early: {e:#}");
    }
    summary(&out);
    Ok(out)
}

/// While alive: this thread (and what it starts: the agent, commands, the baseline threads) and the kernel's
/// unbound workqueues are kept off CPU 0, the reader's core. Restored on drop.
struct Housekeeping {
    wq_mask: Option<String>,
}

const WQ_MASK: &str = "/sys/devices/virtual/workqueue/cpumask";

impl Housekeeping {
    fn enter(reserve_last: bool) -> Self {
        let n = super::cpus();
        if n < 2 {
            return Self { wq_mask: None };
        }
        let last = if reserve_last && n >= 3 { n - 1 } else { n };
        super::set_affinity(&(1..last).collect::<Vec<_>>());
        let old = crate::lab::read_sysfs(WQ_MASK).ok();
        let mask: u64 = ((1u64 << last.min(63)) - 1) & !1;
        if crate::lab::write_sysfs(WQ_MASK, &format!("{mask:x}")).is_err() {
            println!("E2E BENCH   (cannot keep unbound workqueues off CPU 0)");
        }
        Self { wq_mask: old }
    }
}

impl Drop for Housekeeping {
    fn drop(&mut self) {
        super::set_affinity(&(0..super::cpus()).collect::<Vec<_>>());
        if let Some(m) = &self.wq_mask {
            let _ = crate::lab::write_sysfs(WQ_MASK, m);
        }
    }
}

/// A short summary in the VM log (the full table is made by `cargo xtask bench`).
fn summary(recs: &[Value]) {
    #[expect(clippy::cast_precision_loss, reason = "latencies for display: nanosecond spans far below 2^52")]
    let lat = |key: &str| -> Vec<f64> {
        recs.iter()
            .filter(|r| r["kernel_ns"].as_u64().is_some_and(|k| k > 0))
            .filter_map(|r| Some((r[key].as_u64()?.saturating_sub(r["kernel_ns"].as_u64()?)) as f64 / 1e3))
            .collect()
    };
    for key in ["fast_ns", "reader_ns", "page_ns", "netlink_ns", "poll_ns"] {
        let mut v = lat(key);
        println!(
            "E2E BENCH   kernel→{:<8} n={:<4} p50 {:>9.1} µs  p99 {:>9.1} µs",
            key.trim_end_matches("_ns"),
            v.len(),
            percentile(&mut v, 50.0),
            percentile(&mut v, 99.0)
        );
    }
}
