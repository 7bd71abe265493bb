//! Complete monitoring on the real kernel: every kind of change reaches the page, with the source that saw
//! it (printed as `E2E SOURCE <change> <source>`); the page stays right with the eBPF source disabled; the
//! poll period and heartbeat follow MIN(miimon, arp_interval); C readers (libexabond, and a reader of the
//! original 32-bit word only) see real failovers.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde_json::Value;

use crate::lab::{empty_bond, read_page, sh, wait_for, Agent, Bond, Waiter};
use crate::suite::Suite;

const PAGE_DIR: &str = "/run/exabond";
const BOND: &str = "mbond";

fn page(exabond: &Path, bond: &str) -> anyhow::Result<Value> {
    read_page(exabond, Path::new(PAGE_DIR), bond)
}

fn wait_page(exabond: &Path, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
    wait_for(what, Duration::from_secs(5), || page(exabond, BOND).ok().filter(|v| pred(v)))
}

fn slave<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    v["slaves"].as_array()?.iter().find(|s| s["name"] == name)
}

fn source(change: &str, v: &Value, key: &str) -> String {
    let src = v[key].as_str().unwrap_or("?").to_owned();
    println!("E2E SOURCE {change}: {src}");
    src
}

/// A failover to `expect` triggered by `trigger`, seen by a reader process; returns the page it saw.
fn failover(exabond: &Path, expect: &str, trigger: impl FnOnce() -> anyhow::Result<()>) -> anyhow::Result<Value> {
    let n = page(exabond, BOND)?["failover_count"].as_u64().context("failover_count")?;
    let w = Waiter::start(exabond, Path::new(PAGE_DIR), BOND, n + 1)?;
    trigger()?;
    let v = w.finish()?;
    ensure!(v["active_slave"] == expect, "reader saw active {} (expected {expect})", v["active_slave"]);
    Ok(v)
}

fn other(b: &Bond, than: &str) -> String {
    b.members.iter().find(|m| *m != than).cloned().unwrap_or_default()
}

/// The suite (BPF LSM boot).
pub fn run(exabond: &Path, s: &mut Suite) {
    let Some(bond) = s.check("monitor lab: mbond (miimon 10, two veth members), agent", || Bond::create(BOND, 2))
    else {
        return;
    };
    let Some(mut agent) =
        s.check("monitor: agent manages mbond", || Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &[]))
    else {
        return;
    };

    s.check("enslave and release reach the page (member list)", || {
        sh("ip link add mbond-a2 type veth peer name mbond-a2p && ip link set mbond-a2p up")?;
        // The veto refuses a device the agent has not judged yet (ENODEV, like an absent one): wait for its
        // verdict, as a script that creates and enslaves at once must.
        wait_for("the agent's verdict on mbond-a2", Duration::from_secs(10), || {
            crate::lab::cli(exabond, &["member", "mbond-a2"]).ok().filter(|(code, _, _)| *code == 0)
        })?;
        bond.opt("slaves", "+mbond-a2")?;
        let v = wait_page(exabond, "mbond-a2 listed", |v| slave(v, "mbond-a2").is_some())?;
        let src = source("enslave", &v, "last_update_source");
        ensure!(src == "netlink" || src == "poll", "enslave credited to {src}");
        bond.opt("slaves", "-mbond-a2")?;
        let v = wait_page(exabond, "mbond-a2 gone", |v| slave(v, "mbond-a2").is_none())?;
        source("release", &v, "last_update_source");
        sh("ip link del mbond-a2")?;
        Ok(())
    });

    s.check("carrier change of a backup member: link state and failure count, no failover", || {
        let before = page(exabond, BOND)?;
        let active = before["active_slave"].as_str().context("active")?.to_owned();
        let backup = other(&bond, &active);
        let failures = slave(&before, &backup).context("backup listed")?["link_failures"].as_u64().unwrap_or(0);
        sh(&format!("ip link set {backup}p down"))?;
        let v = wait_page(exabond, "backup link down", |v| slave(v, &backup).is_some_and(|x| x["link"] == "down"))?;
        source("backup carrier down", &v, "last_update_source");
        let v = wait_page(exabond, "failure count up", |v| {
            slave(v, &backup).and_then(|x| x["link_failures"].as_u64()).is_some_and(|f| f > failures)
        })?;
        ensure!(v["failover_count"] == before["failover_count"] && v["active_slave"] == active.as_str(), "{v}");
        bond.restore(&backup)?;
        let v = wait_page(exabond, "backup link up", |v| slave(v, &backup).is_some_and(|x| x["link"] == "up"))?;
        source("backup carrier up", &v, "last_update_source");
        Ok(())
    });

    s.check("write to primary: failover to it; primary_reselect always: back to it after it recovers", || {
        let active = bond.active().context("active")?;
        let prim = other(&bond, &active);
        bond.opt("primary_reselect", "always")?;
        let v = failover(exabond, &prim, || bond.opt("primary", &prim))?;
        source("primary write", &v, "last_change_source");
        // primary_reselect write: refreshes, changes nothing.
        bond.opt("primary_reselect", "better")?;
        bond.opt("primary_reselect", "always")?;
        let n = page(exabond, BOND)?["failover_count"].clone();
        let v = failover(exabond, &active, || sh(&format!("ip link set {prim}p down")).map(|_| ()))?;
        ensure!(v["failover_count"].as_u64() == n.as_u64().map(|x| x + 1), "count {} after {n}", v["failover_count"]);
        source("primary carrier loss", &v, "last_change_source");
        let v = failover(exabond, &prim, || sh(&format!("ip link set {prim}p up")).map(|_| ()))?;
        source("primary recovered (reselect always)", &v, "last_change_source");
        bond.opt("primary", "")?;
        Ok(())
    });

    s.check("C readers (libexabond trading loop, legacy 32-bit word reader) see a real failover", || {
        let dir = std::env::current_exe()?.parent().context("exe dir")?.to_owned();
        let page_file = format!("{PAGE_DIR}/exabond-{BOND}");
        let mut tl = Command::new(dir.join("trading_loop"))
            .args([BOND, PAGE_DIR, "--count", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .context("trading_loop")?;
        let mut lr = Command::new(dir.join("legacy_reader"))
            .args([page_file.as_str(), "--count", "1"])
            .stdout(Stdio::piped())
            .spawn()
            .context("legacy_reader")?;
        let mut tl_out = BufReader::new(tl.stdout.take().context("stdout")?);
        let mut lr_out = BufReader::new(lr.stdout.take().context("stdout")?);
        let (mut a, mut b) = (String::new(), String::new());
        tl_out.read_line(&mut a)?;
        lr_out.read_line(&mut b)?;
        ensure!(a.starts_with("ready") && b.starts_with("ready"), "not ready: {a:?} {b:?}");
        let active = bond.active().context("active")?;
        let to = other(&bond, &active);
        bond.opt("active_slave", &to)?;
        let (mut a, mut b) = (String::new(), String::new());
        tl_out.read_line(&mut a)?;
        lr_out.read_line(&mut b)?;
        ensure!(tl.wait()?.success() && lr.wait()?.success(), "a C reader failed");
        ensure!(a.contains(&format!("active={to}")), "trading_loop saw: {a}");
        ensure!(b.starts_with("word 1") && b.contains("active=1"), "legacy_reader saw: {b}");
        println!("E2E C trading_loop: {}", a.trim());
        println!("E2E C legacy_reader: {}", b.trim());
        Ok(())
    });

    s.check("eBPF disabled: netlink and poll keep the page right (failover, all slaves down, recovery)", || {
        ensure!(agent.terminate(Duration::from_secs(15))?.success(), "agent exit");
        let a = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &["--no-ebpf"])?;
        agent = a;
        let active = bond.active().context("active")?;
        let to = other(&bond, &active);
        let v = failover(exabond, &to, || sh(&format!("ip link set {active}p down")).map(|_| ()))?;
        let src = source("carrier loss without eBPF", &v, "last_change_source");
        ensure!(src == "netlink" || src == "poll", "credited to {src}");
        sh(&format!("ip link set {to}p down"))?;
        let v = wait_page(exabond, "no active slave", |v| v["active_slave"].is_null())?;
        ensure!(v["legacy_active"] == false, "{v}");
        source("all slaves down without eBPF", &v, "last_change_source");
        for m in &bond.members {
            bond.restore(m)?;
        }
        let v = wait_page(exabond, "an active slave again", |v| v["active_slave"].is_string())?;
        ensure!(
            v["active_slave"].as_str() == bond.active().as_deref(),
            "page {} kernel {:?}",
            v["active_slave"],
            bond.active()
        );
        Ok(())
    });

    s.check("no link monitor: warning, 200 ms poll, heartbeat keeps readers from calling it stale", || {
        ensure!(agent.terminate(Duration::from_secs(15))?.success(), "agent exit");
        empty_bond("mnomon", "active-backup")?;
        sh("echo 0 > /sys/class/net/mnomon/bonding/miimon")?;
        let a = Agent::start(exabond, Path::new(PAGE_DIR), &["mnomon"], &["--no-ebpf"])?;
        ensure!(a.log_text().contains("neither miimon nor a usable arp_interval"), "no warning:\n{}", a.log_text());
        // The tick itself, from the heartbeat stamps (robust to a scheduling hiccup under emulation): the
        // median interval between successive heartbeats.
        let reader = exabond_common::reader::PageReader::open_in(Path::new(PAGE_DIR), "mnomon")?;
        let t = Instant::now();
        let mut beats = vec![reader.snapshot()?.heartbeat_mono_ns];
        while t.elapsed() < Duration::from_secs(3) {
            let hb = reader.snapshot()?.heartbeat_mono_ns;
            if Some(&hb) != beats.last() {
                beats.push(hb);
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut gaps: Vec<u64> = beats.windows(2).map(|w| (w[1] - w[0]) / 1_000_000).collect();
        gaps.sort_unstable();
        let median = gaps.get(gaps.len() / 2).copied().unwrap_or(0);
        println!("E2E heartbeat with no link monitor: {} ticks in 3 s, median interval {median} ms", gaps.len());
        ensure!((150..=400).contains(&median), "median heartbeat interval {median} ms: not a 200 ms tick ({gaps:?})");
        agent = a;
        Ok(())
    });
    let _ = agent.terminate(Duration::from_secs(15));
    let _ = crate::lab::write_sysfs("/sys/class/net/bonding_masters", "-mnomon");
}
