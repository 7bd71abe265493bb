//! The fast word on the real kernel (`exabond_common::fast`): the failover probe publishes each managed
//! bond's legacy word itself in `FAST_WORDS`; readers get a descriptor over the reader socket and map it read-only.
//!
//! - a reader (this process, through `PageReader`) attaches to it; so does an unprivileged process (uid
//!   65534 through `setpriv`), and neither can map it writable;
//! - every kind of failover reaches the fast word with the kernel's time, and the word then equals the
//!   page's; the slot shows what the kernel did before the page does;
//! - a first member enslaved to an empty managed bond (no word for it in `MEMBER_WORDS` when the kernel
//!   makes it active) is corrected: the agent asks the refresh probe, under RTNL, to re-derive the word;
//! - across an agent restart, with a failover while no agent runs, the reader keeps its mapping and epoch
//!   and ends on the right word (the new agent's refresh);
//! - unmanaging the bond retires the slot: the reader's `changed()` says so and it reads the page.

use std::path::Path;
use std::time::Duration;

use anyhow::{ensure, Context as _};
use exabond_common::clock::monotonic_ns;
use exabond_common::fast::FAST_UNJUDGED;
use exabond_common::reader::{ActiveSource, FastSource, PageReader};

use crate::lab::{cli, read_page, read_sysfs, sh, sh_try, wait_for, write_sysfs, Agent, Bond};
use crate::suite::Suite;

const PAGE_DIR: &str = "/run/exabond-fast";
const BOND: &str = "fsbond";
const EMPTY: &str = "fsempty";

fn ifindex(dev: &str) -> anyhow::Result<u32> {
    read_sysfs(&format!("/sys/class/net/{dev}/ifindex"))?.parse().with_context(|| format!("ifindex of {dev}"))
}

/// Wait until the reader's fast word says `member` is active with the page's word; the active seen.
fn fast_shows(r: &PageReader, member: &str, since: u64) -> anyhow::Result<exabond_common::reader::Active> {
    let want = ifindex(member)?;
    let mut last = None;
    wait_for(&format!("the fast word to show {member} (ifindex {want})"), Duration::from_secs(10), || {
        let a = r.active().ok()?;
        last = Some(a);
        (a.source == ActiveSource::Fast && a.ifindex == want && a.kernel_ns >= since).then_some(a)
    })
    .map_err(|e| anyhow::anyhow!("{e}; last {last:?}"))
}

/// The other member of a two-member bond.
fn other(bond: &Bond, member: &str) -> anyhow::Result<String> {
    bond.members.iter().find(|m| *m != member).cloned().context("a second member")
}

/// One failover of each kind; the fast word must show each with the kernel's time, then equal the page.
fn failovers(exabond: &Path, bond: &Bond, r: &mut PageReader) -> anyhow::Result<String> {
    let mut out = Vec::new();
    for kind in ["carrier", "active_slave", "admin-down"] {
        let old = bond.active().context("active_slave")?;
        let new = other(bond, &old)?;
        let since = monotonic_ns();
        match kind {
            "carrier" => drop(sh(&format!("ip link set {old}p down"))?),
            "active_slave" => bond.opt("active_slave", &new)?,
            _ => drop(sh(&format!("ip link set {old} down"))?),
        }
        let a = fast_shows(r, &new, since)?;
        ensure!(r.changed(), "changed() after the {kind} failover");
        let page = wait_for("the page to follow", Duration::from_secs(10), || {
            read_page(exabond, Path::new(PAGE_DIR), &bond.name)
                .ok()
                .filter(|p| p["active_slave"].as_str() == Some(new.as_str()))
        })?;
        ensure!(
            page["legacy_word"].as_u64() == Some(u64::from(a.word)),
            "{kind}: fast word {:#x}, page word {}",
            a.word,
            page["legacy_word"]
        );
        ensure!(r.page_word() == a.word, "{kind}: page word {:#x} != fast {:#x}", r.page_word(), a.word);
        out.push(format!("{kind} → {new} (word {:#010x})", a.word));
        bond.restore(&old)?;
    }
    Ok(out.join("; "))
}

/// A failover while no agent runs: the new agent's refresh puts the right word in the slot.
fn restart(exabond: &Path, bond: &Bond, r: &mut PageReader, agent: &mut Option<Agent>) -> anyhow::Result<String> {
    let epoch = r.fast().context("a fast word")?.epoch();
    agent.take().context("the agent")?.terminate(Duration::from_secs(20))?;
    let old = bond.active().context("active_slave")?;
    let new = other(bond, &old)?;
    let since = monotonic_ns();
    bond.opt("active_slave", &new)?;
    std::thread::sleep(Duration::from_millis(300));
    let stale = r.active()?;
    *agent = Some(Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &["--no-lsm"])?);
    let a = fast_shows(r, &new, since)?;
    ensure!(r.uses_fast(), "the reader still reads the fast word");
    ensure!(r.fast().map(exabond_common::fast_reader::FastWord::epoch) == Some(epoch), "same epoch");
    // And the new agent's probe publishes the next failover.
    let since = monotonic_ns();
    bond.opt("active_slave", &old)?;
    fast_shows(r, &old, since)?;
    Ok(format!(
        "while no agent ran the slot showed ifindex {} (the kernel's was {}); after the restart {} (epoch {epoch} kept)",
        stale.ifindex,
        ifindex(&new)?,
        a.ifindex
    ))
}

/// `exabond read BOND --json` as uid 65534 (the socket is 0666): (the fast object, the note).
pub(crate) fn read_as_nobody(
    exabond: &Path,
    page_dir: &str,
    bond: &str,
) -> anyhow::Result<(serde_json::Value, String)> {
    let (ok, out) = sh_try(&format!(
        "setpriv --reuid=65534 --regid=65534 --clear-groups {} read {bond} --json --page-dir {page_dir}",
        exabond.display()
    ));
    ensure!(ok, "exabond read as uid 65534: {out}");
    let start = out.find('{').context("JSON")?;
    let v: serde_json::Value = serde_json::from_str(&out[start..]).with_context(|| out.clone())?;
    Ok((v["fast"].clone(), v["fast_note"].as_str().unwrap_or_default().to_owned()))
}

/// Without the BPF LSM (this group's agent), a process of uid 65534 gets the page only.
fn unprivileged(exabond: &Path) -> anyhow::Result<String> {
    let (fast, note) = read_as_nobody(exabond, PAGE_DIR, BOND)?;
    ensure!(fast.is_null(), "uid 65534 got the fast word without the BPF LSM's guard: {fast}");
    ensure!(note.contains("root only"), "note: {note}");
    Ok(note)
}

/// A first member enslaved to an empty managed bond: corrected by the refresh probe.
fn first_member(exabond: &Path) -> anyhow::Result<String> {
    let dir = Path::new(PAGE_DIR);
    let (code, out, err) = cli(exabond, &["manage", EMPTY])?;
    ensure!(code == 0, "exabond manage {EMPTY}: {out} {err}");
    let mut r = PageReader::open_path_with(&dir.join(format!("exabond-{EMPTY}")), FastSource::Default)?;
    ensure!(r.uses_fast(), "no fast word for {EMPTY}: {:?}", r.fast_note());
    let m = format!("{EMPTY}-a0");
    sh(&format!("ip link add {m} type veth peer name {m}p && ip link set {m}p up && ip link set {EMPTY} up"))?;
    // Judged before the enslave (as a script waiting for `exabond member` does), but not a member yet: the
    // kernel makes it active inside the enslave, before the agent has a word for it.
    wait_for("the new veth judged", Duration::from_secs(10), || {
        cli(exabond, &["member", &m]).ok().filter(|c| c.0 == 0)
    })?;
    let since = monotonic_ns();
    write_sysfs(&format!("/sys/class/net/{EMPTY}/bonding/slaves"), &format!("+{m}"))?;
    let first = r.fast().context("fast")?.state()?;
    let a = fast_shows(&r, &m, since)?;
    ensure!(r.changed(), "changed()");
    let page = read_page(exabond, dir, EMPTY)?;
    ensure!(page["legacy_word"].as_u64() == Some(u64::from(a.word)), "page {} fast {:#x}", page["legacy_word"], a.word);
    let _ = cli(exabond, &["unmanage", EMPTY]);
    let _ = sh(&format!("ip link del {m}"));
    Ok(format!(
        "right after the enslave the slot said ifindex {} flags {:#x}{}; corrected to {} word {:#x}",
        first.active_ifindex,
        first.flags,
        if first.flags & FAST_UNJUDGED != 0 { " (unjudged)" } else { "" },
        a.ifindex,
        a.word
    ))
}

/// Print what a passing check found (the suite keeps only PASS/FAIL).
fn shown(r: anyhow::Result<String>) -> anyhow::Result<()> {
    r.map(|m| println!("E2E   {m}"))
}

/// The group.
pub fn run(exabond: &Path, s: &mut Suite) {
    let _ = std::fs::create_dir_all(PAGE_DIR);
    let Some(bond) = s.setup("fast: bond fsbond of two veths", || Bond::create(BOND, 2)) else { return };
    // `--no-lsm`: the fast words do not depend on the vetoes, and the start skips their verification.
    let Some(agent) =
        s.setup("fast: agent managing fsbond", || Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &["--no-lsm"]))
    else {
        return;
    };
    let mut agent = Some(agent);
    let Some(mut r) = s.setup("fast: a reader maps the page and the fast word", || {
        let r = PageReader::open_path_with(&Path::new(PAGE_DIR).join(format!("exabond-{BOND}")), FastSource::Default)?;
        ensure!(r.uses_fast(), "no fast word: {:?}", r.fast_note());
        ensure!(r.legacy_word() == r.page_word(), "fast {:#x} page {:#x}", r.legacy_word(), r.page_word());
        Ok(r)
    }) else {
        return;
    };
    s.check("fast: without the BPF LSM a process that is not root gets the page only", || shown(unprivileged(exabond)));
    s.check("fast: carrier loss, active_slave write, admin down reach the fast word, then the page", || {
        shown(failovers(exabond, &bond, &mut r))
    });
    s.check("fast: a first member made active before the agent had its word is corrected (refresh probe)", || {
        empty_bond()?;
        let r = first_member(exabond);
        let _ = write_sysfs("/sys/class/net/bonding_masters", &format!("-{EMPTY}"));
        shown(r)
    });
    s.check("fast: across an agent restart (a failover while none ran) the reader keeps its slot", || {
        shown(restart(exabond, &bond, &mut r, &mut agent))
    });
    s.check("fast: unmanaging retires the slot: the reader goes back to the page", || {
        ensure!(!r.changed(), "a change before unmanaging");
        let (code, out, err) = cli(exabond, &["unmanage", BOND])?;
        ensure!(code == 0, "exabond unmanage: {out} {err}");
        wait_for("changed() to report the retirement", Duration::from_secs(5), || r.changed().then_some(()))?;
        ensure!(!r.uses_fast(), "still on the fast word");
        shown(Ok(r.fast_note().unwrap_or_default().to_owned()))
    });
    drop(agent);
}

/// An empty bond (down), active-backup, miimon 10.
fn empty_bond() -> anyhow::Result<()> {
    crate::lab::empty_bond(EMPTY, "active-backup")
}
