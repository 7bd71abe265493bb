//! The end-to-end scenario: a real active-backup bond, the agent, three kinds of failover and "all slaves
//! down", each seen by a separate reader process through the page; then a clean SIGTERM.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use exabond_common::clock::monotonic_ns;
use serde_json::Value;

use crate::lab::{read_page, sh, wait_for, Agent, Bond, Waiter};
use crate::suite::Suite;

const PAGE_DIR: &str = "/run/exabond";
const BOND: &str = "bond0";

#[derive(Clone, Copy)]
enum Trigger {
    /// The peer of the active veth goes down: carrier loss, seen by miimon.
    Carrier,
    /// `echo <other> > /sys/class/net/bond0/bonding/active_slave`.
    Write,
    /// `ip link set <active> down`.
    AdminDown,
}

impl Trigger {
    const fn label(self) -> &'static str {
        match self {
            Self::Carrier => "failover by carrier loss (peer of the active slave down)",
            Self::Write => "failover by a write to active_slave",
            Self::AdminDown => "failover by admin-down of the active slave",
        }
    }

    /// Short name, for the steps that follow it.
    const fn short(self) -> &'static str {
        match self {
            Self::Carrier => "carrier loss",
            Self::Write => "active_slave write",
            Self::AdminDown => "admin-down",
        }
    }
}

/// What a reader measured for one failover.
struct Seen {
    from: String,
    to: String,
    source: String,
    kernel_to_page_us: Option<f64>,
    kernel_to_reader_us: Option<f64>,
}

fn str_of(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("null").to_owned()
}

/// The page of `bond` once it carries the eBPF probe's kernel time of failover number `count`
/// (`kernel_event_ns != 0`, taken at or after `since`, `CLOCK_MONOTONIC`): proof that the probe at the entry of
/// `bond_change_active_slave` saw that change, whichever source published it first (when netlink or the poll
/// wins the race, the late eBPF event still stamps the kernel's time). With wrong kernel offsets the probe
/// filters every event out, netlink and the poll still keep the page right, and only this tells.
pub(crate) fn probe_saw(exabond: &Path, page_dir: &Path, bond: &str, count: u64, since: u64) -> anyhow::Result<Value> {
    let mut last = Value::Null;
    let v = wait_for(
        &format!("the eBPF probe's kernel time of failover {count} on the page of {bond}"),
        Duration::from_secs(5),
        || {
            let v = read_page(exabond, page_dir, bond).ok()?;
            last = v.clone();
            (v["kernel_event_ns"].as_u64().is_some_and(|k| k != 0) || v["failover_count"].as_u64() != Some(count))
                .then_some(v)
        },
    )
    .map_err(|e| anyhow::anyhow!("{e} (the probe never saw the change): {last}"))?;
    ensure!(
        v["failover_count"].as_u64() == Some(count),
        "the page moved on to failover {} before the probe's time of failover {count} showed: {v}",
        v["failover_count"]
    );
    let k = v["kernel_event_ns"].as_u64().unwrap_or(0);
    let change = v["last_change_mono_ns"].as_u64().unwrap_or(0);
    ensure!(
        since <= k && k <= change,
        "kernel_event_ns {k} not within [trigger {since}, page change {change}]: not this failover's event: {v}"
    );
    Ok(v)
}

fn show(exabond: &Path, demo: bool) {
    if demo {
        if let Ok(out) = sh(&format!("{} read {BOND} --page-dir {PAGE_DIR}", exabond.display())) {
            println!("{}", out.lines().map(|l| format!("    {l}")).collect::<Vec<_>>().join("\n"));
        }
    }
}

fn failover(exabond: &Path, bond: &Bond, trigger: Trigger) -> anyhow::Result<Seen> {
    let dir = Path::new(PAGE_DIR);
    let before = read_page(exabond, dir, BOND)?;
    let n = before["failover_count"].as_u64().context("failover_count")?;
    let old = bond.active().context("active_slave")?;
    ensure!(str_of(&before, "active_slave") == old, "page shows {} but the kernel {old}", before["active_slave"]);
    let other = bond.members.iter().find(|m| **m != old).context("a second member")?.clone();
    let waiter = Waiter::start(exabond, dir, BOND, n + 1)?;
    let since = monotonic_ns();
    match trigger {
        Trigger::Carrier => sh(&format!("ip link set {old}p down"))?,
        Trigger::Write => {
            bond.opt("active_slave", &other)?;
            String::new()
        }
        Trigger::AdminDown => sh(&format!("ip link set {old} down"))?,
    };
    let seen = waiter.finish()?;
    let kernel = wait_for("the kernel to switch", Duration::from_secs(10), || bond.active().filter(|a| *a != old))?;
    ensure!(kernel == other, "kernel switched to {kernel}, expected {other}");
    ensure!(
        str_of(&seen, "active_slave") == kernel,
        "reader saw active {} but the kernel has {kernel}",
        seen["active_slave"]
    );
    ensure!(
        seen["failover_count"].as_u64() == Some(n + 1),
        "reader saw failover_count {} after {n}",
        seen["failover_count"]
    );
    ensure!(seen["legacy_active"] == true, "legacy ACTIVE bit clear");
    if matches!(trigger, Trigger::Write) {
        // The probe sits at the entry of bond_change_active_slave: on an idle bond it sees a write to
        // active_slave before any netlink notification exists, so eBPF must publish it first.
        ensure!(
            seen["last_change_source"] == "ebpf" && seen["kernel_event_ns"].as_u64().is_some_and(|k| k != 0),
            "a write to active_slave on an idle bond was not published by the eBPF probe first: source {}, \
             kernel_event_ns {}",
            seen["last_change_source"],
            seen["kernel_event_ns"]
        );
    }
    // Carrier loss and admin-down: netlink or the poll may legitimately publish first, but the probe must
    // have seen the change all the same.
    let stamped = probe_saw(exabond, dir, BOND, n + 1, since)?;
    // Settled: no flapping, no double count, roles right.
    std::thread::sleep(Duration::from_millis(300));
    let after = read_page(exabond, dir, BOND)?;
    ensure!(after["failover_count"].as_u64() == Some(n + 1), "failover_count went on to {}", after["failover_count"]);
    ensure!(str_of(&after, "active_slave") == kernel, "page moved on to {}", after["active_slave"]);
    let roles: Vec<(String, String)> =
        after["slaves"].as_array().context("slaves")?.iter().map(|s| (str_of(s, "name"), str_of(s, "role"))).collect();
    ensure!(roles.contains(&(kernel.clone(), "active".into())), "slave roles {roles:?}");
    ensure!(seen["legacy_word"] != before["legacy_word"], "legacy word unchanged: exasock readers would miss it");
    Ok(Seen {
        from: old,
        to: kernel,
        source: str_of(&seen, "last_change_source"),
        kernel_to_page_us: stamped["kernel_to_page_us"].as_f64(),
        kernel_to_reader_us: seen["kernel_to_reader_us"].as_f64(),
    })
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |u| format!("{u:.0} µs"))
}

/// Run the scenario; `demo` narrates and shows the page after each step.
#[expect(clippy::too_many_lines, reason = "the group's checks in order, each a closure passed to the suite")]
pub fn run(exabond: &Path, demo: bool, s: &mut Suite) {
    let kernel = sh("uname -r").unwrap_or_default();
    let dir = Path::new(PAGE_DIR);
    let Some(bond) = s.setup("bond0: active-backup, miimon 10, two veth members", || Bond::create(BOND, 2)) else {
        return;
    };
    let Some(mut agent) =
        s.setup("agent loads eBPF, manages bond0, publishes its page", || Agent::start(exabond, dir, &[BOND], &[]))
    else {
        return;
    };
    s.check("initial page matches the kernel (active, members, mode 0444, fresh heartbeat)", || {
        let v = read_page(exabond, dir, BOND)?;
        let active = bond.active().context("active_slave")?;
        ensure!(str_of(&v, "active_slave") == active, "page {} kernel {active}", v["active_slave"]);
        let names: Vec<String> = v["slaves"].as_array().context("slaves")?.iter().map(|x| str_of(x, "name")).collect();
        ensure!(names == bond.members, "members {names:?}");
        ensure!(v["slaves"].as_array().unwrap().iter().all(|x| x["link"] == "up"), "links {}", v["slaves"]);
        ensure!(v["stale"] == false && v["legacy_active"] == true, "{v}");
        let mode = sh(&format!("stat -c %a {PAGE_DIR}/exabond-{BOND}"))?;
        ensure!(mode == "444", "page mode {mode}");
        Ok(())
    });
    show(exabond, demo);

    let mut seen = Vec::new();
    // Each failover needs every member up, which the step after the previous one restores.
    let mut members_up = Some(());
    for t in [Trigger::Carrier, Trigger::Write, Trigger::AdminDown] {
        if demo {
            println!("\n>>> {}", t.label());
        }
        if let Some(x) = s.check_after(members_up, t.label(), |()| failover(exabond, &bond, t)) {
            if demo {
                println!(
                    "    reader saw {} -> {} (first seen by {}; kernel→page {}, kernel→reader {})",
                    x.from,
                    x.to,
                    x.source,
                    fmt_us(x.kernel_to_page_us),
                    fmt_us(x.kernel_to_reader_us)
                );
            }
            seen.push((t, x));
        }
        show(exabond, demo);
        members_up = s.check(
            &format!("after the {}: members restored, links up on the page, no failover counted", t.short()),
            || {
                let before = read_page(exabond, dir, BOND)?;
                for m in &bond.members {
                    bond.restore(m)?;
                }
                wait_for("the page to show every link up", Duration::from_secs(5), || {
                    let v = read_page(exabond, dir, BOND).ok()?;
                    v["slaves"].as_array()?.iter().all(|x| x["link"] == "up").then_some(())
                })?;
                let after = read_page(exabond, dir, BOND)?;
                ensure!(after["failover_count"] == before["failover_count"], "restoring links counted a failover");
                Ok(())
            },
        );
    }

    if demo {
        println!("\n>>> all members lose carrier");
    }
    s.check_after(
        members_up,
        "all slaves down: no active slave, legacy ACTIVE bit clear, every link down, seen by the probe",
        |()| {
            let before = read_page(exabond, dir, BOND)?;
            let n = before["failover_count"].as_u64().context("failover_count")?;
            let waiter = Waiter::start(exabond, dir, BOND, n + 1)?;
            // The backups first, the active member last: one change, from it to none.
            let active = bond.active().context("active_slave")?;
            let mut order: Vec<&String> = bond.members.iter().filter(|m| **m != active).collect();
            order.push(&active);
            let since = monotonic_ns();
            for m in order {
                sh(&format!("ip link set {m}p down"))?;
            }
            let v = waiter.finish()?;
            wait_for("the kernel to have no active slave", Duration::from_secs(10), || {
                bond.active().filter(String::is_empty)
            })?;
            ensure!(v["active_slave"].is_null(), "active_slave {}", v["active_slave"]);
            ensure!(v["legacy_active"] == false, "legacy word {}", v["legacy_word"]);
            // The links come from netlink or the poll, possibly after the failover was published.
            let mut last = Value::Null;
            let v = wait_for("the page to show every member's link down", Duration::from_secs(5), || {
                let v = read_page(exabond, dir, BOND).ok()?;
                last = v.clone();
                let slaves = v["slaves"].as_array()?;
                (slaves.len() == bond.members.len() && slaves.iter().all(|x| x["link"] == "down")).then_some(v)
            })
            .map_err(|e| anyhow::anyhow!("{e}: {last}"))?;
            ensure!(v["active_slave"].is_null(), "an active slave again: {v}");
            ensure!(
                v["slaves"].as_array().unwrap().iter().all(|x| x["role"] == "backup"),
                "a member still active: {v}"
            );
            ensure!(v["failover_count"].as_u64() == Some(n + 1), "failover_count {} after {n}", v["failover_count"]);
            probe_saw(exabond, dir, BOND, n + 1, since)?;
            Ok(())
        },
    );
    show(exabond, demo);

    s.check("SIGTERM: agent exits 0, page stays and goes stale", || {
        let st = agent.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "agent exit status {st}\n{}", agent.log_text());
        wait_for("the page to go stale (heartbeat older than 1 s)", Duration::from_secs(5), || {
            read_page(exabond, dir, BOND).ok().filter(|v| v["stale"] == true)
        })?;
        Ok(())
    });

    println!("\nE2E kernel {kernel}: failover latencies (CLOCK_MONOTONIC; TCG-emulated, compare ratios only)");
    println!("E2E {:<58} {:>8} {:>14} {:>16}", "failover", "source", "kernel→page", "kernel→reader");
    for (t, x) in &seen {
        println!(
            "E2E {:<58} {:>8} {:>14} {:>16}",
            t.label(),
            x.source,
            fmt_us(x.kernel_to_page_us),
            fmt_us(x.kernel_to_reader_us)
        );
    }
    if !s.ok() {
        println!("--- agent log ---\n{}", agent.log_text());
    }
}
