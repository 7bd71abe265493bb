//! The `SmartNIC` path for real, on the stand-in `ExaNIC` driver (`xtask/vm/standin-exanic`, a test fixture):
//! the default policy (no `--member-driver`) admits its ports and refuses everything else; a bond of ports
//! on two cards fails over between `exanic0` port 1 and `exanic1` port 0 on carrier loss, and the legacy
//! word carries exactly the (id, port) exanic-software computes (EXAIOCGIFINFO), decoded as
//! `exasock-bonding.h` does by the C legacy reader; all down clears ACTIVE and keeps id/port.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{ensure, Context as _};
use exabond_common::page::legacy;
use exabond_common::reader::PageReader;

use crate::enforce::{expect_code, expect_errno, slaves_path};
use crate::lab::{empty_bond, read_page, sh, wait_for, write_sysfs, Agent};
use crate::suite::Suite;
use crate::syscalls::{ioctl_enslave, write_file};

const PAGE_DIR: &str = "/run/exabond";
const BOND: &str = "sbond";
const ENODEV: i32 = 19;
const EINVAL: i32 = 22;

/// Plug or unplug the simulated cable of stand-in port `exa<c>p<p>`.
fn carrier(port: &str, up: bool) -> anyhow::Result<()> {
    let card = port.strip_prefix("exa").and_then(|r| r.split('p').next()).context("stand-in port name")?;
    write_sysfs(&format!("/sys/kernel/debug/exanic_standin/exanic{card}/{port}/carrier"), if up { "1" } else { "0" })
}

/// The stand-in module built for the running kernel (staged by xtask under `standin/<release>/`).
fn module() -> anyhow::Result<PathBuf> {
    let dir = std::env::current_exe()?.parent().context("exe dir")?.to_owned();
    let p = dir.join("standin").join(sh("uname -r")?).join("exanic_standin.ko");
    ensure!(p.exists(), "{} is missing: run `cargo xtask setup`", p.display());
    Ok(p)
}

/// The C legacy reader (the original's 32-bit word, decoded as exasock-bonding.h does) on the page.
struct WordReader(crate::pages::LineProc);

impl WordReader {
    fn start() -> anyhow::Result<Self> {
        let dir = std::env::current_exe()?.parent().context("exe dir")?.to_owned();
        let mut p = crate::pages::LineProc::spawn(
            "legacy_reader --private",
            std::process::Command::new(dir.join("legacy_reader"))
                .arg(format!("{PAGE_DIR}/exabond-{BOND}"))
                .arg("--private"),
        )?;
        let l = p.next(Duration::from_secs(10))?;
        ensure!(l.starts_with("ready"), "{l}");
        Ok(Self(p))
    }

    /// The next word it sees: (active, id, port).
    fn next(&mut self) -> anyhow::Result<(bool, u8, u8)> {
        let l = self.0.next(Duration::from_secs(10))?;
        let field = |k: &str| -> anyhow::Result<u32> {
            let v = l.split_whitespace().find_map(|w| w.strip_prefix(k)).with_context(|| format!("{k} in {l}"))?;
            Ok(v.parse()?)
        };
        Ok((field("active=")? == 1, u8::try_from(field("id=")?)?, u8::try_from(field("port=")?)?))
    }
}

/// The legacy word of the page, decoded: (active, id, port).
fn word() -> anyhow::Result<(bool, u8, u8)> {
    let w = PageReader::open_in(Path::new(PAGE_DIR), BOND)?.page_word();
    Ok((legacy::is_active(w), legacy::smartnic_id(w), legacy::port(w)))
}

/// Run the group (BPF LSM active).
#[expect(clippy::too_many_lines, reason = "the group's checks in order, each a closure passed to the suite")]
pub fn run(exabond: &Path, s: &mut Suite) {
    if s.check("smartnic: the stand-in ExaNIC driver loads (2 cards x 2 ports) and answers as exanic", || {
        let m = module()?;
        sh(&format!("insmod {} cards=2 ports=2", m.display()))?;
        let drv = sh("ethtool -i exa0p1 | sed -n 's/^driver: //p'")?;
        ensure!(drv == "exanic", "ethtool driver {drv:?}");
        Ok(())
    })
    .is_none()
        || s.setup("smartnic: lab devices (veth, dummy, VLAN on exa0p0, nested bond) and bond sbond", || {
            sh("modprobe dummy numdummies=0; modprobe 8021q; ip link add sdum0 type dummy")?;
            sh("ip link add sveth0 type veth peer name sveth0p && ip link set sveth0p up")?;
            sh("ip link set exa0p0 up && ip link add link exa0p0 name exa0p0.5 type vlan id 5")?;
            empty_bond("sinner", "active-backup")?;
            for (b, m) in [("sbveth", "sveth0"), ("sbdum", "sdum0"), ("sbvlan", "exa0p0.5"), ("sbnest", "sinner")] {
                empty_bond(b, "active-backup")?;
                write_sysfs(&slaves_path(b), &format!("+{m}"))?;
            }
            empty_bond(BOND, "active-backup")?;
            write_sysfs(&slaves_path(BOND), "+exa0p1")?;
            write_sysfs(&slaves_path(BOND), "+exa1p0")?;
            write_sysfs(&format!("/sys/class/net/{BOND}/bonding/primary"), "exa0p1")?;
            sh(&format!("ip link set {BOND} up"))?;
            wait_for("exa0p1 active", Duration::from_secs(10), || {
                (sh(&format!("cat /sys/class/net/{BOND}/bonding/active_slave")).ok()? == "exa0p1").then_some(())
            })?;
            Ok(())
        })
        .is_none()
    {
        return;
    }
    // The default policy: no --member-driver.
    let args: Vec<String> = ["agent", "--page-dir", PAGE_DIR, "--bond", BOND].iter().map(|a| (*a).to_owned()).collect();
    let Some(agent) = s.check("smartnic: the agent manages a bond of stand-in ports with the default policy", || {
        Agent::spawn(exabond, &args, Path::new(PAGE_DIR), &[BOND])
    }) else {
        return;
    };

    s.check("smartnic: manage refuses veth, dummy, VLAN-on-stand-in and bond members (codes 7, 7, 9, 8)", || {
        expect_code(exabond, &["manage", "sbveth"], 7, "sveth0 (driver veth)")?;
        expect_code(exabond, &["manage", "sbdum"], 7, "sdum0 (driver dummy)")?;
        expect_code(exabond, &["manage", "sbvlan"], 9, "exa0p0.5")?;
        expect_code(exabond, &["manage", "sbnest"], 8, "sinner")?;
        for (dev, code, needle) in [
            ("exa1p1", 0, "exa1p1"),
            ("sveth0", 7, "veth"),
            ("sdum0", 7, "dummy"),
            ("exa0p0.5", 9, ""),
            ("sinner", 8, ""),
        ] {
            expect_code(exabond, &["member", dev], code, needle)?;
        }
        Ok(())
    });

    s.check("smartnic: the vetoes refuse veth, dummy, VLAN-on-stand-in (ENODEV) and bonds (EINVAL)", || {
        sh(&format!("ip link set {BOND} down"))?;
        let r = (|| {
            expect_errno("+sveth0", write_file(&slaves_path(BOND), "+sveth0"), ENODEV)?;
            expect_errno("+sdum0", write_file(&slaves_path(BOND), "+sdum0"), ENODEV)?;
            expect_errno("+exa0p0.5", write_file(&slaves_path(BOND), "+exa0p0.5"), ENODEV)?;
            expect_errno("+sinner", write_file(&slaves_path(BOND), "+sinner"), EINVAL)?;
            expect_errno("ioctl sveth0", ioctl_enslave(BOND, "sveth0"), ENODEV)?;
            let (ok, out) = crate::lab::sh_try(&format!("ip link set sdum0 master {BOND}"));
            ensure!(!ok, "ip link set sdum0 master: {out}");
            write_file(&slaves_path(BOND), "+exa1p1").map_err(|e| anyhow::anyhow!("stand-in exa1p1 refused: {e}"))?;
            write_file(&slaves_path(BOND), "-exa1p1").map_err(|e| anyhow::anyhow!("-exa1p1: {e}"))?;
            Ok(())
        })();
        sh(&format!("ip link set {BOND} up"))?;
        wait_for("an active slave", Duration::from_secs(10), || {
            (!sh(&format!("cat /sys/class/net/{BOND}/bonding/active_slave")).ok()?.is_empty()).then_some(())
        })?;
        r
    });

    s.check("smartnic: failovers exanic0:1 <-> exanic1:0 on carrier loss; the word carries (N, port) exactly", || {
        wait_for("the page on exa0p1", Duration::from_secs(10), || {
            (read_page(exabond, Path::new(PAGE_DIR), BOND).ok()?["active_slave"] == "exa0p1").then_some(())
        })?;
        ensure!(word()? == (true, 0, 1), "word {:?} for exa0p1 (exanic0 port 1)", word()?);
        let mut reader = WordReader::start()?;
        carrier("exa0p1", false)?;
        let seen = reader.next()?;
        ensure!(seen == (true, 1, 0), "legacy reader saw {seen:?} after exa0p1 lost carrier (expected exanic1 port 0)");
        let v = read_page(exabond, Path::new(PAGE_DIR), BOND)?;
        ensure!(v["active_slave"] == "exa1p0", "page active {}", v["active_slave"]);
        ensure!(v["kernel_event_ns"].as_u64().unwrap_or(0) != 0, "the eBPF probe did not see the failover: {v}");
        carrier("exa0p1", true)?;
        let seen = reader.next()?;
        ensure!(seen == (true, 0, 1), "legacy reader saw {seen:?} after exa0p1 came back (primary)");
        println!("E2E smartnic failovers: exanic0:1 -> exanic1:0 -> exanic0:1, each seen by the legacy reader");
        Ok(())
    });

    s.check("smartnic: all ports down clears ACTIVE and keeps the last id/port", || {
        let mut reader = WordReader::start()?;
        carrier("exa1p0", false)?;
        carrier("exa0p1", false)?;
        let mut seen = reader.next()?;
        if seen.0 {
            seen = reader.next()?; // a failover to exa1p0 may show before it went down too
        }
        ensure!(!seen.0, "still active: {seen:?}");
        ensure!((seen.1, seen.2) == (1, 0) || (seen.1, seen.2) == (0, 1), "id/port not kept: {seen:?}");
        ensure!(word()? == seen, "page word {:?}", word()?);
        carrier("exa0p1", true)?;
        carrier("exa1p0", true)?;
        ensure!(reader.next()?.0, "no active port after the carriers came back");
        Ok(())
    });
    drop(agent);
}
