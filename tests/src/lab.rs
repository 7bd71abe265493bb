//! The lab inside the VM: an active-backup bond of veth pairs, the agent process, reader processes.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::Value;

/// Run a shell command; its stdout, or an error with its stderr.
pub fn sh(cmd: &str) -> anyhow::Result<String> {
    let out = Command::new("sh").arg("-c").arg(cmd).output().with_context(|| format!("spawn sh -c {cmd:?}"))?;
    if !out.status.success() {
        bail!("`{cmd}` failed ({}): {}", out.status, String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// Write a sysfs attribute.
pub fn write_sysfs(path: &str, value: &str) -> anyhow::Result<()> {
    std::fs::write(path, value).with_context(|| format!("write {value:?} to {path}"))
}

/// Read a sysfs attribute (trimmed).
pub fn read_sysfs(path: &str) -> anyhow::Result<String> {
    Ok(std::fs::read_to_string(path).with_context(|| format!("read {path}"))?.trim().to_owned())
}

/// `d` times the suite's timeout scale: `EXABOND_E2E_TIMEOUT_SCALE` (default 3). The guest is emulated
/// (TCG) and runs several times slower when the host is busy; a generous limit costs nothing when the
/// awaited condition comes true early, and every limit stays finite, so a real hang still fails.
pub fn scaled(d: Duration) -> Duration {
    let k = std::env::var("EXABOND_E2E_TIMEOUT_SCALE").ok().and_then(|v| v.parse::<u32>().ok()).unwrap_or(3);
    d * k.max(1)
}

/// Poll `f` every 10 ms until it returns `Some`, or fail after `timeout` (scaled, see [`scaled`]) saying
/// `what`.
pub fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> anyhow::Result<T> {
    let timeout = scaled(timeout);
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() > timeout {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// An active-backup bond with veth members `<bond>-aN` whose peers are `<bond>-aNp`.
pub struct Bond {
    /// Bond name.
    pub name: String,
    /// Member names.
    pub members: Vec<String>,
}

impl Bond {
    /// Create the bond (miimon 10) with `n` veth members, all up.
    pub fn create(name: &str, n: usize) -> anyhow::Result<Self> {
        let _ = sh("modprobe bonding max_bonds=0");
        write_sysfs("/sys/class/net/bonding_masters", &format!("+{name}"))?;
        let b = Self { name: name.into(), members: (0..n).map(|i| format!("{name}-a{i}")).collect() };
        b.opt("mode", "active-backup")?;
        b.opt("miimon", "10")?;
        for m in &b.members {
            sh(&format!("ip link add {m} type veth peer name {m}p && ip link set {m}p up"))?;
            b.opt("slaves", &format!("+{m}"))?;
        }
        sh(&format!("ip link set {name} up"))?;
        wait_for("an active slave", Duration::from_secs(10), || b.active().filter(|a| !a.is_empty()))?;
        Ok(b)
    }

    /// Write a bonding option.
    pub fn opt(&self, opt: &str, value: &str) -> anyhow::Result<()> {
        write_sysfs(&format!("/sys/class/net/{}/bonding/{opt}", self.name), value)
    }

    /// The kernel's active slave (sysfs), `None` if unreadable.
    pub fn active(&self) -> Option<String> {
        read_sysfs(&format!("/sys/class/net/{}/bonding/active_slave", self.name)).ok()
    }

    /// The MII status of a member as the bonding driver reports it.
    pub fn mii_up(&self, member: &str) -> bool {
        std::fs::read_to_string(format!("/proc/net/bonding/{}", self.name))
            .ok()
            .and_then(|t| {
                let sect = t.split("Slave Interface: ").find(|s| s.starts_with(&format!("{member}\n")))?.to_owned();
                Some(sect.contains("MII Status: up"))
            })
            .unwrap_or(false)
    }

    /// Bring a member and its peer up and wait until the driver sees its link up.
    pub fn restore(&self, member: &str) -> anyhow::Result<()> {
        sh(&format!("ip link set {member}p up && ip link set {member} up"))?;
        wait_for(&format!("{member} MII up"), Duration::from_secs(10), || self.mii_up(member).then_some(()))
    }
}

impl Drop for Bond {
    fn drop(&mut self) {
        for m in &self.members {
            let _ = sh(&format!("ip link del {m}"));
        }
        let _ = write_sysfs("/sys/class/net/bonding_masters", &format!("-{}", self.name));
    }
}

/// The agent process under test.
pub struct Agent {
    child: Child,
    /// Its log file.
    pub log: PathBuf,
}

impl Agent {
    /// Start `exabond agent --page-dir DIR --member-driver veth --bond B... EXTRA` and wait until every
    /// bond's page is there with a fresh heartbeat from this agent.
    pub fn start(exabond: &Path, page_dir: &Path, bonds: &[&str], extra: &[&str]) -> anyhow::Result<Self> {
        let mut args = vec!["agent".to_owned(), "--page-dir".into(), page_dir.display().to_string()];
        args.extend(["--member-driver".into(), "veth".into()]);
        for b in bonds {
            args.extend(["--bond".into(), (*b).to_owned()]);
        }
        args.extend(extra.iter().map(|e| (*e).to_owned()));
        Self::spawn(exabond, &args, page_dir, bonds)
    }

    /// Start `exabond ARGS` and wait until the pages of `bonds` in `page_dir` are fresh and written by it.
    pub fn spawn(exabond: &Path, args: &[String], page_dir: &Path, bonds: &[&str]) -> anyhow::Result<Self> {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = PathBuf::from(format!("/tmp/exabond-agent-{}-{n}.log", std::process::id()));
        let logf = std::fs::File::create(&log)?;
        let child = Command::new(exabond)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(logf.try_clone()?)
            .stderr(logf)
            .spawn()
            .with_context(|| format!("spawn {}", exabond.display()))?;
        let mut agent = Self { child, log };
        for b in bonds {
            let r = wait_for(&format!("the page of {b}"), Duration::from_secs(120), || {
                if let Ok(Some(st)) = agent.child.try_wait() {
                    return Some(Err(anyhow::anyhow!("agent exited early ({st})")));
                }
                let pid = u64::from(agent.child.id());
                read_page(exabond, page_dir, b)
                    .ok()
                    .filter(|v| v["stale"] == false && v["agent_pid"].as_u64() == Some(pid))
                    .map(Ok)
            });
            if let Err(e) = r.and_then(|x| x) {
                bail!("{e:#}\n--- agent log ---\n{}", agent.log_text());
            }
        }
        Ok(agent)
    }

    /// Wait until the agent's log contains `needle` (the agent logs what it did after it released its
    /// locks, so a line can follow the state it describes by a few milliseconds).
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> anyhow::Result<()> {
        wait_for(&format!("{needle:?} in the agent's log"), timeout, || self.log_text().contains(needle).then_some(()))
            .map_err(|e| anyhow::anyhow!("{e}\n--- agent log ---\n{}", self.log_text()))
    }

    /// The agent's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit status within `timeout`.
    pub fn terminate(&mut self, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
        sh(&format!("kill -TERM {}", self.child.id()))?;
        wait_for("the agent to exit", timeout, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for Agent {
    /// SIGTERM first (so an agent started with `--release` removes its pins even when a check failed
    /// half-way), SIGKILL if it does not stop.
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) && self.terminate(Duration::from_secs(10)).is_ok() {
            return;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `exabond read <bond> --json` in a separate process.
pub fn read_page(exabond: &Path, page_dir: &Path, bond: &str) -> anyhow::Result<Value> {
    let out = Command::new(exabond).arg("read").arg(bond).arg("--json").arg("--page-dir").arg(page_dir).output()?;
    if !out.status.success() {
        bail!("exabond read {bond}: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// A reader process spinning on the page until the failover count reaches a target.
pub struct Waiter {
    child: Child,
}

impl Waiter {
    /// Start it and wait until it has mapped the page.
    pub fn start(exabond: &Path, page_dir: &Path, bond: &str, count: u64) -> anyhow::Result<Self> {
        Self::start_for(exabond, page_dir, bond, count, Duration::from_secs(20))
    }

    /// [`Self::start`] with how long the reader waits for the count before it fails.
    pub fn start_for(
        exabond: &Path,
        page_dir: &Path,
        bond: &str,
        count: u64,
        timeout: Duration,
    ) -> anyhow::Result<Self> {
        let mut child = Command::new(exabond)
            .arg("read")
            .arg(bond)
            .arg("--json")
            .arg("--page-dir")
            .arg(page_dir)
            .args(["--wait-count", &count.to_string(), "--timeout-ms", &timeout.as_millis().to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()?;
        let mut err = BufReader::new(child.stderr.take().context("stderr")?);
        let mut line = String::new();
        err.read_line(&mut line)?;
        if line.trim() != "ready" {
            bail!("reader did not start: {line}");
        }
        Ok(Self { child })
    }

    /// Stop it (a reader whose check failed half-way).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Its snapshot once the target was seen.
    pub fn finish(self) -> anyhow::Result<Value> {
        let out = self.child.wait_with_output()?;
        if !out.status.success() {
            bail!("reader failed ({})", out.status);
        }
        Ok(serde_json::from_slice(&out.stdout)?)
    }
}

/// Run `exabond <args>`: (exit code, stdout, stderr).
pub fn cli(exabond: &Path, args: &[&str]) -> anyhow::Result<(i32, String, String)> {
    let out = Command::new(exabond).args(args).output().with_context(|| format!("spawn exabond {args:?}"))?;
    Ok((
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        String::from_utf8_lossy(&out.stderr).trim().to_owned(),
    ))
}

/// Run a shell command: (success, combined stderr+stdout).
pub fn sh_try(cmd: &str) -> (bool, String) {
    match Command::new("sh").arg("-c").arg(cmd).output() {
        Ok(o) => (
            o.status.success(),
            format!("{}{}", String::from_utf8_lossy(&o.stderr), String::from_utf8_lossy(&o.stdout)),
        ),
        Err(e) => (false, e.to_string()),
    }
}

/// The bonding mode of `bond` as sysfs shows it (e.g. `active-backup 1`).
pub fn bond_mode(bond: &str) -> String {
    read_sysfs(&format!("/sys/class/net/{bond}/bonding/mode")).unwrap_or_default()
}

/// The members of `bond` (sysfs `slaves`).
pub fn bond_slaves(bond: &str) -> Vec<String> {
    read_sysfs(&format!("/sys/class/net/{bond}/bonding/slaves"))
        .unwrap_or_default()
        .split_whitespace()
        .map(str::to_owned)
        .collect()
}

/// Create an empty bond in `mode` (down), miimon 10.
pub fn empty_bond(name: &str, mode: &str) -> anyhow::Result<()> {
    let _ = sh("modprobe bonding max_bonds=0");
    write_sysfs("/sys/class/net/bonding_masters", &format!("+{name}"))?;
    write_sysfs(&format!("/sys/class/net/{name}/bonding/mode"), mode)?;
    write_sysfs(&format!("/sys/class/net/{name}/bonding/miimon"), "10")
}

impl Agent {
    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the agent process is still running.
    pub fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGKILL it (no clean-up at all).
    pub fn kill9(&mut self) -> anyhow::Result<()> {
        sh(&format!("kill -KILL {}", self.child.id()))?;
        wait_for("the agent to die", Duration::from_secs(10), || self.child.try_wait().ok().flatten())?;
        Ok(())
    }
}
