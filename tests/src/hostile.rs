//! The hostile-input group (issue 9): requests crafted directly (raw rtnetlink, ioctls, unusual write paths)
//! against the BPF LSM vetoes, each refused one followed by a proof that nothing changed, and the other side:
//! legal work in another network namespace with colliding ifindexes and names, and the spellings the driver
//! accepts, must succeed.
//!
//! The lab, in the host namespace: `hbond` (managed, up, veth members `hbond-a0`/`hbond-a1`), `hempty`
//! (managed, down, no slaves: the driver itself accepts a mode write only there), `hfree` (an unmanaged empty
//! bond: the control that the kernel accepts a form), `hdum` (a dummy: refused, ENODEV), `hv0`..`hv2` (veths:
//! allowed), `hunrel` (an unrelated dummy); altnames `hbond-alt`, `hdum-alt`, `hv0-alt`, `hfree-alt`. In the
//! namespace `hns`: a bond `hbond` with the host `hbond`'s ifindex, a dummy `hdum` with the host `hdum`'s
//! ifindex, a dummy `hbond-a0` with the host member's ifindex, and `hmove`, a dummy with the host `hv1`'s
//! ifindex (created with `ip link add ... index N`, which gives the same collisions as creating devices
//! until the numbers meet).
//!
//! Classes: A (namespaces, `hostile_ns.rs`), B (rtnetlink, `hostile_rtnl.rs`), C (ioctls,
//! `hostile_ioctl.rs`), D (sysfs write paths, `hostile_sysfs.rs`). `io_uring` writes are not tried: no
//! `io-uring` crate is available to the suite.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, ensure, Context as _};

use crate::enforce::slaves_path;
use crate::lab::{bond_mode, bond_slaves, cli, empty_bond, sh, wait_for, write_sysfs, Agent, Bond};
use crate::rtnl_raw::Sent;
use crate::suite::Suite;
use exabond_common::reader::PageReader;

/// Where this group's agent puts its pages.
pub const PAGE_DIR: &str = "/run/exabond-hostile";
/// The managed, up bond with members.
pub const B: &str = "hbond";
/// The managed, down, empty bond.
pub const E: &str = "hempty";
/// The unmanaged, empty bond.
pub const U: &str = "hfree";
/// The refused dummy.
pub const D: &str = "hdum";
/// The allowed veths.
pub const V: [&str; 3] = ["hv0", "hv1", "hv2"];
/// An unrelated dummy.
pub const UNREL: &str = "hunrel";
/// The other network namespace.
pub const NS: &str = "hns";

/// `EPERM`.
pub const EPERM: i32 = 1;
/// `EFAULT`.
pub const EFAULT: i32 = 14;
/// `EACCES`.
pub const EACCES: i32 = 13;
/// `ENODEV`: a refused device.
pub const ENODEV: i32 = 19;
/// `EOPNOTSUPP`: a mode change, an uninspectable write path.
pub const EOPNOTSUPP: i32 = 95;
/// What a veto may answer when it cannot read or parse a request on a guarded object completely (fail
/// closed), or for a device it cannot know yet (created, or coming from another namespace).
pub const FAIL_CLOSED: &[i32] = &[EPERM, EACCES, EOPNOTSUPP, ENODEV, EFAULT];

/// The ifindex of `dev` in the host namespace.
pub fn ifindex(dev: &str) -> anyhow::Result<u32> {
    crate::lab::read_sysfs(&format!("/sys/class/net/{dev}/ifindex"))?
        .parse()
        .with_context(|| format!("ifindex of {dev}"))
}

/// What a refused request must leave as it was.
#[derive(Debug, PartialEq, Eq)]
pub struct State {
    /// Members of `hbond` and `hempty`.
    slaves: [Vec<String>; 2],
    /// Modes of `hbond` and `hempty`.
    modes: [String; 2],
    /// The active link on `hbond`'s page.
    page_active: Option<String>,
    /// Every host device, name → ifindex.
    links: BTreeMap<String, u32>,
    /// The masters of the devices in `hns` (name → master), for requests made from there.
    ns_masters: String,
}

impl State {
    /// Now (all read in this process: the guest is emulated and every process started costs).
    pub fn now() -> anyhow::Result<Self> {
        let mut links = BTreeMap::new();
        for e in std::fs::read_dir("/sys/class/net")? {
            let name = e?.file_name().to_string_lossy().into_owned();
            if let Ok(i) = ifindex(&name) {
                links.insert(name, i);
            }
        }
        let page = PageReader::open_in(Path::new(PAGE_DIR), B)?.snapshot()?;
        Ok(Self {
            slaves: [bond_slaves(B), bond_slaves(E)],
            modes: [bond_mode(B), bond_mode(E)],
            page_active: page.active_name().map(str::to_owned),
            links,
            ns_masters: ns_masters(),
        })
    }
}

impl State {
    /// What differs from `b` to `a`, one `field: before → after` per changed field.
    fn diff(&self, a: &Self) -> String {
        let mut out = Vec::new();
        let mut field = |name: &str, x: String, y: String| {
            if x != y {
                out.push(format!("{name}: {x} → {y}"));
            }
        };
        field("hbond slaves", format!("{:?}", self.slaves[0]), format!("{:?}", a.slaves[0]));
        field("hempty slaves", format!("{:?}", self.slaves[1]), format!("{:?}", a.slaves[1]));
        field("hbond mode", self.modes[0].clone(), a.modes[0].clone());
        field("hempty mode", self.modes[1].clone(), a.modes[1].clone());
        field("page active", format!("{:?}", self.page_active), format!("{:?}", a.page_active));
        let gone: Vec<_> = self.links.iter().filter(|(k, v)| a.links.get(*k) != Some(v)).collect();
        let new: Vec<_> = a.links.iter().filter(|(k, v)| self.links.get(*k) != Some(v)).collect();
        field("host links (name, ifindex)", format!("{gone:?}"), format!("{new:?}"));
        field("netns devices and masters", self.ns_masters.clone(), a.ns_masters.clone());
        out.join("; ")
    }
}

/// Every device of the namespace with its master, as `ifindex: name [master M]` (one `ip` process).
fn ns_masters() -> String {
    let Ok(out) = std::process::Command::new("ip").args(["-n", NS, "-o", "link", "show"]).output() else {
        return String::from("(ip failed)");
    };
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let head = l.split(['@', ':']).take(2).collect::<Vec<_>>().join(":");
            let mut w = l.split_whitespace();
            match w.find(|x| *x == "master").and_then(|_| w.next()) {
                Some(m) => format!("{head} master {m}"),
                None => head,
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `r` failed with one of `errnos`; that errno.
pub fn failed_with(what: &str, r: Result<(), i32>, errnos: &[i32]) -> anyhow::Result<i32> {
    match r {
        Err(e) if errnos.contains(&e) => Ok(e),
        Err(e) => bail!("{what}: failed with errno {e}, expected one of {errnos:?}"),
        Ok(()) => bail!("{what}: SUCCEEDED, expected a refusal with one of {errnos:?}"),
    }
}

/// A netlink batch refused by the veto itself (the `sendmsg` failed with one of `errnos`); that errno.
pub fn nl_refused(what: &str, r: anyhow::Result<Sent>, errnos: &[i32]) -> anyhow::Result<i32> {
    match r? {
        Sent::Refused(e) if errnos.contains(&e) => Ok(e),
        Sent::Refused(e) => bail!("{what}: sendmsg failed with errno {e}, expected one of {errnos:?}"),
        Sent::Acked(a) => bail!("{what}: DELIVERED (the kernel's answers per message: {a:?}), expected a veto"),
    }
}

/// A netlink batch delivered and every message done.
pub fn nl_done(what: &str, r: anyhow::Result<Sent>) -> anyhow::Result<()> {
    match r? {
        s if s.all_done() => Ok(()),
        Sent::Refused(e) => bail!("{what}: sendmsg refused with errno {e}, expected it to go through"),
        Sent::Acked(a) => bail!("{what}: the kernel refused a message (answers per message: {a:?})"),
    }
}

/// `r` succeeded.
pub fn done(what: &str, r: Result<(), i32>) -> anyhow::Result<()> {
    r.map_err(|e| anyhow::anyhow!("{what}: refused with errno {e}, expected success"))
}

/// Run refused attempts: `f`'s own assertions, then nothing may have changed; if something did, the lab
/// is put back (best effort) so the next checks start clean. `f`'s result (an errno, or nothing) is named
/// in the failure.
pub fn unchanged<R: std::fmt::Debug>(f: impl FnOnce() -> anyhow::Result<R>) -> anyhow::Result<()> {
    let before = State::now()?;
    let r = f();
    // The agent may publish a change a moment after the request: give it time to show up.
    std::thread::sleep(Duration::from_millis(100));
    let after = State::now()?;
    if after != before {
        repair();
        let outcome = match &r {
            Err(e) => format!("{e:#}; and "),
            Ok(v) => format!("the request's own check passed ({v:?}), but "),
        };
        bail!("{outcome}the state changed: {}", before.diff(&after));
    }
    r.map(|_| ())
}

/// `dev` is a member of `bond` (host namespace).
pub fn is_member(bond: &str, dev: &str) -> bool {
    bond_slaves(bond).iter().any(|s| s == dev)
}

/// Release `dev` from `bond` through sysfs (releases are never vetoed).
pub fn release(bond: &str, dev: &str) -> anyhow::Result<()> {
    write_sysfs(&slaves_path(bond), &format!("-{dev}"))
}

/// An allowed enslave happened: `dev` is in `bond`; then release it.
pub fn enslaved_then_release(bond: &str, dev: &str) -> anyhow::Result<()> {
    ensure!(
        is_member(bond, dev),
        "{dev} is not a member of {bond} after a successful request: {:?}",
        bond_slaves(bond)
    );
    release(bond, dev)
}

/// Put the lab back after a request that got through (best effort, every step tried).
pub fn repair() {
    for (bond, keep) in [(B, &["hbond-a0", "hbond-a1"][..]), (E, &[][..])] {
        for s in bond_slaves(bond) {
            if !keep.contains(&s.as_str()) {
                let _ = release(bond, &s);
            }
        }
    }
    let _ = write_sysfs(&format!("/sys/class/net/{E}/bonding/mode"), "active-backup");
    if ns_masters().contains(" master ") {
        for dev in [D, "hbond-a0"] {
            let _ = sh(&format!("ip -n {NS} link set {dev} nomaster"));
        }
    }
    for stray in ["hrecycle", "hnew", "hmove"] {
        if ifindex(stray).is_ok() {
            let _ = sh(&format!("ip link del {stray}"));
        }
    }
    // The rename batch: D under hv2's name, hv2 away.
    if ifindex("hv2-away").is_ok() {
        let _ = sh(&format!("ip link set hv2 name {D}; ip link set hv2-away name hv2"));
    }
    for v in V {
        if ifindex(v).is_err() {
            let _ = sh(&format!("ip link add {v} type veth peer name {v}p && ip link set {v}p up"));
        }
    }
}

/// Wait until the agent judged `dev` as `code` (`exabond member` exit code: 0 allowed, 7 not a `SmartNIC`
/// port).
pub fn await_verdict(exabond: &Path, dev: &str, code: i32) -> anyhow::Result<()> {
    wait_for(&format!("the agent's verdict on {dev} (exit {code})"), Duration::from_secs(10), || {
        cli(exabond, &["member", dev]).ok().filter(|(c, _, _)| *c == code).map(|_| ())
    })
}

/// Every host device and the namespace of the lab.
fn lab_devices() -> anyhow::Result<Bond> {
    sh("modprobe dummy numdummies=0")?;
    let b = Bond::create(B, 2)?;
    empty_bond(E, "active-backup")?;
    empty_bond(U, "active-backup")?;
    sh(&format!("ip link add {D} type dummy && ip link add {UNREL} type dummy"))?;
    for v in V {
        sh(&format!("ip link add {v} type veth peer name {v}p && ip link set {v}p up"))?;
    }
    for (dev, alt) in [(B, "hbond-alt"), (D, "hdum-alt"), ("hv0", "hv0-alt"), (U, "hfree-alt")] {
        sh(&format!("ip link property add dev {dev} altname {alt}"))?;
    }
    let _ = sh(&format!("ip netns del {NS}"));
    sh(&format!("ip netns add {NS}"))?;
    sh(&format!("ip -n {NS} link add {B} index {} type bond mode active-backup miimon 10", ifindex(B)?))?;
    for (name, like) in [(D, D), ("hbond-a0", "hbond-a0"), ("hmove", "hv1")] {
        sh(&format!("ip -n {NS} link add {name} index {} type dummy", ifindex(like)?))?;
    }
    Ok(b)
}

/// Remove the namespace and the host devices (the bond `hbond` and its members go with [`Bond`]'s drop).
fn teardown() {
    let _ = sh(&format!("ip netns del {NS}"));
    for dev in [D, UNREL, "hv0", "hv1", "hv2", "hv2-away", "hrecycle", "hnew", "hmove"] {
        let _ = sh(&format!("ip link del {dev}"));
    }
    for bond in [E, U] {
        let _ = write_sysfs("/sys/class/net/bonding_masters", &format!("-{bond}"));
    }
}

/// The group.
pub fn run(exabond: &Path, s: &mut Suite) {
    let Some(bond) = s.setup("hostile lab: managed hbond (up, veths) and hempty (down, empty), hfree, hdum, hv0-2, netns hns with colliding ifindexes and names", lab_devices) else {
        teardown();
        return;
    };
    let Some(agent) = s.setup("hostile: agent managing hbond and hempty, verdicts on hv0-2 and hdum known", || {
        let a = Agent::start(exabond, Path::new(PAGE_DIR), &[B, E], &["--release"])?;
        let (c, out, _) = cli(exabond, &["status", "--json"])?;
        ensure!(c == 0 && out.contains("\"enforcement\":\"lsm-veto\""), "status: {out}");
        for v in V {
            await_verdict(exabond, v, 0)?;
        }
        await_verdict(exabond, D, 7)?;
        await_verdict(exabond, UNREL, 7)?;
        Ok(a)
    }) else {
        drop(bond);
        teardown();
        return;
    };
    let t = std::time::Instant::now();
    crate::hostile_ns::run(s);
    crate::hostile_rtnl::run(s);
    crate::hostile_ioctl::run(s);
    crate::hostile_sysfs::run(s);
    println!("E2E NOTE hostile: io_uring writes not tried (no io-uring crate available to the suite)");
    println!("E2E NOTE hostile: checks took {:.0?}", t.elapsed());
    drop(agent);
    drop(bond);
    teardown();
}
