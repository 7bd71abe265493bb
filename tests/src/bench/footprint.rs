//! Footprint and scale: `n` managed bonds of two veth members each. The agent's resident memory, its CPU
//! time over an idle window, and how long after a simultaneous failover of every bond (writes to each
//! `active_slave` in a tight loop) all pages show the new active slave. With a baseline build (the agent
//! before this round's changes), the same bonds, the same measures, one agent after the other in the same
//! boot: `{"current": ..., "baseline": ...}`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use exabond_common::clock::monotonic_ns;
use exabond_common::reader::PageReader;
use serde_json::{json, Value};

use super::PAGE_DIR;
use crate::lab::{read_sysfs, sh, write_sysfs, Agent};

fn name(i: usize) -> String {
    format!("fp{i}")
}

/// Create `n` bonds (active-backup, miimon 10) of two veth members each, all up.
fn create(n: usize) -> anyhow::Result<()> {
    let _ = sh("modprobe bonding max_bonds=0");
    let mut batch = String::new();
    for i in 0..n {
        let b = name(i);
        write_sysfs("/sys/class/net/bonding_masters", &format!("+{b}"))?;
        write_sysfs(&format!("/sys/class/net/{b}/bonding/mode"), "active-backup")?;
        write_sysfs(&format!("/sys/class/net/{b}/bonding/miimon"), "10")?;
        for m in 0..2 {
            let _ = write!(batch, "link add {b}-a{m} type veth peer name {b}-a{m}p\nlink set {b}-a{m}p up\n");
        }
    }
    std::fs::write("/tmp/fp-batch", &batch)?;
    sh("ip -batch /tmp/fp-batch")?;
    let mut up = String::new();
    for i in 0..n {
        let b = name(i);
        for m in 0..2 {
            write_sysfs(&format!("/sys/class/net/{b}/bonding/slaves"), &format!("+{b}-a{m}"))?;
        }
        let _ = writeln!(up, "link set {b} up");
    }
    std::fs::write("/tmp/fp-batch", &up)?;
    sh("ip -batch /tmp/fp-batch")?;
    for i in 0..n {
        let b = name(i);
        crate::lab::wait_for(&format!("{b}: an active slave"), Duration::from_secs(30), || {
            read_sysfs(&format!("/sys/class/net/{b}/bonding/active_slave")).ok().filter(|a| !a.is_empty())
        })?;
    }
    Ok(())
}

/// (utime + stime) in clock ticks of `pid`.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command (which may contain spaces) end with ')'.
    let rest = stat.rsplit_once(')').context("stat format")?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    // rest[0] is field 3 (state): utime is field 14, stime 15.
    Ok(f.get(11).context("utime")?.parse::<u64>()? + f.get(12).context("stime")?.parse::<u64>()?)
}

fn status_kib(pid: u32, key: &str) -> anyhow::Result<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let line = s.lines().find(|l| l.starts_with(key)).with_context(|| format!("{key} in status"))?;
    Ok(line.split_whitespace().nth(1).context("value")?.parse()?)
}

/// Run it with `n` bonds and an idle window of `idle`, for `exabond` and, if given, a `baseline` build.
///
/// # Errors
/// The bonds cannot be made, an agent fails, or pages do not follow.
pub fn run(exabond: &Path, baseline: Option<&Path>, n: usize, idle: Duration) -> anyhow::Result<Value> {
    let t = Instant::now();
    create(n)?;
    println!("E2E BENCH   {n} bonds created in {:.1} s", t.elapsed().as_secs_f64());
    let mut out = json!({});
    if let Some(b) = baseline {
        println!("E2E BENCH   the baseline agent ({})", b.display());
        out["baseline"] = measure(b, n, idle).context("the baseline agent")?;
        super::clear_pins();
        // The pages of the baseline's bonds are retired and removed by its `--release` exit.
    }
    println!("E2E BENCH   this agent");
    out["current"] = measure(exabond, n, idle)?;
    Ok(out)
}

/// One agent managing the `n` bonds: its footprint and the simultaneous failover.
#[expect(clippy::cast_precision_loss, reason = "figures for display: ticks, KiB and nanosecond spans, far below 2^52")]
fn measure(exabond: &Path, n: usize, idle: Duration) -> anyhow::Result<Value> {
    let bonds: Vec<String> = (0..n).map(name).collect();
    let refs: Vec<&str> = bonds.iter().map(String::as_str).collect();
    let mut agent = Agent::start(exabond, Path::new(PAGE_DIR), &refs, &["--release"])?;
    let readers: Vec<PageReader> = bonds
        .iter()
        .map(|b| {
            PageReader::open_path_with(
                &exabond_common::writer::page_path(Path::new(PAGE_DIR), b),
                exabond_common::reader::FastSource::Off,
            )
        })
        .collect::<Result<_, _>>()?;
    let pid = readers[0].snapshot()?.agent_pid;
    // Let start-up work settle, then the idle window.
    std::thread::sleep(Duration::from_secs(1));
    // SAFETY: sysconf has no memory-safety preconditions.
    let clk_tck = u64::try_from(unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1)).unwrap_or(1);
    let (c0, t0) = (cpu_ticks(pid)?, Instant::now());
    std::thread::sleep(idle);
    let (c1, secs) = (cpu_ticks(pid)?, t0.elapsed().as_secs_f64());
    let rss_kib = status_kib(pid, "VmRSS:")?;
    let hwm_kib = status_kib(pid, "VmHWM:")?;
    let threads = status_kib(pid, "Threads:")?;
    let cpu_s = (c1 - c0) as f64 / clk_tck as f64;
    println!(
        "E2E BENCH   agent with {n} bonds: RSS {:.1} MiB (peak {:.1}), {threads} threads, CPU {:.2} % of one CPU over {secs:.0} s idle",
        rss_kib as f64 / 1024.0,
        hwm_kib as f64 / 1024.0,
        100.0 * cpu_s / secs
    );

    // Simultaneous failover of every bond.
    let targets: Vec<String> = bonds
        .iter()
        .map(|b| {
            let a = read_sysfs(&format!("/sys/class/net/{b}/bonding/active_slave"))?;
            Ok(if a.ends_with("-a0") { format!("{b}-a1") } else { format!("{b}-a0") })
        })
        .collect::<anyhow::Result<_>>()?;
    let t_start = monotonic_ns();
    for (b, to) in bonds.iter().zip(&targets) {
        write_sysfs(&format!("/sys/class/net/{b}/bonding/active_slave"), to)?;
    }
    let t_written = monotonic_ns();
    let mut seen: Vec<Option<u64>> = vec![None; n];
    let deadline = Instant::now() + Duration::from_secs(30);
    while seen.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, r) in readers.iter().enumerate() {
            if seen[i].is_none() && r.snapshot().is_ok_and(|s| s.active_name() == Some(targets[i].as_str())) {
                seen[i] = Some(monotonic_ns());
            }
        }
    }
    let missing = seen.iter().filter(|s| s.is_none()).count();
    ensure!(missing == 0, "{missing} of {n} pages did not show the new active slave within 30 s");
    let last = seen.iter().flatten().max().copied().unwrap_or(t_start);
    // Per bond: the kernel's time and the publication time of the change.
    std::thread::sleep(Duration::from_millis(300));
    let mut per_bond = Vec::new();
    for r in &readers {
        let s = r.snapshot()?;
        per_bond.push(
            json!({ "kernel_ns": s.kernel_event_ns, "page_ns": s.last_change_mono_ns, "source": s.source().as_str() }),
        );
    }
    let all_ms = (last - t_start) as f64 / 1e6;
    println!(
        "E2E BENCH   simultaneous failover of {n} bonds: writes took {:.1} ms, all pages right after {all_ms:.1} ms",
        (t_written - t_start) as f64 / 1e6
    );
    let st = agent.terminate(Duration::from_secs(30))?;
    ensure!(st.success(), "agent exit {st}");
    Ok(json!({
        "bonds": n,
        "rss_kib": rss_kib,
        "hwm_kib": hwm_kib,
        "threads": threads,
        "idle_s": secs,
        "cpu_s": cpu_s,
        "t_start_ns": t_start,
        "t_written_ns": t_written,
        "seen_ns": seen,
        "per_bond": per_bond,
    }))
}
