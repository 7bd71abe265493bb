//! Pages that never strand a reader: long-running readers of every kind (the C legacy reader mapping
//! the page `MAP_PRIVATE` exactly as libexasock does, the same with `MAP_SHARED`, the C trading loop on
//! libexabond, the Rust reader) opened once before the agent is killed (`SIGKILL`), stopped (`SIGTERM`) and
//! upgraded to another build, and each must see the next failover; the page guard (only the agent writes a page,
//! root included); a crash in the middle of a publication repaired by the next agent; and, without the
//! BPF LSM, a page removed or tampered with by hand is mended.

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use exabond_common::page::legacy;
use exabond_common::reader::PageReader;

use crate::lab::{read_page, scaled, sh, wait_for, Agent, Bond, Waiter};
use crate::suite::Suite;

/// The pages live where the original put them.
const PAGE_DIR: &str = "/dev";
const BOND: &str = "pgbond";

/// A long-running reader process whose stdout lines are collected by a thread.
pub(crate) struct LineProc {
    what: &'static str,
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl LineProc {
    pub(crate) fn spawn(what: &'static str, cmd: &mut Command) -> anyhow::Result<Self> {
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().with_context(|| what)?;
        let out = BufReader::new(child.stdout.take().context("stdout")?);
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for l in out.lines().map_while(Result::ok) {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        Ok(Self { what, child, lines })
    }

    /// The next line within `timeout` (scaled).
    pub(crate) fn next(&mut self, timeout: Duration) -> anyhow::Result<String> {
        self.lines.recv_timeout(scaled(timeout)).map_err(|_| {
            let st = self.child.try_wait().ok().flatten();
            anyhow::anyhow!("{}: no line within {:?} (process: {st:?})", self.what, scaled(timeout))
        })
    }
}

impl Drop for LineProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The staged binaries' folder.
fn stage_dir() -> anyhow::Result<PathBuf> {
    Ok(std::env::current_exe()?.parent().context("exe dir")?.to_owned())
}

fn page_file() -> PathBuf {
    Path::new(PAGE_DIR).join(format!("exabond-{BOND}"))
}

fn inode() -> anyhow::Result<u64> {
    Ok(std::fs::metadata(page_file())?.ino())
}

/// The other member.
fn other(bond: &Bond, active: &str) -> String {
    bond.members.iter().find(|m| *m != active).cloned().unwrap_or_default()
}

/// The readers kept across the restarts.
struct Readers {
    private: LineProc,
    shared: LineProc,
    trading: LineProc,
    rust: Vec<Option<Waiter>>,
}

impl Readers {
    fn start(exabond: &Path, count0: u64, rounds: u64) -> anyhow::Result<Self> {
        let dir = stage_dir()?;
        let page = page_file();
        let mut private = LineProc::spawn(
            "legacy_reader --private (MAP_PRIVATE, as libexasock)",
            Command::new(dir.join("legacy_reader")).arg(&page).arg("--private"),
        )?;
        let mut shared =
            LineProc::spawn("legacy_reader (MAP_SHARED)", Command::new(dir.join("legacy_reader")).arg(&page))?;
        let mut trading = LineProc::spawn(
            "trading_loop (libexabond)",
            Command::new(dir.join("trading_loop")).args([BOND, PAGE_DIR, "--count", &rounds.to_string()]),
        )?;
        for p in [&mut private, &mut shared, &mut trading] {
            let l = p.next(Duration::from_secs(10))?;
            ensure!(l.starts_with("ready"), "{}: {l}", p.what);
        }
        // One Rust reader per round, each waiting for its failover count on the page it opened now.
        let mut rust = Vec::new();
        for k in 1..=rounds {
            let w = Waiter::start_for(exabond, Path::new(PAGE_DIR), BOND, count0 + k, Duration::from_secs(900))?;
            rust.push(Some(w));
        }
        Ok(Self { private, shared, trading, rust })
    }

    /// Every reader sees failover number `k` (1-based) to `to`, whose legacy word is `word`.
    fn see(&mut self, k: u64, to: &str, word: u32) -> anyhow::Result<()> {
        for p in [&mut self.private, &mut self.shared] {
            let l = p.next(Duration::from_secs(10))?;
            ensure!(l.contains(&format!("0x{word:08x}")) && l.contains("active=1"), "{}: {l}", p.what);
        }
        let l = self.trading.next(Duration::from_secs(10))?;
        ensure!(l.starts_with(&format!("change {k} ")) && l.contains(&format!("active={to} ")), "trading_loop: {l}");
        let idx = usize::try_from(k - 1)?;
        let waiter = self.rust.get_mut(idx).and_then(Option::take).context("Rust reader")?;
        let v = waiter.finish().with_context(|| format!("Rust reader {k}"))?;
        ensure!(v["active_slave"] == to, "Rust reader {k} saw active {} (expected {to})", v["active_slave"]);
        Ok(())
    }
}

impl Drop for Readers {
    fn drop(&mut self) {
        for w in self.rust.iter_mut().flatten() {
            w.kill();
        }
    }
}

/// Fail over to the other member; returns its name and the word the page then carries.
fn failover(exabond: &Path, bond: &Bond) -> anyhow::Result<(String, u32, serde_json::Value)> {
    let active = bond.active().context("active")?;
    let to = other(bond, &active);
    bond.opt("active_slave", &to)?;
    let v = wait_for(&format!("the page to show {to}"), Duration::from_secs(10), || {
        read_page(exabond, Path::new(PAGE_DIR), BOND).ok().filter(|v| v["active_slave"] == to.as_str())
    })?;
    let word = u32::try_from(v["legacy_word"].as_u64().context("legacy_word")?)?;
    Ok((to, word, v))
}

/// Run the group (kernel booted with the BPF LSM).
pub fn run(exabond: &Path, s: &mut Suite) {
    let Some(bond) = s.setup("pages: bond pgbond (2 veth members)", || Bond::create(BOND, 2)) else {
        return;
    };
    let Some(mut agent) = s.setup("pages: the agent starts, writing /dev/exabond-pgbond", || {
        Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &[])
    }) else {
        return;
    };
    let other_build = stage_dir().map(|d| d.join("exabond-other")).unwrap_or_default();
    let Some((ino0, mut readers)) = s.setup("pages: four kinds of long-running reader open the page once", || {
        let v = read_page(exabond, Path::new(PAGE_DIR), BOND)?;
        let count0 = v["failover_count"].as_u64().context("count")?;
        Ok((inode()?, Readers::start(exabond, count0, 3)?))
    }) else {
        return;
    };
    let restarts: [(&str, &Path); 3] =
        [("SIGKILL", exabond), ("SIGTERM", exabond), ("an upgrade to another build", &other_build)];
    for (k, (how, binary)) in (1u64..).zip(restarts) {
        s.check(&format!("pages: readers opened before {how} + restart see the next failover (same inode)"), || {
            if how == "SIGKILL" {
                agent.kill9()?;
            } else {
                ensure!(agent.terminate(Duration::from_secs(15))?.success(), "agent exit");
            }
            ensure!(inode()? == ino0, "the page's inode changed while no agent ran");
            agent = Agent::start(binary, Path::new(PAGE_DIR), &[BOND], &[])?;
            ensure!(inode()? == ino0, "the restarted agent made a new page file: readers are stranded");
            agent.wait_log("adopted the existing page in place", Duration::from_secs(5))?;
            let t = Instant::now();
            let (to, word, v) = failover(exabond, &bond)?;
            readers.see(k, &to, word)?;
            println!(
                "E2E restart by {how}: failover to {to} (word 0x{word:08x}) published {} us after the kernel event \
                 (source {}), seen by all 4 readers within {} ms of the active_slave write (the test's own polling \
                 included)",
                v["kernel_to_page_us"],
                v["last_change_source"],
                t.elapsed().as_millis()
            );
            ensure!(v["kernel_event_ns"].as_u64().unwrap_or(0) != 0, "the probe did not see the failover: {v}");
            Ok(())
        });
    }

    s.check("pages: the word decodes as exasock-bonding.h does (16-bit flags, 8-bit id, 8-bit port)", || {
        let r = PageReader::open_in(Path::new(PAGE_DIR), BOND)?;
        let d = r.snapshot()?;
        let w = r.page_word();
        ensure!(w == d.legacy_word, "word 0x{w:08x} vs block copy 0x{:08x}", d.legacy_word);
        ensure!(w & 0xffff == legacy::ACTIVE, "flags {:#06x}", w & 0xffff);
        let slot = d.slaves().iter().position(|s| Some(s.name()) == d.active_name()).context("active slot")?;
        ensure!(
            (legacy::smartnic_id(w), legacy::port(w)) == (legacy::NON_SMARTNIC_ID, u8::try_from(slot)?),
            "id/port of a veth member: {:?}",
            (legacy::smartnic_id(w), legacy::port(w))
        );
        Ok(())
    });

    s.check(
        "pages: root cannot write a page (open, mmap, mprotect, truncate, chmod, rm, mv): EACCES, unchanged",
        || {
            guard_refuses_everything()?;
            let (to, word, _) = failover(exabond, &bond)?;
            ensure!(PageReader::open_in(Path::new(PAGE_DIR), BOND)?.page_word() == word, "agent no longer publishes");
            for what in ["opened for writing", "attributes changed", "removed", "renamed", "writable mapping"] {
                agent.wait_log(what, Duration::from_secs(5))?;
            }
            println!("E2E page guard: every write path refused; failover to {to} still published");
            Ok(())
        },
    );

    s.check("pages: the fast words: uid 65534 gets them; nobody but the agent maps them writable (EACCES)", || {
        let (fast, note) = crate::fast::read_as_nobody(exabond, PAGE_DIR, BOND)?;
        ensure!(!fast.is_null(), "uid 65534 got no fast word: {note}");
        let msg = fast_map_write_refused()?;
        agent.wait_log("writable mapping of the fast words", Duration::from_secs(5))?;
        Ok(format!("uid 65534 reads slot {} epoch {}; {msg}", fast["slot"], fast["epoch"]))
    });

    s.check("pages: a crash mid-publication (sequence odd) is repaired by the next agent; readers consistent", || {
        crash_repaired(exabond, &bond, &mut agent)
    });
    drop(readers);
    drop(agent);
}

/// An agent aborted in the middle of a publication: readers read the block before the crash meanwhile, and
/// the next agent repairs the page.
fn crash_repaired(exabond: &Path, bond: &Bond, agent: &mut Agent) -> anyhow::Result<()> {
    ensure!(agent.terminate(Duration::from_secs(15))?.success(), "agent exit");
    let reader = PageReader::open_in(Path::new(PAGE_DIR), BOND)?;
    let mut crashing = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &["--test-crash-mid-publish"])?;
    let active = bond.active().context("active")?;
    bond.opt("active_slave", &other(bond, &active))?;
    wait_for("the agent to abort mid-publication", Duration::from_secs(10), || (!crashing.alive()).then_some(()))?;
    ensure!(
        reader.sequence() & 1 == 1,
        "sequence {} is even: the hook did not stop mid-publication",
        reader.sequence()
    );
    // The latch: the copy the dead agent was not writing still holds the block before the crash, so a
    // reader is not stuck while no agent repairs the page.
    let torn = reader.snapshot().map_err(|e| anyhow::anyhow!("a torn page gave no snapshot: {e}"))?;
    ensure!(
        torn.active_name() == Some(active.as_str()),
        "mid-crash snapshot {:?}, before {active}",
        torn.active_name()
    );
    drop(crashing);
    *agent = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &[])?;
    agent.wait_log("mid-publication", Duration::from_secs(5))?;
    ensure!(reader.sequence() & 1 == 0, "sequence still odd");
    let d = reader.snapshot()?;
    let kernel = bond.active().context("active")?;
    ensure!(d.active_name() == Some(kernel.as_str()), "page {:?}, kernel {kernel}", d.active_name());
    ensure!(reader.page_word() == d.legacy_word, "word and block disagree");
    let (to, word, _) = failover(exabond, bond)?;
    ensure!(reader.page_word() == word && reader.snapshot()?.active_name() == Some(to.as_str()), "reader");
    Ok(())
}

/// A writable shared mapping of the fast words' descriptor (root, not the agent) is refused with EACCES;
/// a read-only one works.
fn fast_map_write_refused() -> anyhow::Result<String> {
    use std::os::fd::AsRawFd as _;
    let sock = Path::new(exabond_common::fast::READER_SOCKET);
    let (reply, fd) = exabond_common::fast_reader::request(sock, BOND)?;
    let len = exabond_common::fast::FAST_MAP_BYTES;
    let try_map = |prot: i32| {
        // SAFETY: a fresh mapping of our own descriptor, unmapped at once.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, libc::MAP_SHARED, fd.as_raw_fd(), 0) };
        if p == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: the mapping just made.
        unsafe { libc::munmap(p, len) };
        Ok(())
    };
    expect_eacces("mmap(PROT_WRITE, MAP_SHARED) of the fast words", try_map(libc::PROT_READ | libc::PROT_WRITE))?;
    try_map(libc::PROT_READ).context("a read-only mapping of the fast words must work")?;
    let w = exabond_common::fast_reader::FastWord::map(&fd, reply.slot, reply.epoch, reply.bond_ifindex)?;
    let st = w.state()?;
    let page = PageReader::open_in(Path::new(PAGE_DIR), BOND)?.page_word();
    ensure!(st.word == page, "fast word {:#x}, page word {page:#x}", st.word);
    Ok(format!("slot {} word {:#010x} = the page's", reply.slot, st.word))
}

/// errno of an `io::Error`.
fn errno(e: &std::io::Error) -> i32 {
    e.raw_os_error().unwrap_or(0)
}

fn expect_eacces<T>(what: &str, r: std::io::Result<T>) -> anyhow::Result<()> {
    match r {
        Err(e) if errno(&e) == libc::EACCES => Ok(()),
        Err(e) => bail!("{what}: {e}, expected EACCES"),
        Ok(_) => bail!("{what}: succeeded, expected EACCES"),
    }
}

/// mmap the page with `prot`/`flags` from a read-only descriptor; mprotect to writable if asked.
fn map(prot: i32, flags: i32, mprotect_rw: bool) -> std::io::Result<()> {
    let f = std::fs::File::open(page_file())?;
    // SAFETY: a fresh mapping of our own fd, unmapped below; nothing is read or written through it.
    let p = unsafe { libc::mmap(std::ptr::null_mut(), 4096, prot, flags, std::os::fd::AsRawFd::as_raw_fd(&f), 0) };
    if p == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `p` is the mapping just made.
    let rc = if mprotect_rw { unsafe { libc::mprotect(p, 4096, libc::PROT_READ | libc::PROT_WRITE) } } else { 0 };
    let err = std::io::Error::last_os_error();
    // SAFETY: as above.
    unsafe { libc::munmap(p, 4096) };
    if rc != 0 {
        return Err(err);
    }
    Ok(())
}

fn guard_refuses_everything() -> anyhow::Result<()> {
    let page = page_file();
    let before = std::fs::read(&page)?;
    let meta = std::fs::metadata(&page)?;
    let rw = || std::fs::OpenOptions::new().read(true).write(true).open(&page);
    expect_eacces("open(O_RDWR)", rw())?;
    expect_eacces("open(O_WRONLY)", std::fs::OpenOptions::new().write(true).open(&page))?;
    expect_eacces(
        "open(O_RDONLY|O_TRUNC)",
        std::fs::OpenOptions::new().read(true).custom_flags(libc::O_TRUNC).open(&page),
    )?;
    expect_eacces("mmap(PROT_WRITE, MAP_PRIVATE)", map(libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE, false))?;
    expect_eacces(
        "mmap(PROT_WRITE, MAP_SHARED) of a read-only fd",
        map(libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, false),
    )?;
    expect_eacces("mprotect(PROT_WRITE) of a MAP_PRIVATE mapping", map(libc::PROT_READ, libc::MAP_PRIVATE, true))?;
    map(libc::PROT_READ, libc::MAP_PRIVATE, false)
        .context("a read-only MAP_PRIVATE mapping (libexasock's) must work")?;
    let cpath = std::ffi::CString::new(page.as_os_str().as_encoded_bytes())?;
    // SAFETY: plain syscalls on a NUL-terminated path.
    let truncate = unsafe { libc::truncate(cpath.as_ptr(), 0) };
    expect_eacces("truncate(2)", if truncate == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) })?;
    expect_eacces("chmod 0666", std::fs::set_permissions(&page, std::os::unix::fs::PermissionsExt::from_mode(0o666)))?;
    expect_eacces("rm", std::fs::remove_file(&page))?;
    expect_eacces("mv away", std::fs::rename(&page, "/dev/exabond-moved"))?;
    std::fs::write("/dev/exabond-impostor", vec![0xffu8; 4096])?;
    let over = std::fs::rename("/dev/exabond-impostor", &page);
    let _ = std::fs::remove_file("/dev/exabond-impostor");
    expect_eacces("mv another file over the page", over)?;
    let (ok, out) = crate::lab::sh_try(&format!("printf '\\377\\377\\377\\377' > {}", page.display()));
    ensure!(!ok, "a shell redirection wrote the page: {out}");
    let after = std::fs::metadata(&page)?;
    ensure!(after.ino() == meta.ino() && after.len() == 4096 && after.mode() & 0o7777 == 0o444, "metadata changed");
    let now = std::fs::read(&page)?;
    // The heartbeat moves on; the legacy word (what the attacks aimed at) must not.
    ensure!(now[..4] == before[..4], "legacy word changed: {:?} -> {:?}", &before[..4], &now[..4]);
    Ok(())
}

/// Run the group on a kernel booted without the BPF LSM: nothing refuses, the agent mends.
pub fn run_nolsm(exabond: &Path, s: &mut Suite) {
    let Some(bond) = s.setup("pages (no BPF LSM): bond pgbond", || Bond::create(BOND, 2)) else {
        return;
    };
    let Some(agent) =
        s.setup("pages (no BPF LSM): the agent starts", || Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &[]))
    else {
        return;
    };
    s.check("pages (no BPF LSM): chmod reverted, a write(2) scribble republished, rm re-created", || {
        let page = page_file();
        std::fs::set_permissions(&page, std::os::unix::fs::PermissionsExt::from_mode(0o666))?;
        wait_for("0444 again", Duration::from_secs(2), || {
            (std::fs::metadata(&page).ok()?.mode() & 0o7777 == 0o444).then_some(())
        })?;
        let word = PageReader::open_in(Path::new(PAGE_DIR), BOND)?.page_word();
        {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new().write(true).open(&page).context("root's open without the guard")?;
            f.write_all(&[0xffu8; 4]).context("root's write(2) without the page guard")?;
        }
        wait_for("the word republished", Duration::from_secs(2), || {
            (PageReader::open_in(Path::new(PAGE_DIR), BOND).ok()?.page_word() == word).then_some(())
        })?;
        // A truncation that keeps the first page (a cut to 0 would make every mapping fault, see README).
        sh(&format!("truncate -s 4 {}", page.display()))?;
        wait_for("the truncated page restored", Duration::from_secs(2), || {
            let r = PageReader::open_in(Path::new(PAGE_DIR), BOND).ok()?;
            (r.page_word() == word && r.snapshot().ok()?.active_name().is_some()).then_some(())
        })?;
        let old = PageReader::open_in(Path::new(PAGE_DIR), BOND)?;
        let ino = inode()?;
        std::fs::remove_file(&page)?;
        let t = Instant::now();
        wait_for("the page re-created", Duration::from_secs(2), || inode().ok().filter(|i| *i != ino))?;
        println!("E2E page removed by hand: re-created after {} ms", t.elapsed().as_millis());
        ensure!(old.snapshot()?.is_retired(), "readers of the removed file are not told to re-open");
        let (to, word, _) = failover(exabond, &bond)?;
        ensure!(PageReader::open_in(Path::new(PAGE_DIR), BOND)?.page_word() == word, "new page not published ({to})");
        for what in ["set back to 0444", "republished", "truncated", "re-created"] {
            agent.wait_log(what, Duration::from_secs(5))?;
        }
        Ok(())
    });
}
