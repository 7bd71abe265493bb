//! Management and enforcement on the real kernel: the control socket and its refusals, the BPF LSM vetoes
//! on every path (sysfs, rtnetlink, ioctl, other write paths), unmanaged bonds untouched, lifecycle
//! (unmanage, delete, rename, SIGKILL and re-adoption, --release); and, booted without the BPF LSM, the
//! detect-and-revert fallback.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};
use exabond_common::reader::PageReader;

use crate::lab::{bond_mode, bond_slaves, cli, empty_bond, read_page, sh, sh_try, wait_for, write_sysfs, Agent};
use crate::suite::Suite;
use crate::syscalls::{ioctl_enslave, ioctl_release, write_file, writev_file};

pub(crate) const PAGE_DIR: &str = "/run/exabond";
pub(crate) const ENODEV: i32 = 19;
const EINVAL: i32 = 22;
pub(crate) const EOPNOTSUPP: i32 = 95;

pub(crate) fn mode_path(b: &str) -> String {
    format!("/sys/class/net/{b}/bonding/mode")
}

pub(crate) fn slaves_path(b: &str) -> String {
    format!("/sys/class/net/{b}/bonding/slaves")
}

pub(crate) fn expect_errno(what: &str, r: Result<(), i32>, errno: i32) -> anyhow::Result<()> {
    match r {
        Err(e) if e == errno => Ok(()),
        Err(e) => bail!("{what}: failed with errno {e}, expected {errno}"),
        Ok(()) => bail!("{what}: succeeded, expected errno {errno}"),
    }
}

pub(crate) fn expect_code(exabond: &Path, args: &[&str], code: i32, needle: &str) -> anyhow::Result<()> {
    let (c, out, err) = cli(exabond, args)?;
    ensure!(c == code, "exabond {args:?}: exit {c}, expected {code} (stdout {out:?}, stderr {err:?})");
    ensure!(format!("{out}{err}").contains(needle), "exabond {args:?}: output lacks {needle:?}: {out} {err}");
    Ok(())
}

/// The devices of the enforcement tests.
fn lab_devices() -> anyhow::Result<()> {
    sh("modprobe dummy numdummies=0; modprobe 8021q; ip link add dum0 type dummy; ip link add dum1 type dummy")?;
    for v in ["ev0", "ev1", "ev2"] {
        sh(&format!("ip link add {v} type veth peer name {v}p && ip link set {v}p up"))?;
    }
    sh("ip link set ev2 up && ip link add link ev2 name ev2.10 type vlan id 10")?;
    empty_bond("ebond", "active-backup")?;
    write_sysfs(&slaves_path("ebond"), "+ev0")?;
    sh("ip link set ebond up")?;
    for (b, m) in
        [("eempty", "active-backup"), ("efree", "active-backup"), ("enest", "active-backup"), ("err", "balance-rr")]
    {
        empty_bond(b, m)?;
    }
    empty_bond("enic", "active-backup")?;
    write_sysfs(&slaves_path("enic"), "+dum0")?;
    empty_bond("enested", "active-backup")?;
    empty_bond("einner", "active-backup")?;
    write_sysfs(&slaves_path("enested"), "+einner").context("the kernel refused a bond inside a bond")?;
    empty_bond("evlan", "active-backup")?;
    write_sysfs(&slaves_path("evlan"), "+ev2.10")?;
    Ok(())
}

/// Attempt two vetoed operations in turn (mode balance-rr on erenx, +dum0 to ebond's slaves) in a tight loop
/// until `stop`, counting them in `attempts`; returns how many did not fail with the veto's errno, and the
/// first few of those.
fn attempt_vetoed_until(
    stop: &std::sync::atomic::AtomicBool,
    attempts: &std::sync::atomic::AtomicU64,
) -> (u64, Vec<String>) {
    use std::sync::atomic::Ordering::Relaxed;
    let (mut wrong, mut first) = (0, Vec::new());
    while !stop.load(Relaxed) {
        let n = attempts.fetch_add(1, Relaxed);
        let r = if n % 2 == 0 {
            expect_errno("balance-rr > erenx/mode", write_file(&mode_path("erenx"), "balance-rr"), EOPNOTSUPP)
        } else {
            expect_errno("+dum0 > ebond/slaves", write_file(&slaves_path("ebond"), "+dum0"), ENODEV)
        };
        if let Err(e) = r {
            wrong += 1;
            if first.len() < 5 {
                first.push(format!("attempt {n}: {e:#}"));
            }
        }
    }
    (wrong, first)
}

/// The suite with the BPF LSM active.
#[expect(clippy::too_many_lines, reason = "the group's checks in order, each a closure passed to the suite")]
pub fn run(exabond: &Path, s: &mut Suite) {
    let dir = Path::new(PAGE_DIR);
    if s.setup("enforcement lab: dummy, VLAN, nested bond, veth members", lab_devices).is_none() {
        return;
    }
    let Some(mut agent) = s.check("agent starts with --bond ebond, LSM vetoes attached", || {
        let a = Agent::start(exabond, dir, &["ebond"], &[])?;
        let (c, out, _) = cli(exabond, &["status", "--json"])?;
        ensure!(c == 0 && out.contains("\"enforcement\":\"lsm-veto\""), "status: {out}");
        Ok(a)
    }) else {
        return;
    };

    s.check("control: manage/unmanage/list and their refusals with distinct exit codes", || {
        expect_code(exabond, &["list"], 0, "ebond")?;
        expect_code(exabond, &["manage", "eempty"], 0, "managing eempty")?;
        expect_code(exabond, &["manage", "ebond"], 0, "already managed")?;
        expect_code(exabond, &["unmanage", "nosuch0"], 0, "was not managed")?;
        expect_code(exabond, &["manage", "../x"], 3, "invalid bond name")?;
        expect_code(exabond, &["manage", ""], 3, "empty")?;
        expect_code(exabond, &["manage", "nosuch0"], 4, "no such interface")?;
        expect_code(exabond, &["manage", "lo"], 5, "not a bond")?;
        expect_code(exabond, &["manage", "err"], 6, "balance-rr")?;
        expect_code(exabond, &["manage", "enic"], 7, "dum0 (driver dummy)")?;
        expect_code(exabond, &["manage", "enested"], 8, "einner")?;
        expect_code(exabond, &["manage", "evlan"], 9, "ev2.10")?;
        let (ok, out) = sh_try(&format!(
            "setpriv --reuid=65534 --regid=65534 --clear-groups {} list; echo rc=$?",
            exabond.display()
        ));
        ensure!(ok && out.contains("rc=10") && out.contains("permission denied"), "non-root: {out}");
        let (_, out, _) = cli(exabond, &["list"])?;
        ensure!(out.split_whitespace().collect::<Vec<_>>() == ["ebond", "eempty"], "list: {out}");
        Ok(())
    });

    s.check("veto: mode via sysfs (write/writev contents inspected), unmanaged bond untouched", || {
        expect_errno("balance-rr > eempty/mode", write_file(&mode_path("eempty"), "balance-rr"), EOPNOTSUPP)?;
        expect_errno("0 > eempty/mode", write_file(&mode_path("eempty"), "0"), EOPNOTSUPP)?;
        ensure!(bond_mode("eempty") == "active-backup 1", "mode changed to {}", bond_mode("eempty"));
        write_file(&mode_path("eempty"), "active-backup\n")
            .map_err(|e| anyhow::anyhow!("active-backup refused: {e}"))?;
        write_file(&mode_path("eempty"), "1").map_err(|e| anyhow::anyhow!("1 refused: {e}"))?;
        // writev(2) contents are judged too (musl and busybox tools write that way).
        writev_file(&mode_path("eempty"), "active-backup\n")
            .map_err(|e| anyhow::anyhow!("writev of active-backup refused: errno {e}"))?;
        expect_errno("writev balance-rr to eempty/mode", writev_file(&mode_path("eempty"), "balance-rr"), EOPNOTSUPP)?;
        let (ok, out) = sh_try("echo balance-rr > /sys/class/net/eempty/bonding/mode");
        ensure!(!ok, "shell echo succeeded: {out}");
        write_file(&mode_path("efree"), "balance-rr").map_err(|e| anyhow::anyhow!("unmanaged efree refused: {e}"))?;
        ensure!(bond_mode("efree").starts_with("balance-rr"), "efree mode {}", bond_mode("efree"));
        write_file(&mode_path("efree"), "active-backup").map_err(|e| anyhow::anyhow!("efree: {e}"))?;
        Ok(())
    });

    s.check("veto: mode via rtnetlink (ip link set B type bond mode X)", || {
        let (ok, out) = sh_try("ip link set eempty type bond mode balance-rr");
        ensure!(!ok && out.contains("not supported"), "ip on managed bond: ok={ok} {out}");
        ensure!(bond_mode("eempty") == "active-backup 1", "mode changed to {}", bond_mode("eempty"));
        sh("ip link set eempty type bond mode active-backup")?;
        sh("ip link set efree type bond mode balance-rr && ip link set efree type bond mode active-backup")?;
        Ok(())
    });

    s.check("veto: members via sysfs slaves (not SmartNIC/VLAN → ENODEV, bond → EINVAL, veth allowed)", || {
        expect_errno("+dum0", write_file(&slaves_path("ebond"), "+dum0"), ENODEV)?;
        expect_errno("+ev2.10", write_file(&slaves_path("ebond"), "+ev2.10"), ENODEV)?;
        expect_errno("+enest", write_file(&slaves_path("ebond"), "+enest"), EINVAL)?;
        expect_errno("+nosuchdev", write_file(&slaves_path("ebond"), "+nosuchdev"), ENODEV)?;
        ensure!(bond_slaves("ebond") == ["ev0"], "slaves {:?}", bond_slaves("ebond"));
        write_file(&slaves_path("ebond"), "+ev1").map_err(|e| anyhow::anyhow!("+ev1 refused: errno {e}"))?;
        ensure!(bond_slaves("ebond").contains(&"ev1".to_owned()), "ev1 not enslaved");
        write_file(&slaves_path("ebond"), "-ev1").map_err(|e| anyhow::anyhow!("-ev1: errno {e}"))?;
        write_file(&slaves_path("efree"), "+dum1").map_err(|e| anyhow::anyhow!("unmanaged efree +dum1: errno {e}"))?;
        write_file(&slaves_path("efree"), "-dum1").map_err(|e| anyhow::anyhow!("efree -dum1: errno {e}"))?;
        Ok(())
    });

    s.check("exabond member: the vetoes' verdict, with the manage-time exit codes", || {
        expect_code(exabond, &["member", "ev1"], 0, "ev1: allowed")?;
        expect_code(exabond, &["member", "dum0"], 7, "--member-driver dummy")?;
        expect_code(exabond, &["member", "enest"], 8, "is a bond")?;
        expect_code(exabond, &["member", "ev2.10"], 9, "VLAN")?;
        expect_code(exabond, &["member", "nosuchdev"], 4, "no such interface known to the agent")?;
        expect_code(exabond, &["member", "a/b"], 3, "")?;
        Ok(())
    });

    s.check("veto: members via rtnetlink (ip link set X master B)", || {
        let (ok, out) = sh_try("ip link set dum0 master ebond");
        ensure!(!ok, "dum0 enslaved via netlink: {out}");
        let (ok, out) = sh_try("ip link set enest master ebond");
        ensure!(!ok, "enest enslaved via netlink: {out}");
        ensure!(bond_slaves("ebond") == ["ev0"], "slaves {:?}", bond_slaves("ebond"));
        sh("ip link set ev1 down; ip link set ev1 master ebond")?;
        ensure!(bond_slaves("ebond").contains(&"ev1".to_owned()), "ev1 not enslaved via netlink");
        sh("ip link set ev1 nomaster")?;
        Ok(())
    });

    s.check("veto: members via the SIOCBONDENSLAVE ioctl", || {
        expect_errno("ioctl dum0", ioctl_enslave("ebond", "dum0"), ENODEV)?;
        expect_errno("ioctl enest", ioctl_enslave("ebond", "enest"), EINVAL)?;
        ensure!(bond_slaves("ebond") == ["ev0"], "slaves {:?}", bond_slaves("ebond"));
        sh("ip link set ev1 down")?;
        ioctl_enslave("ebond", "ev1").map_err(|e| anyhow::anyhow!("ioctl ev1 refused: errno {e}"))?;
        ensure!(bond_slaves("ebond").contains(&"ev1".to_owned()), "ev1 not enslaved via ioctl");
        ioctl_release("ebond", "ev1").map_err(|e| anyhow::anyhow!("release ev1: errno {e}"))?;
        Ok(())
    });

    s.check("vetoes logged with pid/comm and counted per bond", || {
        wait_for("veto log lines", Duration::from_secs(5), || {
            let log = agent.log_text();
            (log.matches("VETO").count() >= 10 && log.contains("comm=exabond-e2e") && log.contains("comm=ip"))
                .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log_text()))?;
        let (_, out, _) = cli(exabond, &["status", "--json"])?;
        let v: serde_json::Value = serde_json::from_str(&out)?;
        let count = |b: &str| {
            v["bonds"]
                .as_array()
                .and_then(|a| a.iter().find(|x| x["bond"] == b))
                .and_then(|x| x["vetoes"].as_u64())
                .unwrap_or(0)
        };
        ensure!(
            count("ebond") >= 8 && count("eempty") >= 4,
            "veto counts ebond {} eempty {}: {out}",
            count("ebond"),
            count("eempty")
        );
        let (c, text, _) = cli(exabond, &["status"])?;
        ensure!(
            c == 0 && text.contains("enforcement lsm-veto") && text.contains("driver veth"),
            "status text:\n{text}"
        );
        Ok(())
    });

    s.check("unmanage: page retired for readers that map it, file removed, vetoes lifted", || {
        let reader = PageReader::open_in(Path::new(PAGE_DIR), "eempty")?;
        expect_code(exabond, &["unmanage", "eempty"], 0, "no longer managed")?;
        ensure!(reader.snapshot()?.is_retired(), "page not retired");
        ensure!(!Path::new(PAGE_DIR).join("exabond-eempty").exists(), "page file still there");
        write_file(&mode_path("eempty"), "balance-rr")
            .map_err(|e| anyhow::anyhow!("still vetoed after unmanage: {e}"))?;
        write_file(&mode_path("eempty"), "active-backup").map_err(|e| anyhow::anyhow!("{e}"))?;
        Ok(())
    });

    s.check("managed bond deleted: no hang, page retired and removed, agent carries on", || {
        empty_bond("edel", "active-backup")?;
        expect_code(exabond, &["manage", "edel"], 0, "managing edel")?;
        let reader = PageReader::open_in(Path::new(PAGE_DIR), "edel")?;
        let t = std::time::Instant::now();
        write_sysfs("/sys/class/net/bonding_masters", "-edel")?;
        ensure!(t.elapsed() < crate::lab::scaled(Duration::from_secs(5)), "deleting took {:?}", t.elapsed());
        wait_for("edel's page to go", Duration::from_secs(5), || {
            (!Path::new(PAGE_DIR).join("exabond-edel").exists()).then_some(())
        })?;
        ensure!(reader.snapshot()?.is_retired(), "page not retired");
        ensure!(agent.alive(), "agent died");
        expect_code(exabond, &["list"], 0, "ebond")?;
        Ok(())
    });

    s.check("managed bond renamed: page file renamed in place (readers keep it), vetoes follow", || {
        empty_bond("eren", "active-backup")?;
        expect_code(exabond, &["manage", "eren"], 0, "managing eren")?;
        let reader = PageReader::open_in(Path::new(PAGE_DIR), "eren")?;
        sh("ip link set eren name erenx")?;
        wait_for("exabond-erenx", Duration::from_secs(5), || {
            Path::new(PAGE_DIR).join("exabond-erenx").exists().then_some(())
        })?;
        ensure!(!Path::new(PAGE_DIR).join("exabond-eren").exists(), "old page still there");
        let d = reader.snapshot()?;
        ensure!(
            !d.is_retired() && d.bond_name() == "erenx",
            "the reader's page: {:?} retired {}",
            d.bond_name(),
            d.is_retired()
        );
        ensure!(read_page(exabond, Path::new(PAGE_DIR), "erenx")?["bond"] == "erenx", "new page names the bond wrong");
        expect_code(exabond, &["list"], 0, "erenx")?;
        expect_errno("balance-rr > erenx/mode", write_file(&mode_path("erenx"), "balance-rr"), EOPNOTSUPP)?;
        expect_errno("ioctl dum0 to erenx", ioctl_enslave("erenx", "dum0"), ENODEV)?;
        Ok(())
    });

    s.check("SIGKILL: vetoes stay (pinned), pages go stale", || {
        agent.kill9()?;
        expect_errno("balance-rr > erenx/mode", write_file(&mode_path("erenx"), "balance-rr"), EOPNOTSUPP)?;
        expect_errno("+dum0 > ebond/slaves", write_file(&slaves_path("ebond"), "+dum0"), ENODEV)?;
        std::thread::sleep(Duration::from_millis(1300));
        ensure!(read_page(exabond, Path::new(PAGE_DIR), "ebond")?["stale"] == true, "page not stale");
        expect_code(exabond, &["list"], 11, "no exabond agent")?;
        Ok(())
    });

    let Some(agent2) = s.check("restart: re-adopts the managed bonds, pages fresh, vetoes without a gap", || {
        use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
        /// Fewer vetoed attempts than this while the new agent starts cannot tell a gap from none.
        const MIN_ATTEMPTS: u64 = 100;
        let (mode0, slaves0) = (bond_mode("erenx"), bond_slaves("ebond"));
        ensure!(mode0.starts_with("active-backup") && !slaves0.contains(&"dum0".to_owned()), "{mode0} {slaves0:?}");
        // While the new agent starts (it replaces the killed one's pinned LSM links and re-adopts the bonds),
        // another thread keeps attempting the forbidden operations: not one may get through.
        let stop = AtomicBool::new(false);
        let attempts = AtomicU64::new(0);
        let (started, probed) = std::thread::scope(|sc| {
            let prober = sc.spawn(|| attempt_vetoed_until(&stop, &attempts));
            let started = wait_for("the first vetoed attempt", Duration::from_secs(5), || {
                (attempts.load(Relaxed) > 0).then_some(())
            })
            .and_then(|()| {
                let from = attempts.load(Relaxed);
                let t = std::time::Instant::now();
                // Only ebond is named: erenx must come back from the pinned map.
                let a = Agent::start(exabond, Path::new(PAGE_DIR), &["ebond"], &[])?;
                wait_for("erenx's page to be fresh again", Duration::from_secs(10), || {
                    read_page(exabond, Path::new(PAGE_DIR), "erenx").ok().filter(|v| v["stale"] == false)
                })?;
                Ok((a, attempts.load(Relaxed) - from, t.elapsed()))
            });
            stop.store(true, Relaxed);
            (started, prober.join())
        });
        let (wrong, first) =
            probed.map_err(|_| anyhow::anyhow!("the thread attempting the forbidden operations panicked"))?;
        if wrong > 0 {
            // Best effort, for the checks that follow.
            let _ = write_file(&mode_path("erenx"), "active-backup");
            let _ = write_file(&slaves_path("ebond"), "-dum0");
        }
        let (a, during, took) = started?;
        println!("E2E restart: {during} vetoed attempts in {took:.1?} while the new agent started");
        ensure!(
            wrong == 0,
            "{wrong} of {} forbidden operations during the restart did not fail with the veto's errno: {first:?}",
            attempts.load(Relaxed)
        );
        ensure!(
            during >= MIN_ATTEMPTS,
            "only {during} vetoed attempts while the agent started: too few to tell there was no gap (at least \
             {MIN_ATTEMPTS})"
        );
        ensure!(bond_mode("erenx") == mode0, "erenx mode {} (was {mode0})", bond_mode("erenx"));
        ensure!(bond_slaves("ebond") == slaves0, "ebond slaves {:?} (were {slaves0:?})", bond_slaves("ebond"));
        let (_, out, _) = cli(exabond, &["list"])?;
        ensure!(out.split_whitespace().collect::<Vec<_>>() == ["ebond", "erenx"], "list after restart: {out}");
        ensure!(a.log_text().contains("re-adopting"), "no re-adoption in the log:\n{}", a.log_text());
        expect_errno("balance-rr > erenx/mode", write_file(&mode_path("erenx"), "balance-rr"), EOPNOTSUPP)?;
        ensure!(read_page(exabond, Path::new(PAGE_DIR), "ebond")?["stale"] == false, "ebond page stale");
        Ok(a)
    }) else {
        return;
    };

    crate::enforce_repair::self_check(exabond, &agent2, s);
    let Some(mut agent2) = crate::enforce_repair::restart_repairs_lsm(exabond, agent2, s) else {
        return;
    };

    s.check("--release: SIGTERM removes the pins and the vetoes end", || {
        let st = agent2.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "exit {st}");
        ensure!(Path::new("/sys/fs/bpf/exabond/link-file_permission").exists(), "pins removed without --release");
        expect_errno(
            "balance-rr > erenx/mode (after plain exit)",
            write_file(&mode_path("erenx"), "balance-rr"),
            EOPNOTSUPP,
        )?;
        let mut a3 = Agent::start(exabond, Path::new(PAGE_DIR), &["ebond"], &["--release"])?;
        let st = a3.terminate(Duration::from_secs(15))?;
        ensure!(st.success(), "exit {st}");
        ensure!(!Path::new("/sys/fs/bpf/exabond").exists(), "pin directory still there");
        write_file(&mode_path("erenx"), "balance-rr")
            .map_err(|e| anyhow::anyhow!("still vetoed after --release: {e}"))?;
        Ok(())
    });
    crate::enforce_repair::detached_link(exabond, s);
    drop(agent);
}

/// The suite when the kernel was booted without the BPF LSM: detect-and-revert.
pub fn run_nolsm(exabond: &Path, s: &mut Suite) {
    let dir = Path::new(PAGE_DIR);
    if s.check("lab without BPF LSM: bpf absent from /sys/kernel/security/lsm", || {
        let lsm = sh("cat /sys/kernel/security/lsm")?;
        ensure!(!lsm.split(',').any(|l| l == "bpf"), "bpf LSM active: {lsm}");
        lab_devices()
    })
    .is_none()
    {
        return;
    }
    let Some(agent) = s.check("agent says loudly the BPF LSM is missing and falls back to detect-and-revert", || {
        let a = Agent::start(exabond, dir, &["ebond"], &[])?;
        ensure!(a.log_text().contains("BPF LSM IS NOT ACTIVE"), "no loud warning:\n{}", a.log_text());
        let (_, out, _) = cli(exabond, &["status", "--json"])?;
        ensure!(out.contains("\"enforcement\":\"detect-and-revert\""), "status {out}");
        expect_code(exabond, &["manage", "eempty"], 0, "managing eempty")?;
        expect_code(exabond, &["manage", "enic"], 7, "dum0")?;
        Ok(a)
    }) else {
        return;
    };
    s.check("revert: a refused member is released and never published as active", || {
        let reader = PageReader::open_in(dir, "eempty")?;
        write_file(&slaves_path("eempty"), "+dum1")
            .map_err(|e| anyhow::anyhow!("kernel refused +dum1 without LSM: {e}"))?;
        sh("ip link set eempty up")?;
        let t = std::time::Instant::now();
        let mut seen_refused = false;
        while t.elapsed() < Duration::from_secs(3) {
            let d = reader.snapshot()?;
            seen_refused |= d.active_name() == Some("dum1");
            if !bond_slaves("eempty").contains(&"dum1".to_owned()) && t.elapsed() > Duration::from_millis(500) {
                break;
            }
        }
        ensure!(!seen_refused, "dum1 was published as the active slave");
        wait_for("dum1 released", Duration::from_secs(3), || {
            (!bond_slaves("eempty").contains(&"dum1".to_owned())).then_some(())
        })?;
        agent.wait_log("released refused member dum1", Duration::from_secs(5))?;
        sh("ip link set eempty down")?;
        Ok(())
    });
    s.check("revert: a forbidden mode change is restored to active-backup and audited", || {
        write_file(&mode_path("eempty"), "balance-rr")
            .map_err(|e| anyhow::anyhow!("kernel refused without LSM: {e}"))?;
        wait_for("mode restored", Duration::from_secs(3), || (bond_mode("eempty") == "active-backup 1").then_some(()))?;
        wait_for("audit and revert lines", Duration::from_secs(3), || {
            let log = agent.log_text();
            (log.contains("restored mode active-backup")
                && log.contains("is being changed")
                && log.contains("comm=exabond-e2e"))
            .then_some(())
        })
        .map_err(|e| anyhow::anyhow!("{e}\n{}", agent.log_text()))?;
        Ok(())
    });
    crate::enforce_repair::bypass_nolsm(exabond, &agent, s);
    crate::enforce_repair::restart_and_resync_nolsm(exabond, agent, s);
}
