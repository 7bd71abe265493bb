//! The end-to-end scenario: a real active-backup bond, the agent, three kinds of failover and "all slaves
//! down", each seen by a separate reader process through the page; then a clean SIGTERM.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context as _};
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
        kernel_to_page_us: seen["kernel_to_page_us"].as_f64(),
        kernel_to_reader_us: seen["kernel_to_reader_us"].as_f64(),
    })
}

fn fmt_us(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |u| format!("{u:.0} µs"))
}

/// Run the scenario; `demo` narrates and shows the page after each step.
pub fn run(exabond: &Path, demo: bool, s: &mut Suite) {
    let kernel = sh("uname -r").unwrap_or_default();
    let dir = Path::new(PAGE_DIR);
    let Some(bond) = s.check("bond0: active-backup, miimon 10, two veth members", || Bond::create(BOND, 2)) else {
        return;
    };
    let Some(mut agent) =
        s.check("agent loads eBPF, manages bond0, publishes its page", || Agent::start(exabond, dir, &[BOND], &[]))
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
    for t in [Trigger::Carrier, Trigger::Write, Trigger::AdminDown] {
        if demo {
            println!("\n>>> {}", t.label());
        }
        if let Some(x) = s.check(t.label(), || failover(exabond, &bond, t)) {
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
        s.check("members restored (links up, page unchanged active)", || {
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
        });
    }

    if demo {
        println!("\n>>> all members lose carrier");
    }
    s.check("all slaves down: no active slave, legacy ACTIVE bit clear", || {
        let before = read_page(exabond, dir, BOND)?;
        let n = before["failover_count"].as_u64().context("failover_count")?;
        let waiter = Waiter::start(exabond, dir, BOND, n + 1)?;
        for m in &bond.members {
            sh(&format!("ip link set {m}p down"))?;
        }
        let v = waiter.finish()?;
        wait_for("the kernel to have no active slave", Duration::from_secs(10), || {
            bond.active().filter(String::is_empty)
        })?;
        ensure!(v["active_slave"].is_null(), "active_slave {}", v["active_slave"]);
        ensure!(v["legacy_active"] == false, "legacy word {}", v["legacy_word"]);
        ensure!(v["slaves"].as_array().unwrap().iter().all(|x| x["link"] == "down" || x["role"] == "backup"), "{v}");
        Ok(())
    });
    show(exabond, demo);

    s.check("SIGTERM: agent exits 0, page stays and goes stale", || {
        let st = agent.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "agent exit status {st}\n{}", agent.log_text());
        std::thread::sleep(Duration::from_millis(1300));
        let v = read_page(exabond, dir, BOND)?;
        ensure!(v["stale"] == true, "page not stale after the agent stopped: {v}");
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
