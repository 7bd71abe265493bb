//! Operator views against a live agent in the VM: the config file (and its errors), `exabond status`,
//! `exabond watch --json` (failover, veto with pid/comm, MAC pitfall, shutdown), the metrics endpoint, the
//! MAC pitfall warning. The agent here is started from a config file alone (bond, member drivers, page
//! directory, metrics address), with `--release` so that it leaves no pins behind.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use exabond_common::clock::monotonic_ns;
use serde_json::Value;

use crate::lab::{cli, read_page, read_sysfs, sh, sh_try, wait_for, Agent, Bond};
use crate::scenario::probe_saw;
use crate::suite::Suite;
use crate::syscalls::write_file;

const PAGE_DIR: &str = "/run/exabond";
const BOND: &str = "obond";
const DUMMY: &str = "odum";
const METRICS_ADDR: &str = "127.0.0.1:9464";
const CONFIG: &str = "/tmp/exabond-operate.toml";
/// The member veto's errno for a device that is not a permitted member.
const ENODEV: i32 = 19;
/// Generous: the VM is emulated (TCG).
const EVENT_TIMEOUT: Duration = Duration::from_secs(15);
/// The agent looks for MAC pitfalls in each full link dump (at once after a member leaves).
const PITFALL_TIMEOUT: Duration = Duration::from_secs(30);

/// `exabond watch --json` in a child process; its lines are collected by two threads.
struct Watcher {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
}

impl Watcher {
    /// Start it and wait until it is subscribed (it says so on stderr once the agent has answered).
    fn start(exabond: &Path) -> anyhow::Result<Self> {
        let mut child = Command::new(exabond)
            .args(["watch", "--json"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawn exabond watch")?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let out = BufReader::new(child.stdout.take().context("stdout")?);
        let l = lines.clone();
        std::thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                l.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(line);
            }
        });
        let mut err = child.stderr.take().context("stderr")?;
        let e = stderr.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 512];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                e.lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let mut w = Self { child, lines, stderr };
        let r = wait_for("exabond watch to subscribe", Duration::from_secs(10), || {
            if w.stderr_text().contains("watching") {
                return Some(Ok(()));
            }
            match w.child.try_wait() {
                Ok(Some(st)) => Some(Err(anyhow::anyhow!("exabond watch exited ({st})"))),
                _ => None,
            }
        });
        if let Err(e) = r.and_then(|x| x) {
            bail!("{e:#}; stderr: {}", w.stderr_text());
        }
        Ok(w)
    }

    fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// The first JSON line that satisfies `pred`, waiting up to [`EVENT_TIMEOUT`].
    fn find(&self, what: &str, pred: impl Fn(&Value) -> bool) -> anyhow::Result<Value> {
        wait_for(what, EVENT_TIMEOUT, || {
            self.lines().iter().filter_map(|l| serde_json::from_str::<Value>(l).ok()).find(|v| pred(v))
        })
        .map_err(|e| {
            anyhow::anyhow!("{e}; watch printed:\n{}\nstderr: {}", self.lines().join("\n"), self.stderr_text())
        })
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn status_json(exabond: &Path) -> anyhow::Result<Value> {
    let (c, out, err) = cli(exabond, &["status", "--json"])?;
    ensure!(c == 0, "exabond status --json: exit {c}: {err}");
    serde_json::from_str(&out).with_context(|| format!("status JSON: {out}"))
}

fn bond_entry(status: &Value) -> anyhow::Result<Value> {
    status["bonds"]
        .as_array()
        .and_then(|a| a.iter().find(|b| b["bond"] == BOND))
        .cloned()
        .with_context(|| format!("{BOND} not in status: {status}"))
}

/// `GET path` over a plain TCP connection: (status line, whole response).
fn http_get(path: &str) -> anyhow::Result<(String, String)> {
    let mut s = std::net::TcpStream::connect(METRICS_ADDR).with_context(|| format!("connect {METRICS_ADDR}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))?;
    s.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    let status = out.lines().next().unwrap_or_default().to_owned();
    Ok((status, out))
}

/// The value of the sample line starting with `series ` (e.g. `exabond_failovers_total{bond="obond"}`).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn config_errors(exabond: &Path) -> anyhow::Result<()> {
    let cases = [
        (
            "/tmp/exabond-bad-value.toml",
            "bonds = [\"obond\"]\npage_dir = \"/run/exabond\"\npoll_ms = \"fast\"\n",
            "poll_ms",
            "line 3",
        ),
        ("/tmp/exabond-bad-key.toml", "bonds = [\"obond\"]\nbondz = [\"x\"]\n", "bondz", "line 2"),
        ("/tmp/exabond-bad-addr.toml", "metrics_addr = \"localhost\"\n", "metrics_addr", "line 1"),
    ];
    for (path, text, key, line) in cases {
        std::fs::write(path, text)?;
        let (c, out, err) = cli(exabond, &["agent", "--config", path])?;
        ensure!(c != 0, "exabond agent --config {path} succeeded: {out} {err}");
        ensure!(
            err.contains(path) && err.contains(key) && err.contains(line),
            "stderr of --config {path} lacks the file, `{key}` or `{line}`: {err}"
        );
        let _ = std::fs::remove_file(path);
    }
    Ok(())
}

/// The member whose permanent MAC the bond carries (the first one enslaved, normally).
fn donor_member(exabond: &Path, bond: &Bond) -> anyhow::Result<(String, String)> {
    let mac = read_sysfs(&format!("/sys/class/net/{BOND}/address"))?;
    let st = bond_entry(&status_json(exabond)?)?;
    let from_page = st["page"]["slaves"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["mac"] == mac.as_str()))
        .and_then(|s| s["name"].as_str())
        .map(str::to_owned);
    // Fallback: the bonding driver's own record of each member's permanent address.
    let from_proc = || {
        let t = std::fs::read_to_string(format!("/proc/net/bonding/{BOND}")).ok()?;
        t.split("Slave Interface: ").skip(1).find_map(|sect| {
            let name = sect.lines().next()?.trim().to_owned();
            sect.lines().any(|l| l.trim() == format!("Permanent HW addr: {mac}")).then_some(name)
        })
    };
    let donor = from_page.or_else(from_proc).with_context(|| {
        format!("no member of {BOND} has its MAC {mac} as permanent address; members {:?}: {st}", bond.members)
    })?;
    Ok((donor, mac))
}

/// `exabond status` and `status --json` show everything an operator needs, enforcement by the BPF LSM
/// included (this group runs in the boot with the BPF LSM only).
fn status_shows_everything(exabond: &Path, bond: &Bond) -> anyhow::Result<()> {
    let mut last = Value::Null;
    let r = wait_for("both members up in status", Duration::from_secs(10), || {
        let st = status_json(exabond).ok()?;
        let b = bond_entry(&st).ok()?;
        last = st.clone();
        let slaves = b["page"]["slaves"].as_array()?.clone();
        (slaves.len() == 2 && slaves.iter().all(|x| x["link"] == "up" && x["driver"] == "veth")).then_some((st, b))
    });
    let (st, b) = r.map_err(|e| anyhow::anyhow!("{e}: {last}"))?;
    ensure!(b["mode"].as_str().is_some_and(|m| m.starts_with("active-backup")), "mode: {b}");
    let active = bond.active().context("active_slave")?;
    ensure!(
        b["page"]["active_slave"] == active.as_str(),
        "active slave {} vs kernel {active}",
        b["page"]["active_slave"]
    );
    ensure!(b["page"]["failover_count"].is_u64(), "failover_count: {b}");
    ensure!(b["page"]["last_change_source"].is_string(), "last_change_source: {b}");
    ensure!(b["vetoes"].is_u64(), "vetoes: {b}");
    ensure!(b["mac_pitfall"] == false, "MAC pitfall before anything happened: {b}");
    ensure!(st["enforcement"] == "lsm-veto", "enforcement (the BPF LSM is active in this boot): {st}");
    let (c, text, err) = cli(exabond, &["status"])?;
    ensure!(c == 0, "exabond status: exit {c}: {err}");
    for needle in [
        "enforcement lsm-veto".to_owned(),
        format!("{BOND}  mode active-backup"),
        format!("active {active}"),
        "failovers ".into(),
        " ago by ".into(),
        "vetoes ".into(),
        "driver veth".into(),
        "link up".into(),
    ] {
        ensure!(text.contains(&needle), "status text lacks {needle:?}:\n{text}");
    }
    Ok(())
}

/// The operate suite (the boot with the BPF LSM: `exabond-e2e test`).
#[expect(clippy::too_many_lines, reason = "the group's checks in order, each a closure passed to the suite")]
#[expect(clippy::many_single_char_names, reason = "s is the suite; each check's closure keeps its own short names")]
pub fn run(exabond: &Path, s: &mut Suite) {
    s.check("config: a bad file is refused, naming the file, the key and the line", || config_errors(exabond));

    let Some(bond) = s.setup("operate lab: bond obond of two veth members", || Bond::create(BOND, 2)) else {
        return;
    };
    let config = format!(
        "# written by exabond-e2e (operate)\nbonds = [\"{BOND}\"]\nmember_drivers = [\"veth\"]\npage_dir = \
         \"{PAGE_DIR}\"\nmetrics_addr = \"{METRICS_ADDR}\"\n"
    );
    let Some(mut agent) = s.check("agent from --config alone: bond, member drivers, page dir, metrics address", || {
        std::fs::write(CONFIG, &config)?;
        let args: Vec<String> = ["agent", "--config", CONFIG, "--release"].map(str::to_owned).to_vec();
        let a = Agent::spawn(exabond, &args, Path::new(PAGE_DIR), &[BOND])?;
        let st = status_json(exabond)?;
        ensure!(
            st["member_drivers"].as_array().is_some_and(|d| d.iter().any(|x| x == "veth")),
            "member drivers from the file missing: {st}"
        );
        Ok(a)
    }) else {
        return;
    };

    s.check(
        "status and status --json: mode, active slave, members (driver, link), failovers, source, enforcement \
         lsm-veto, vetoes",
        || status_shows_everything(exabond, &bond),
    );

    let Some(watcher) = s.check("watch --json subscribes", || Watcher::start(exabond)) else {
        return;
    };

    // The failover count the watch line reported, for the metrics check.
    let failovers = s.check(
        "watch: a failover (write to active_slave) is one JSON line, published by eBPF first and seen by the \
         probe",
        || {
            let before = read_page(exabond, Path::new(PAGE_DIR), BOND)?;
            let n = before["failover_count"].as_u64().context("failover_count")?;
            let old = bond.active().context("active_slave")?;
            let other = bond.members.iter().find(|m| **m != old).context("a second member")?.clone();
            let since = monotonic_ns();
            bond.opt("active_slave", &other)?;
            let v = watcher.find("a failover line", |v| {
                v["event"] == "failover" && v["bond"] == BOND && v["to"] == other.as_str()
            })?;
            ensure!(v["from"] == old.as_str(), "from: {v}");
            ensure!(v["failover_count"].as_u64() == Some(n + 1), "failover_count after {n}: {v}");
            // The probe at the entry of bond_change_active_slave sees a write to active_slave on an idle bond
            // before any netlink notification exists.
            ensure!(v["source"] == "ebpf", "source (the eBPF probe must publish it first): {v}");
            ensure!(v["kernel_to_page_us"].is_number(), "kernel_to_page_us: {v}");
            probe_saw(exabond, Path::new(PAGE_DIR), BOND, n + 1, since)?;
            Ok(n + 1)
        },
    );

    // The veto count the status showed, for the metrics check.
    let vetoes = s.check("watch: a refused member is a veto line with pid and comm, counted in status", || {
        let _ = sh("modprobe dummy numdummies=0");
        sh(&format!("ip link add {DUMMY} type dummy"))?;
        let ifindex: u64 = read_sysfs(&format!("/sys/class/net/{BOND}/ifindex"))?.parse()?;
        let r = write_file(&format!("/sys/class/net/{BOND}/bonding/slaves"), &format!("+{DUMMY}"));
        ensure!(r == Err(ENODEV), "+{DUMMY}: {r:?}, expected the veto's errno ENODEV");
        let v = watcher.find("a veto line", |v| v["event"] == "veto" && v["bond_ifindex"] == ifindex)?;
        ensure!(v["comm"].as_str().is_some_and(|c| !c.is_empty()), "no comm: {v}");
        ensure!(
            v["pid"] == u64::from(std::process::id()),
            "pid {} is not ours ({}): {v}",
            v["pid"],
            std::process::id()
        );
        ensure!(v["bond"] == BOND, "bond name missing: {v}");
        ensure!(v["detail"].as_str().is_some_and(|d| d.contains(DUMMY)), "detail: {v}");
        let b = bond_entry(&status_json(exabond)?)?;
        let n = b["vetoes"].as_u64().filter(|&n| n >= 1).with_context(|| format!("veto not counted: {b}"))?;
        Ok(n)
    });

    s.check_after(
        failovers.zip(vetoes),
        "metrics: GET /metrics has every metric; failovers and vetoes of obond as counted above; other paths 404",
        |(failovers, vetoes)| {
            #[expect(clippy::cast_precision_loss, reason = "small counts, compared with the metrics' floats")]
            let (failovers_f, vetoes_f) = (failovers as f64, vetoes as f64);
            let (status, text) = http_get("/metrics")?;
            ensure!(status.starts_with("HTTP/1.1 200"), "status line {status:?}:\n{text}");
            for name in [
                "exabond_failovers_total",
                "exabond_vetoes_total",
                "exabond_slave_link_up",
                "exabond_active_slave_info",
                "exabond_page_update_latency_seconds_bucket",
                "exabond_page_update_latency_seconds_count",
                "exabond_agent_heartbeat_age_seconds",
                "exabond_managed_bonds",
                "exabond_enforcement_lsm",
                "exabond_mac_pitfalls",
            ] {
                ensure!(text.contains(name), "{name} missing:\n{text}");
            }
            let f = sample(&text, &format!("exabond_failovers_total{{bond=\"{BOND}\"}}"));
            ensure!(f == Some(failovers_f), "exabond_failovers_total of {BOND}: {f:?}, page {failovers}\n{text}");
            let active = bond.active().context("active_slave")?;
            let info = sample(&text, &format!("exabond_active_slave_info{{bond=\"{BOND}\",slave=\"{active}\"}}"));
            ensure!(info == Some(1.0), "active slave info for {active}: {info:?}\n{text}");
            for m in &bond.members {
                let up = sample(&text, &format!("exabond_slave_link_up{{bond=\"{BOND}\",slave=\"{m}\"}}"));
                ensure!(up == Some(1.0), "link of {m}: {up:?}\n{text}");
            }
            ensure!(sample(&text, "exabond_managed_bonds").is_some_and(|n| n >= 1.0), "managed bonds:\n{text}");
            ensure!(sample(&text, "exabond_enforcement_lsm") == Some(1.0), "lsm:\n{text}");
            let v = sample(&text, &format!("exabond_vetoes_total{{bond=\"{BOND}\"}}"));
            ensure!(v.is_some_and(|n| n >= vetoes_f), "vetoes of {BOND}: {v:?}, status said {vetoes}\n{text}");
            let (status, _) = http_get("/nope")?;
            ensure!(status.starts_with("HTTP/1.1 404"), "GET /nope: {status:?}");
            Ok(())
        },
    );

    s.check("MAC pitfall: releasing the member whose MAC the bond carries is flagged in status, watch and log", || {
        let (donor, mac) = donor_member(exabond, &bond)?;
        write_file(&format!("/sys/class/net/{BOND}/bonding/slaves"), &format!("-{donor}"))
            .map_err(|e| anyhow::anyhow!("releasing {donor}: errno {e}"))?;
        let donor_mac = read_sysfs(&format!("/sys/class/net/{donor}/address"))?;
        ensure!(donor_mac == mac, "{donor} got {donor_mac} back, the bond has {mac}: no pitfall to see");
        let mut last = Value::Null;
        wait_for("status --json to flag the pitfall", PITFALL_TIMEOUT, || {
            let b = bond_entry(&status_json(exabond).ok()?).ok()?;
            last = b.clone();
            (b["mac_pitfall"] == true
                && b["mac_pitfall_donors"].as_array().is_some_and(|d| d.iter().any(|x| x == donor.as_str())))
            .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}: {last}\n--- agent log ---\n{}", agent.log_text()))?;
        let (_, text, _) = cli(exabond, &["status"])?;
        ensure!(text.contains("MAC PITFALL") && text.contains(&donor), "status text:\n{text}");
        let v = watcher.find("a mac_pitfall line", |v| v["event"] == "mac_pitfall" && v["bond"] == BOND)?;
        ensure!(v["donor"] == donor.as_str() && v["mac"] == mac.as_str(), "mac_pitfall line: {v}");
        agent.wait_log("MAC PITFALL", Duration::from_secs(5))?;
        let (_, metrics) = http_get("/metrics")?;
        let n = sample(&metrics, &format!("exabond_mac_pitfalls{{bond=\"{BOND}\"}}"));
        ensure!(n == Some(1.0), "exabond_mac_pitfalls: {n:?}");
        Ok(())
    });

    s.check("SIGTERM: watch ends with the shutdown line and exit 0; --release removes the pins; then exit 11", || {
        let st = agent.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "agent exit {st}\n{}", agent.log_text());
        let mut w = watcher;
        let st = wait_for("exabond watch to exit", Duration::from_secs(10), || w.child.try_wait().ok().flatten())?;
        ensure!(st.success(), "watch exit {st}; stderr: {}", w.stderr_text());
        ensure!(w.stderr_text().contains("agent stopped"), "watch stderr: {}", w.stderr_text());
        // The reader thread may still be draining the pipe.
        wait_for("the shutdown line", Duration::from_secs(5), || {
            w.lines().last().is_some_and(|l| l.contains("\"shutdown\"")).then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}: {:?}", w.lines()))?;
        ensure!(!Path::new("/sys/fs/bpf/exabond").exists(), "pins left after --release");
        let (c, _, err) = cli(exabond, &["watch"])?;
        ensure!(c == 11 && err.contains("no exabond agent"), "watch without agent: exit {c}: {err}");
        Ok(())
    });

    let _ = sh_try(&format!("ip link del {DUMMY}"));
    let _ = std::fs::remove_file(CONFIG);
    drop(bond);
}
