//! Enforcement that repairs itself (issue #9), in the enforce group: the self-check of the pins and maps
//! and a restart that repairs a bond left in a forbidden state (BPF LSM boot); forbidden members and modes
//! repaired in every mode, a restart that repairs, and a resync after lost rtnetlink notifications
//! (boot without the BPF LSM).

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use exabond_common::reader::PageReader;
use serde_json::Value;

use crate::bpf_map;
use crate::enforce::{expect_code, expect_errno, mode_path, slaves_path, ENODEV, EOPNOTSUPP, PAGE_DIR};
use crate::lab::{bond_mode, bond_slaves, cli, read_page, scaled, sh, sh_try, wait_for, Agent};
use crate::suite::Suite;
use crate::syscalls::write_file;

const PIN_DIR: &str = "/sys/fs/bpf/exabond";

fn status(exabond: &Path) -> anyhow::Result<Value> {
    let (c, out, err) = cli(exabond, &["status", "--json"])?;
    ensure!(c == 0, "status: exit {c}: {err}");
    Ok(serde_json::from_str(&out)?)
}

/// Bypasses counted on `bond` by `exabond status --json`.
fn bypasses(exabond: &Path, bond: &str) -> anyhow::Result<u64> {
    let v = status(exabond)?;
    v["bonds"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["bond"] == bond))
        .and_then(|x| x["bypasses"].as_u64())
        .with_context(|| format!("no bypass count for {bond} in {v}"))
}

/// An `ip -batch` file: `line` for 0..n, `{}` replaced by the number.
fn batch_of(n: usize, line: &str) -> String {
    (0..n).map(|i| line.replace("{}", &i.to_string()) + "\n").collect()
}

/// `exabond watch --json` in the background, its output in a file.
struct Watch {
    child: Child,
    out: std::path::PathBuf,
}

impl Watch {
    fn start(exabond: &Path, tag: &str) -> anyhow::Result<Self> {
        let out = std::path::PathBuf::from(format!("/tmp/exabond-watch-{tag}.json"));
        let err = std::path::PathBuf::from(format!("/tmp/exabond-watch-{tag}.err"));
        let child = Command::new(exabond)
            .args(["watch", "--json"])
            .stdout(std::fs::File::create(&out)?)
            .stderr(std::fs::File::create(&err)?)
            .stdin(Stdio::null())
            .spawn()?;
        let w = Self { child, out };
        // Subscribed once the agent answered: the CLI then says so on stderr.
        wait_for("exabond watch subscribed", scaled(Duration::from_secs(10)), || {
            std::fs::read_to_string(&err).ok()?.contains("watching the agent's events").then_some(())
        })?;
        Ok(w)
    }

    /// Wait until an event line contains every one of `needles`.
    fn wait_event(&self, needles: &[&str], timeout: Duration) -> anyhow::Result<()> {
        wait_for(&format!("a watch event with {needles:?}"), timeout, || {
            std::fs::read_to_string(&self.out)
                .ok()?
                .lines()
                .any(|l| needles.iter().all(|n| l.contains(n)))
                .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}; watch output: {}", std::fs::read_to_string(&self.out).unwrap_or_default()))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// BPF LSM boot, with `agent` managing ebond and erenx: the self-check.
pub fn self_check(exabond: &Path, agent: &Agent, s: &mut Suite) {
    s.check("self-check: a removed link pin is re-pinned within seconds, the veto never lapses", || {
        // Nothing was touched yet: the self-check must not have "repaired" anything (no false alarm).
        let log = agent.log_text();
        ensure!(
            !log.contains("SELF-CHECK REPAIR") && !log.contains("DEGRADED"),
            "self-check before any tampering:\n{log}"
        );
        let pin = format!("{PIN_DIR}/link-file_permission");
        std::fs::remove_file(&pin).with_context(|| format!("rm {pin}"))?;
        let t = Instant::now();
        // The agent holds the link: removing its pin detaches nothing.
        expect_errno(
            "balance-rr > erenx/mode with the link pin gone",
            write_file(&mode_path("erenx"), "balance-rr"),
            EOPNOTSUPP,
        )?;
        wait_for("the link pin back", scaled(Duration::from_secs(6)), || Path::new(&pin).exists().then_some(()))?;
        println!("E2E self-check: link pin re-pinned {:.1?} after its removal", t.elapsed());
        agent.wait_log(&format!("SELF-CHECK REPAIR: pin {pin} was removed: re-pinned"), Duration::from_secs(5))?;
        let map = format!("{PIN_DIR}/MANAGED_BONDS");
        std::fs::remove_file(&map).with_context(|| format!("rm {map}"))?;
        wait_for("the map pin back", scaled(Duration::from_secs(6)), || Path::new(&map).exists().then_some(()))?;
        agent.wait_log(&format!("SELF-CHECK REPAIR: pin {map} was removed: re-pinned"), Duration::from_secs(5))?;
        ensure!(status(exabond)?["degraded"] == false, "degraded after repairs: {}", status(exabond)?);
        Ok(())
    });

    s.check("self-check: a map entry edited by hand (the page guard's AGENT) is rewritten", || {
        let map = format!("{PIN_DIR}/AGENT");
        let mine: [u8; 24] = bpf_map::lookup(&map, 0)?;
        let tgid = u32::from_ne_bytes(mine[16..20].try_into()?);
        ensure!(tgid == agent.pid(), "AGENT[0] names pid {tgid}, the agent is {}", agent.pid());
        bpf_map::update(&map, 0, [0u8; 24])?;
        ensure!(bpf_map::lookup::<24>(&map, 0)? == [0u8; 24], "the edit did not take");
        let t = Instant::now();
        wait_for("AGENT[0] rewritten", scaled(Duration::from_secs(6)), || {
            (bpf_map::lookup::<24>(&map, 0).ok()? == mine).then_some(())
        })?;
        println!("E2E self-check: AGENT[0] rewritten {:.1?} after the edit", t.elapsed());
        agent.wait_log("SELF-CHECK REPAIR: AGENT[0]", Duration::from_secs(5))?;
        Ok(())
    });

    s.check(
        "self-check: pins that cannot be re-pinned make enforcement degraded (status, JSON, watch), then ok",
        || {
            let watch = Watch::start(exabond, "degraded")?;
            // A tmpfs over the pin directory hides every pin, and nothing can be pinned on a tmpfs.
            sh(&format!("mount -t tmpfs exabond-e2e {PIN_DIR}"))?;
            let degraded = wait_for("status degraded", scaled(Duration::from_secs(8)), || {
                status(exabond).ok().filter(|v| v["degraded"] == true)
            });
            let text = cli(exabond, &["status"]).map(|(_, out, _)| out);
            let veto = write_file(&mode_path("erenx"), "balance-rr");
            sh(&format!("umount {PIN_DIR}"))?;
            let degraded = degraded?;
            let reasons = degraded["degraded_reasons"].to_string();
            ensure!(reasons.contains("cannot be re-pinned"), "reasons: {reasons}");
            let text = text?;
            ensure!(text.contains("ENFORCEMENT DEGRADED"), "status text:\n{text}");
            expect_errno("balance-rr > erenx/mode while degraded", veto, EOPNOTSUPP)?;
            watch.wait_event(&["\"event\":\"enforcement\"", "\"state\":\"degraded\""], Duration::from_secs(5))?;
            wait_for("status ok again", scaled(Duration::from_secs(8)), || {
                status(exabond).ok().filter(|v| v["degraded"] == false)
            })?;
            agent.wait_log("no longer degraded", Duration::from_secs(5))?;
            watch.wait_event(&["\"event\":\"enforcement\"", "\"state\":\"ok\""], Duration::from_secs(5))?;
            Ok(())
        },
    );
}

/// BPF LSM boot: stop `agent`, get a refused member into ebond and erenx out of active-backup behind
/// detached vetoes, start a new agent: it starts, repairs both and reports them. Returns the new agent.
pub fn restart_repairs_lsm(exabond: &Path, mut agent: Agent, s: &mut Suite) -> Option<Agent> {
    s.check(
        "restart: a bond left with a refused member, another in the wrong mode: repaired at start, reported; a map pinned by an older version with another layout replaced",
        || {
            let st = agent.terminate(Duration::from_secs(15))?;
            ensure!(st.success(), "exit {st}");
            // The pinned vetoes outlive the agent; detach them by removing their pins, as root can.
            for e in std::fs::read_dir(PIN_DIR)?.flatten() {
                if e.file_name().to_string_lossy().starts_with("link-") {
                    std::fs::remove_file(e.path())?;
                }
            }
            // A link goes when its last reference does, after an RCU grace period and a work item.
            wait_for("the vetoes gone (balance-rr > erenx/mode accepted)", scaled(Duration::from_secs(10)), || {
                write_file(&mode_path("erenx"), "balance-rr").ok()
            })?;
            write_file(&slaves_path("ebond"), "+dum1")
                .map_err(|e| anyhow::anyhow!("+dum1 without vetoes: errno {e}"))?;
            ensure!(bond_slaves("ebond").contains(&"dum1".to_owned()), "dum1 not enslaved");
            // An older agent version keyed this map by a bare ifindex (4 bytes): reusing the pin would
            // make every lookup read half a key.
            let old_map = format!("{PIN_DIR}/VERDICT_BY_IFINDEX");
            std::fs::remove_file(&old_map)?;
            bpf_map::create_pinned_hash(&old_map, 4, 4, 4096)?;
            let a = Agent::start(exabond, Path::new(PAGE_DIR), &["ebond"], &[])?;
            wait_for("erenx's page fresh", Duration::from_secs(10), || {
                read_page(exabond, Path::new(PAGE_DIR), "erenx").ok().filter(|v| v["stale"] == false)
            })?;
            ensure!(bond_slaves("ebond") == ["ev0"], "ebond slaves {:?}", bond_slaves("ebond"));
            ensure!(bond_mode("erenx") == "active-backup 1", "erenx mode {}", bond_mode("erenx"));
            let log = a.log_text();
            for needle in [
                "BYPASS: refused member dum1 found in managed bond ebond (seen by start-up)",
                "BYPASS: managed bond erenx found in mode balance-rr (seen by start-up)",
            ] {
                ensure!(log.contains(needle), "{needle:?} not in the log:\n{log}");
            }
            ensure!(
                bypasses(exabond, "ebond")? == 1 && bypasses(exabond, "erenx")? == 1,
                "status: {}",
                status(exabond)?
            );
            let (_, out, _) = cli(exabond, &["list"])?;
            ensure!(out.split_whitespace().collect::<Vec<_>>() == ["ebond", "erenx"], "list: {out}");
            expect_errno("+dum1 > ebond/slaves after the restart", write_file(&slaves_path("ebond"), "+dum1"), ENODEV)?;
            ensure!(
                log.contains("pinned map of another agent version replaced") && log.contains("VERDICT_BY_IFINDEX"),
                "the replaced pin is not in the log:\n{log}"
            );
            ensure!(bpf_map::key_size(&old_map)? == 8, "VERDICT_BY_IFINDEX still has 4-byte keys");
            // The rtnetlink veto reads that map by (namespace, ifindex).
            let (ok, out) = sh_try("ip link set dum1 master ebond");
            ensure!(!ok && bond_slaves("ebond") == ["ev0"], "dum1 enslaved through rtnetlink: {out}");
            Ok(a)
        },
    )
}

/// Boot without the BPF LSM, `agent` managing ebond and eempty (empty, down): members and modes repaired
/// in detect-and-revert mode, counted and never published.
pub fn bypass_nolsm(exabond: &Path, agent: &Agent, s: &mut Suite) {
    s.check("bypass: a device enslaved the instant it is created is released, counted, never active", || {
        let before = bypasses(exabond, "eempty")?;
        let watch = Watch::start(exabond, "bypass")?;
        let reader = PageReader::open_in(Path::new(PAGE_DIR), "eempty")?;
        sh("ip link set eempty up")?;
        // Created and enslaved in one go: the enslave can come before the agent has judged the device.
        sh("ip link add dumq type dummy && echo +dumq > /sys/class/net/eempty/bonding/slaves")?;
        let t = Instant::now();
        let mut seen_active = false;
        let mut released = None;
        while t.elapsed() < scaled(Duration::from_secs(5)) {
            seen_active |= reader.snapshot()?.active_name() == Some("dumq");
            if released.is_none() && !bond_slaves("eempty").contains(&"dumq".to_owned()) {
                released = Some(t.elapsed());
            }
            if released.is_some_and(|r| t.elapsed() > r + Duration::from_millis(300)) {
                break;
            }
        }
        let _ = sh("ip link set eempty down; ip link del dumq");
        let released = released.context("dumq still a member of eempty after 5 s")?;
        println!("E2E bypass: dumq released {released:.1?} after it was enslaved");
        ensure!(!seen_active, "dumq was published as the active slave");
        agent.wait_log("BYPASS: refused member dumq found in managed bond eempty", Duration::from_secs(5))?;
        watch.wait_event(&["\"event\":\"bypass\"", "\"detail\":\"dumq\""], Duration::from_secs(5))?;
        let after = bypasses(exabond, "eempty")?;
        ensure!(after == before + 1, "bypasses of eempty: {before} → {after}");
        Ok(())
    });

    s.check("bypass: a mode change on a managed bond without members is restored and counted", || {
        let before = bypasses(exabond, "eempty")?;
        write_file(&mode_path("eempty"), "balance-xor").map_err(|e| anyhow::anyhow!("kernel refused: errno {e}"))?;
        wait_for("mode restored", scaled(Duration::from_secs(3)), || {
            (bond_mode("eempty") == "active-backup 1").then_some(())
        })?;
        agent.wait_log("BYPASS: managed bond eempty found in mode balance-xor", Duration::from_secs(5))?;
        let after = bypasses(exabond, "eempty")?;
        ensure!(after == before + 1, "bypasses of eempty: {before} → {after}");
        Ok(())
    });
}

/// Boot without the BPF LSM: stop `agent`, leave eempty with a refused member in the wrong mode, start an
/// agent whose listener has a tiny receive buffer: it repairs eempty at start; then a burst of link changes
/// overruns its socket, and it resynchronises.
pub fn restart_and_resync_nolsm(exabond: &Path, mut agent: Agent, s: &mut Suite) {
    let Some(a) = s.check("restart: a bond left with a refused member in the wrong mode is repaired at start", || {
        let st = agent.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "exit {st}");
        write_file(&mode_path("eempty"), "balance-rr").map_err(|e| anyhow::anyhow!("mode: errno {e}"))?;
        write_file(&slaves_path("eempty"), "+dum1").map_err(|e| anyhow::anyhow!("+dum1: errno {e}"))?;
        let a = Agent::start(exabond, Path::new(PAGE_DIR), &["ebond"], &["--test-rcvbuf", "2048"])?;
        wait_for("eempty's page fresh", Duration::from_secs(10), || {
            read_page(exabond, Path::new(PAGE_DIR), "eempty").ok().filter(|v| v["stale"] == false)
        })?;
        ensure!(bond_slaves("eempty").is_empty(), "eempty slaves {:?}", bond_slaves("eempty"));
        ensure!(bond_mode("eempty") == "active-backup 1", "eempty mode {}", bond_mode("eempty"));
        let log = a.log_text();
        for needle in [
            "BYPASS: refused member dum1 found in managed bond eempty (seen by start-up)",
            "BYPASS: managed bond eempty found in mode balance-rr (seen by start-up)",
        ] {
            ensure!(log.contains(needle), "{needle:?} not in the log:\n{log}");
        }
        ensure!(bypasses(exabond, "eempty")? == 2, "status: {}", status(exabond)?);
        expect_code(exabond, &["list"], 0, "eempty")?;
        Ok(a)
    }) else {
        return;
    };

    s.check(
        "resync: lost rtnetlink notifications (burst over a tiny receive buffer) are detected and recovered",
        || {
            const N: usize = 2000;
            let batch = batch_of(N, "link add exq{} type dummy");
            std::fs::write("/tmp/exq-add.batch", batch)?;
            // The start-up's own notifications may already have overrun the tiny buffer: count from here.
            let resyncs = |v: Value| v["netlink_resyncs"].as_u64().unwrap_or(0);
            let before = resyncs(status(exabond)?);
            let lost_before = a.log_text().matches("rtnetlink notifications were LOST").count();
            let t = Instant::now();
            sh("ip -batch /tmp/exq-add.batch")?;
            println!("E2E resync: {N} dummy devices created in {:.1?}", t.elapsed());
            wait_for("a new overrun and resync in the log", scaled(Duration::from_secs(30)), || {
                let log = a.log_text();
                (log.matches("rtnetlink notifications were LOST").count() > lost_before
                    && log.matches("rtnetlink resynchronised").count() > lost_before)
                    .then_some(())
            })
            .map_err(|e| anyhow::anyhow!("{e}\n{}", a.log_text()))?;
            let after = resyncs(status(exabond)?);
            ensure!(after > before, "netlink_resyncs {before} → {after}");
            // Every device of the burst judged, whatever notifications were lost.
            wait_for("the last device judged", scaled(Duration::from_secs(30)), || {
                cli(exabond, &["member", &format!("exq{}", N - 1)]).ok().filter(|(c, _, _)| *c == 7)
            })?;
            for i in (0..N).step_by(97) {
                expect_code(exabond, &["member", &format!("exq{i}")], 7, "driver dummy")?;
            }
            let batch = batch_of(N, "link del exq{}");
            std::fs::write("/tmp/exq-del.batch", batch)?;
            sh("ip -batch /tmp/exq-del.batch")?;
            wait_for("the deleted devices forgotten", scaled(Duration::from_secs(30)), || {
                (0..N)
                    .step_by(97)
                    .all(|i| cli(exabond, &["member", &format!("exq{i}")]).is_ok_and(|(c, _, _)| c == 4))
                    .then_some(())
            })?;
            println!(
                "E2E resync: {} resynchronisation(s) for {N} creations and {N} deletions",
                status(exabond)?["netlink_resyncs"]
            );
            let log = a.log_text();
            ensure!(log.matches("BYPASS").count() == 2, "unexpected bypasses:\n{log}");
            // The map audit ran through the whole burst: it must have found nothing to put right.
            ensure!(!log.contains("SELF-CHECK REPAIR"), "false self-check repairs during the burst:\n{log}");
            Ok(())
        },
    );
}

/// BPF LSM boot, no agent running: an agent whose LSM link is detached by another process (`bpftool link
/// detach`) must say enforcement is degraded, if the kernel lets a link of this kind be detached at all.
pub fn detached_link(exabond: &Path, s: &mut Suite) {
    s.check("self-check: a detached LSM link makes enforcement degraded (or the kernel refuses the detach)", || {
        let mut a = Agent::start(exabond, Path::new(PAGE_DIR), &["ebond"], &["--release"])?;
        let pin = format!("{PIN_DIR}/link-file_permission");
        let r = bpf_map::detach_link(&pin)?;
        let outcome = if let Err(errno) = r {
            println!("E2E self-check: BPF_LINK_DETACH of an LSM link refused by this kernel (errno {errno})");
            if errno == libc::EOPNOTSUPP {
                expect_errno(
                    "+dum1 > ebond/slaves after the refused detach",
                    write_file(&slaves_path("ebond"), "+dum1"),
                    ENODEV,
                )
            } else {
                Err(anyhow::anyhow!("detach refused with errno {errno}, expected EOPNOTSUPP"))
            }
        } else {
            println!("E2E self-check: BPF_LINK_DETACH of an LSM link accepted by this kernel");
            wait_for("status degraded", scaled(Duration::from_secs(8)), || {
                status(exabond)
                    .ok()
                    .filter(|v| v["degraded"] == true && v["degraded_reasons"].to_string().contains("detached"))
            })
            .map(drop)
        };
        let st = a.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "exit {st}");
        outcome
    });
}
