//! Complete monitoring on the real kernel: every kind of change reaches the page, with the source that saw
//! it (printed as `E2E SOURCE <change> <source>`; asserted where the product guarantees it, and every
//! failover with eBPF on must carry the probe's kernel time); the page stays right with the eBPF source
//! disabled; the poll period and heartbeat follow `MIN(miimon, arp_interval)`; C readers (libexabond, and a
//! reader of the original 32-bit word only) see real failovers.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use exabond_common::clock::monotonic_ns;
use exabond_common::reader::PageReader;
use serde_json::Value;

use crate::lab::{empty_bond, read_page, sh, wait_for, Agent, Bond, Waiter};
use crate::scenario::probe_saw;
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

/// A failover to `expect` triggered by `trigger`, seen by a reader process; returns the page it saw and
/// `CLOCK_MONOTONIC` ns just before the trigger.
fn failover(
    exabond: &Path,
    expect: &str,
    trigger: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<(Value, u64)> {
    let n = page(exabond, BOND)?["failover_count"].as_u64().context("failover_count")?;
    let w = Waiter::start(exabond, Path::new(PAGE_DIR), BOND, n + 1)?;
    let since = monotonic_ns();
    trigger()?;
    let v = w.finish()?;
    ensure!(v["active_slave"] == expect, "reader saw active {} (expected {expect})", v["active_slave"]);
    ensure!(v["failover_count"].as_u64() == Some(n + 1), "count {} after {n}", v["failover_count"]);
    Ok((v, since))
}

/// [`failover`] with the eBPF source on: the probe must have seen the change too (see [`probe_saw`]);
/// returns the page the reader saw, after printing the source that published it first.
fn failover_seen_by_probe(
    exabond: &Path,
    change: &str,
    expect: &str,
    trigger: impl FnOnce() -> anyhow::Result<()>,
) -> anyhow::Result<Value> {
    let (v, since) = failover(exabond, expect, trigger)?;
    source(change, &v, "last_change_source");
    let count = v["failover_count"].as_u64().context("failover_count")?;
    probe_saw(exabond, Path::new(PAGE_DIR), BOND, count, since)?;
    Ok(v)
}

/// The page of `bond` once the agent has certainly taken in everything the kernel did before this call:
/// every poll tick compares each bond's active slave (sysfs) with its page and re-reads the bond when they
/// differ, then stamps the heartbeat; a heartbeat newer than one stamped after this call belongs to a tick
/// that began after it.
fn page_after_two_ticks(exabond: &Path, bond: &str) -> anyhow::Result<Value> {
    let reader = PageReader::open_in(Path::new(PAGE_DIR), bond)?;
    let t = monotonic_ns();
    let first = wait_for("a heartbeat stamped after the change", Duration::from_secs(5), || {
        reader.snapshot().ok().map(|d| d.heartbeat_mono_ns).filter(|&h| h > t)
    })?;
    wait_for("the next heartbeat", Duration::from_secs(5), || {
        reader.snapshot().ok().map(|d| d.heartbeat_mono_ns).filter(|&h| h > first)
    })?;
    page(exabond, bond)
}

fn other(b: &Bond, than: &str) -> String {
    b.members.iter().find(|m| *m != than).cloned().unwrap_or_default()
}

/// The suite (BPF LSM boot).
#[expect(clippy::too_many_lines, reason = "the group's checks in order, each a closure passed to the suite")]
#[expect(clippy::many_single_char_names, reason = "s is the suite; each check's closure keeps its own short names")]
pub fn run(exabond: &Path, s: &mut Suite) {
    let Some(bond) = s.setup("monitor lab: mbond (miimon 10, two veth members)", || Bond::create(BOND, 2)) else {
        return;
    };
    let Some(mut agent) =
        s.setup("monitor: agent manages mbond", || Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &[]))
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

    let members_up = s.setup("mbond: every member up, on the page too", || all_members_up(exabond, &bond));
    s.check_after(
        members_up,
        "write to primary: failover to it, seen by the probe; a primary_reselect write changes nothing; \
         primary_reselect always: back to it after it recovers",
        |()| {
            let active = bond.active().context("active")?;
            let prim = other(&bond, &active);
            bond.opt("primary_reselect", "always")?;
            failover_seen_by_probe(exabond, "primary write", &prim, || bond.opt("primary", &prim))?;
            // primary_reselect write: the driver re-runs its selection, which keeps the primary; the page
            // must not move.
            let before = page_after_two_ticks(exabond, BOND)?;
            bond.opt("primary_reselect", "better")?;
            bond.opt("primary_reselect", "always")?;
            let after = page_after_two_ticks(exabond, BOND)?;
            for k in ["failover_count", "active_slave", "last_change_source", "last_change_mono_ns", "kernel_event_ns"]
            {
                ensure!(after[k] == before[k], "a primary_reselect write changed {k}: {} -> {}", before[k], after[k]);
            }
            ensure!(
                bond.active().as_deref() == Some(prim.as_str()),
                "the kernel left the primary: {:?}",
                bond.active()
            );
            failover_seen_by_probe(exabond, "primary carrier loss", &active, || {
                sh(&format!("ip link set {prim}p down")).map(|_| ())
            })?;
            failover_seen_by_probe(exabond, "primary recovered (reselect always)", &prim, || {
                sh(&format!("ip link set {prim}p up")).map(|_| ())
            })?;
            // A newline clears it (an empty write(2) never reaches the driver).
            bond.opt("primary", "\n")?;
            Ok(())
        },
    );

    let members_up = s.setup("mbond: no primary, every member up again, on the page too", || {
        bond.opt("primary", "\n")?;
        ensure!(crate::lab::read_sysfs("/sys/class/net/mbond/bonding/primary")?.is_empty(), "primary still set");
        all_members_up(exabond, &bond)
    });
    s.check_after(
        members_up,
        "C readers (libexabond trading loop, legacy 32-bit word reader) see a real failover (active_slave \
         write, published by eBPF first)",
        |()| {
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
            let before = page(exabond, BOND)?;
            let n = before["failover_count"].as_u64().context("failover_count")?;
            let active = bond.active().context("active")?;
            let to = other(&bond, &active);
            let since = monotonic_ns();
            bond.opt("active_slave", &to)?;
            let (mut a, mut b) = (String::new(), String::new());
            tl_out.read_line(&mut a)?;
            lr_out.read_line(&mut b)?;
            ensure!(tl.wait()?.success() && lr.wait()?.success(), "a C reader failed");
            ensure!(a.contains(&format!("active={to}")), "trading_loop saw: {a}");
            ensure!(b.starts_with("word 1") && b.contains("active=1"), "legacy_reader saw: {b}");
            println!("E2E C trading_loop: {}", a.trim());
            println!("E2E C legacy_reader: {}", b.trim());
            // The probe at the entry of bond_change_active_slave sees a write to active_slave on an idle bond
            // before any netlink notification exists: eBPF publishes it first.
            let v = probe_saw(exabond, Path::new(PAGE_DIR), BOND, n + 1, since)?;
            ensure!(v["active_slave"] == to.as_str(), "page active {} (expected {to})", v["active_slave"]);
            let src = source("active_slave write", &v, "last_change_source");
            ensure!(src == "ebpf", "a write to active_slave on an idle bond credited to {src}, not to the eBPF probe");
            Ok(())
        },
    );

    // Without eBPF: netlink and the poll only (nothing to ask of the probe here).
    let no_ebpf = s.setup("monitor: the agent restarted with --no-ebpf, every member up", || {
        let st = agent.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "agent exit {st}\n{}", agent.log_text());
        let a = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &["--no-ebpf"])?;
        all_members_up(exabond, &bond)?;
        Ok(a)
    });
    let no_ebpf = s.check_after(
        no_ebpf,
        "eBPF disabled: netlink and poll keep the page right (failover, all slaves down, recovery)",
        |a| {
            let active = bond.active().context("active")?;
            let to = other(&bond, &active);
            let (v, _) = failover(exabond, &to, || sh(&format!("ip link set {active}p down")).map(|_| ()))?;
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
            Ok(a)
        },
    );
    // The next check runs its own agent on its own bond.
    drop(no_ebpf);
    drop(agent);

    let nomon = s.setup("mnomon: an active-backup bond without a link monitor (miimon 0)", || {
        empty_bond("mnomon", "active-backup")?;
        sh("echo 0 > /sys/class/net/mnomon/bonding/miimon")
    });
    s.check_after(
        nomon,
        "no link monitor: warning, 200 ms poll, heartbeat keeps readers from calling it stale",
        |_| {
            let a = Agent::start(exabond, Path::new(PAGE_DIR), &["mnomon"], &["--no-ebpf"])?;
            // The page appears before the agent logs what managing did (it logs after releasing its lock).
            a.wait_log("neither miimon nor a usable arp_interval", Duration::from_secs(5))?;
            // The tick itself, from the heartbeat stamps (robust to a scheduling hiccup under emulation): the
            // median interval between successive heartbeats.
            let reader = PageReader::open_in(Path::new(PAGE_DIR), "mnomon")?;
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
            ensure!(
                (150..=400).contains(&median),
                "median heartbeat interval {median} ms: not a 200 ms tick ({gaps:?})"
            );
            drop(a);
            Ok(())
        },
    );
    let _ = crate::lab::write_sysfs("/sys/class/net/bonding_masters", "-mnomon");
}

/// Bring every member of `b` up and wait until the page shows each link up and an active slave.
fn all_members_up(exabond: &Path, b: &Bond) -> anyhow::Result<()> {
    for m in &b.members {
        b.restore(m)?;
    }
    wait_page(exabond, "every member up and an active slave", |v| {
        v["active_slave"].is_string()
            && v["slaves"].as_array().is_some_and(|s| s.len() == b.members.len() && s.iter().all(|x| x["link"] == "up"))
    })?;
    Ok(())
}
