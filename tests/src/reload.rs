//! The bonding module unloaded and loaded again under a running agent (as the kernel's selftest 6.1
//! `bond-break-lacpdu-tx.sh` does): the kprobes on the module's functions go with it, the agent says
//! they are detached, attaches them again when the module is back, and a failover on a bond managed after
//! the reload is seen by the probe (`kernel_event_ns` on the page).
//!
//! Runs last in its boot (it unloads the module every other group uses).

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use exabond_common::clock::monotonic_ns;
use serde_json::Value;

use crate::lab::{cli, read_page, read_sysfs, sh, wait_for, write_sysfs, Agent, Bond};
use crate::scenario::probe_saw;
use crate::suite::Suite;

const PAGE_DIR: &str = "/run/exabond-reload";
const BEFORE: &str = "rlbond";
const AFTER: &str = "rlbond2";
/// Generous: the self-check looks every 2 s and the VM is emulated (TCG).
const PROBE_TIMEOUT: Duration = Duration::from_secs(15);

/// `exabond status --json`.
fn status(exabond: &Path) -> anyhow::Result<Value> {
    let (code, out, err) = cli(exabond, &["status", "--json"])?;
    ensure!(code == 0, "exabond status exited {code}: {err}");
    serde_json::from_str(&out).with_context(|| format!("status JSON: {out}"))
}

/// Wait until `exabond status` says the failover probe is `state`; the status seen then.
fn probe_state(exabond: &Path, state: &str) -> anyhow::Result<Value> {
    let mut last = Value::Null;
    wait_for(&format!("exabond status to say the failover probe is {state}"), PROBE_TIMEOUT, || {
        last = status(exabond).ok()?;
        (last["failover_probe"] == state).then(|| last.clone())
    })
    .map_err(|e| anyhow::anyhow!("{e}: last status {last}"))
}

/// Write the other member into `active_slave`; the probe must stamp the failover on the page.
fn failover(exabond: &Path, bond: &Bond) -> anyhow::Result<Value> {
    let dir = Path::new(PAGE_DIR);
    let n = read_page(exabond, dir, &bond.name)?["failover_count"].as_u64().context("failover_count")?;
    let old = bond.active().context("active_slave")?;
    let other = bond.members.iter().find(|m| **m != old).context("a second member")?;
    let since = monotonic_ns();
    bond.opt("active_slave", other)?;
    probe_saw(exabond, dir, &bond.name, n + 1, since)
}

/// Delete every bond (`modprobe -r bonding` fails while one exists) and unload the module.
fn unload() -> anyhow::Result<()> {
    for b in read_sysfs("/sys/class/net/bonding_masters").unwrap_or_default().split_whitespace() {
        write_sysfs("/sys/class/net/bonding_masters", &format!("-{b}"))?;
    }
    sh("modprobe -r bonding")?;
    ensure!(!Path::new("/sys/module/bonding").exists(), "/sys/module/bonding is still there");
    Ok(())
}

/// The group.
pub fn run(exabond: &Path, s: &mut Suite) {
    let Some(bond) = s.setup("reload: bond rlbond of two veths", || Bond::create(BEFORE, 2)) else { return };
    // `--no-lsm`: the kprobes, the subject here, are attached in every mode, and the start-up skips the
    // LSM programs' verification (seconds under TCG on 6.1).
    let Some(mut agent) = s.setup("reload: agent managing rlbond", || {
        Agent::start(exabond, Path::new(PAGE_DIR), &[BEFORE], &["--release", "--no-lsm"])
    }) else {
        return;
    };
    s.check("reload: before the reload the probe sees a failover and status says attached", || {
        let st = status(exabond)?;
        ensure!(st["failover_probe"] == "attached", "status before the reload: {st}");
        failover(exabond, &bond)
    });
    drop(bond);
    s.check("reload: bonding module unloaded: status says the failover probe is detached", || {
        unload()?;
        let st = probe_state(exabond, "detached")?;
        ensure!(
            st["failover_probe_reason"].as_str().is_some_and(|r| r.contains("not loaded")),
            "reason: {}",
            st["failover_probe_reason"]
        );
        ensure!(st["degraded"] == false, "a module unload is no degraded enforcement: {st}");
        agent.wait_log("FAILOVER PROBE DETACHED", PROBE_TIMEOUT)
    });
    let again = s.check("reload: module loaded again: kprobes attached again, logged and counted", || {
        let b = Bond::create(AFTER, 2)?;
        let st = probe_state(exabond, "attached")?;
        ensure!(st["failover_probe_reattaches"].as_u64() == Some(1), "reattaches: {st}");
        agent.wait_log("kprobes attached again", PROBE_TIMEOUT)?;
        Ok(b)
    });
    s.check_after(again, "reload: a bond managed after the reload: failover seen by the probe", |b| {
        let (code, out, err) = cli(exabond, &["manage", AFTER])?;
        ensure!(code == 0, "exabond manage {AFTER} exited {code}: {out} {err}");
        wait_for("the page of rlbond2", Duration::from_secs(10), || {
            read_page(exabond, Path::new(PAGE_DIR), AFTER).ok()
        })?;
        let v = failover(exabond, &b)?;
        ensure!(v["kernel_event_ns"].as_u64().is_some_and(|k| k != 0), "{v}");
        Ok(())
    });
    s.check("reload: agent exits 0", || {
        let st = agent.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "agent exit status {st}\n{}", agent.log_text());
        Ok(())
    });
}
