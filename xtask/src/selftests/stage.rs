//! The folders the selftest boots share with their guests (`<target dir>/selftests/<kernel>-<mode>`, apart
//! from the end-to-end suite's `<target dir>/vm` and from each other), and what each run left in its `out/`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use super::verdicts::TestRun;
use super::Mode;
use crate::cargo::{root, run_cmd, target_dir};
use crate::setup::testbed_cmd;

/// Where the bonding tests sit in a selftests tree.
pub const BONDING: &str = "tools/testing/selftests/drivers/net/bonding";

/// The cached selftests of kernel `flavour` (`testbed.sh selftests`, prepared by the set-up).
pub fn sources(flavour: &str) -> anyhow::Result<PathBuf> {
    let out = testbed_cmd().args(["selftests", flavour]).stderr(Stdio::inherit()).output()?;
    if !out.status.success() {
        bail!("the bonding selftests of kernel {flavour} are not prepared: run `cargo xtask setup --kernel {flavour}`");
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// The kselftest time limit of the bonding folder (`settings`: `timeout=N`; kselftest's default 45 s).
pub fn time_limit(src: &Path) -> u64 {
    std::fs::read_to_string(src.join(BONDING).join("settings"))
        .ok()
        .and_then(|s| s.lines().find_map(|l| l.strip_prefix("timeout=").and_then(|v| v.trim().parse().ok())))
        .unwrap_or(45)
}

/// The factor on the kselftest limit: the guest is emulated and shares two host cores with another VM, so
/// `EXABOND_E2E_TIMEOUT_SCALE` (default 3) scales it as it scales the end-to-end suite's waits. (6.1's 60 s
/// is tight: its bond-break-lacpdu-tx.sh took 45 s with two VMs and other load on the host.)
pub fn time_scale() -> anyhow::Result<u64> {
    match std::env::var("EXABOND_E2E_TIMEOUT_SCALE") {
        Ok(v) => {
            v.parse().map_err(|_| anyhow::anyhow!("EXABOND_E2E_TIMEOUT_SCALE={v:?}: expected a whole number such as 3"))
        }
        Err(_) => Ok(3),
    }
}

/// A fresh folder for one boot running `mode`, `<flavour>-<name>` (`name`: the mode's name, or "baseline2"
/// for `--no-agent`'s second baseline; "-retry" appended for the second pair): the selftests (`src/`, copied with their symlinks), the guest script, the
/// agent for `Mode::Agent`, and `run.sh`, the script the test bed runs, naming the tests and their time
/// limit (seconds).
pub fn stage(
    flavour: &str,
    mode: Mode,
    name: &str,
    src: &Path,
    exabond: &Path,
    tests: &[String],
    limit: u64,
) -> anyhow::Result<PathBuf> {
    let dir = target_dir().join("selftests").join(format!("{flavour}-{name}"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir).with_context(|| format!("cleaning {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir.join("src"))?;
    run_cmd(Command::new("cp").arg("-a").arg(src.join("tools")).arg(dir.join("src")))?;
    std::fs::copy(root().join("xtask/vm/selftests-guest.sh"), dir.join("selftests-guest.sh"))
        .context("staging xtask/vm/selftests-guest.sh")?;
    if mode == Mode::Agent {
        std::fs::copy(exabond, dir.join("exabond")).with_context(|| format!("staging {}", exabond.display()))?;
    }
    for t in tests {
        if !t.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
            bail!("unexpected test program name {t:?} in {BONDING}/Makefile");
        }
    }
    std::fs::write(
        dir.join("run.sh"),
        format!(
            "#!/bin/sh\n# Written by cargo xtask selftests; runs in the guest.\ncd \"$(dirname \"$0\")\"\nexport SELFTEST_LIMIT={limit}\nexec bash ./selftests-guest.sh {} {}\n",
            mode.name(),
            tests.join(" ")
        ),
    )?;
    Ok(dir)
}

/// What the guest left in `<dir>/out`.
pub struct Results {
    /// The tests that ran, by program name.
    pub tests: BTreeMap<String, TestRun>,
    /// The harness's own error (`error.txt`), if it failed.
    pub error: Option<String>,
    /// The agent's final check (`agent-final.txt`: "ok"), `Mode::Agent` only.
    pub agent_final: Option<String>,
    /// What the agent checks between tests noted.
    pub agent_notes: Vec<String>,
    /// The guest's dmesg lines that name a WARNING, BUG, Oops or panic.
    pub dmesg_alerts: Vec<String>,
}

/// Read `<dir>/out` for `tests`.
pub fn results(dir: &Path, tests: &[String]) -> Results {
    let out = dir.join("out");
    let read = |name: &str| std::fs::read_to_string(out.join(name)).ok();
    let tests = tests
        .iter()
        .filter_map(|t| {
            let run = TestRun::parse(&read(&format!("{t}.rc"))?, &read(&format!("{t}.log")).unwrap_or_default())?;
            Some((t.clone(), run))
        })
        .collect();
    let lines = |s: Option<String>| s.map(|s| s.lines().map(str::to_owned).collect::<Vec<_>>()).unwrap_or_default();
    Results {
        tests,
        error: read("error.txt").map(|s| s.trim().to_owned()),
        agent_final: read("agent-final.txt").map(|s| s.trim().to_owned()),
        agent_notes: lines(read("agent-notes.txt")),
        dmesg_alerts: lines(read("dmesg.txt")).into_iter().filter(|l| is_alert(l)).collect(),
    }
}

/// A dmesg line worth showing: a kernel WARNING, BUG, Oops or panic.
fn is_alert(line: &str) -> bool {
    ["WARNING:", "BUG:", "BUG ", "Oops", "Kernel panic", "Call Trace", "RIP: 0010:"].iter().any(|k| line.contains(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dmesg_alerts() {
        assert!(is_alert("[  12.3] WARNING: CPU: 0 PID: 1 at net/core/dev.c:1 foo"));
        assert!(is_alert("[  12.3] BUG: kernel NULL pointer dereference"));
        assert!(!is_alert("[  12.3] bond0: (slave veth0): Enslaving as a backup interface"));
    }

    #[test]
    fn time_limit_from_settings() {
        let d = std::env::temp_dir().join(format!("xtask-selftests-{}", std::process::id()));
        std::fs::create_dir_all(d.join(BONDING)).unwrap();
        assert_eq!(time_limit(&d), 45, "no settings file: kselftest's default");
        std::fs::write(d.join(BONDING).join("settings"), "timeout=1200\n").unwrap();
        assert_eq!(time_limit(&d), 1200);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
