//! The C programs of `examples/c`, built with `cc` against `libexabond.a` and against `libexabond.so`, run
//! as separate processes on a page that this test writes with `PageWriter`: the trading loop and the
//! exasock-only legacy reader must each report every failover, in order.
//!
//! Where the libraries come from: this crate's `[lib]` has `crate-type = ["cdylib", "staticlib", "rlib"]`,
//! and cargo builds a library with all its crate types in one rustc run, also when it is built only as
//! the dependency of these tests. The outputs go to `target/<profile>/deps/` (the directory of this test
//! executable, found with `std::env::current_exe()`): `libexabond.rlib`, which this test links, and
//! `libexabond.a` / `libexabond.so` from the same compilation, so they are never stale with respect to
//! the Rust side under test. (`cargo build` also copies them up to `target/<profile>/`; that copy is
//! only refreshed by `cargo build`, so it is the fallback.) A plain `cargo test -p exabond-reader-c`
//! therefore needs no separate build step, and no nested cargo run (which would contend for the build
//! directory lock and rebuild under another profile).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use exabond_common::clock;
use exabond_common::page::{self, legacy, PageData, SlaveRecord, FLAG_ACTIVE, FLAG_RETIRED};
use exabond_common::writer::PageWriter;

/// Generous: a debug build on a loaded 2-core machine, with spinning children competing for the cores.
const TIMEOUT: Duration = Duration::from_secs(30);

/// `target/<profile>/deps`: the directory of this test executable.
fn deps_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current_exe");
    exe.parent().expect("target/<profile>/deps/<test>").to_owned()
}

/// `file` from `deps/` (built with the rlib under test), else from `target/<profile>/`.
fn library(file: &str) -> PathBuf {
    let deps = deps_dir();
    let candidates = [deps.join(file), deps.parent().unwrap().join(file)];
    candidates
        .iter()
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{file} is in none of {candidates:?}: `cargo test -p exabond-reader-c` builds it with the \
                 crate's rlib (or run `cargo build -p exabond-reader-c` with the same profile and target dir)"
            )
        })
        .clone()
}

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/c")
}

fn out_dir() -> PathBuf {
    let d = deps_dir().parent().unwrap().join("exabond-c-examples");
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[derive(Clone, Copy, Debug)]
enum Link {
    Static,
    Shared,
    /// `legacy_reader.c`: libc only.
    None,
}

/// Compile `examples/c/<name>.c` (strict warnings) into `out_dir()/<name>-<link>`.
fn build(name: &str, link: Link) -> PathBuf {
    let src = examples_dir().join(format!("{name}.c"));
    let exe = out_dir().join(format!("{name}-{link:?}").to_lowercase());
    let mut cc = Command::new("cc");
    cc.args(["-std=c11", "-O2", "-Wall", "-Wextra", "-Werror", "-pedantic"])
        .arg("-I")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"))
        .arg("-o")
        .arg(&exe)
        .arg(&src);
    match link {
        Link::Static => {
            // What `rustc --print native-static-libs` lists for a staticlib on x86_64-unknown-linux-gnu.
            cc.arg(library("libexabond.a")).args(["-lgcc_s", "-lutil", "-lrt", "-lpthread", "-lm", "-ldl", "-lc"]);
        }
        Link::Shared => {
            let dir = library("libexabond.so").parent().unwrap().to_owned();
            cc.arg("-L").arg(&dir).arg("-lexabond").arg(format!("-Wl,-rpath,{}", dir.display()));
        }
        Link::None => {}
    }
    let out = cc.output().expect("cannot run cc");
    assert!(out.status.success(), "cc {} ({link:?}) failed:\n{}", src.display(), String::from_utf8_lossy(&out.stderr));
    exe
}

/// Each program is compiled once per test process (the tests run on parallel threads).
fn program(name: &'static str, link: Link) -> &'static Path {
    static TRADING_STATIC: OnceLock<PathBuf> = OnceLock::new();
    static TRADING_SHARED: OnceLock<PathBuf> = OnceLock::new();
    static LEGACY: OnceLock<PathBuf> = OnceLock::new();
    let cell = match (name, link) {
        ("trading_loop", Link::Static) => &TRADING_STATIC,
        ("trading_loop", Link::Shared) => &TRADING_SHARED,
        ("legacy_reader", Link::None) => &LEGACY,
        _ => unreachable!("{name} {link:?}"),
    };
    cell.get_or_init(|| build(name, link))
}

/// A running C program whose stdout lines arrive on a channel; killed if dropped while running.
struct Proc {
    name: String,
    child: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Proc {
    fn spawn(exe: &Path, args: &[&str]) -> Self {
        let mut child = Command::new(exe)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", exe.display()));
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Self { name: exe.file_name().unwrap().to_string_lossy().into_owned(), child, lines, seen: Vec::new() }
    }

    /// The next output line (panics after TIMEOUT or at end of output).
    fn next_line(&mut self) -> String {
        match self.lines.recv_timeout(TIMEOUT) {
            Ok(l) => {
                self.seen.push(l.clone());
                l
            }
            Err(e) => panic!("{}: no output line within {TIMEOUT:?} ({e}); so far: {:#?}", self.name, self.seen),
        }
    }

    /// Wait for the exit (panics after TIMEOUT) and return the exit code.
    fn wait(&mut self) -> i32 {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(st) = self.child.try_wait().unwrap() {
                return st.code().unwrap_or(-1);
            }
            assert!(Instant::now() < deadline, "{} did not exit; output: {:#?}", self.name, self.seen);
            std::thread::sleep(Duration::from_millis(5));
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

fn tmpdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("exabond-cprog-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Three members: eth0 = exanic0:0, eth1 = exanic0:1, eth2 = exanic1:0.
const SLAVES: [(&str, u32, u8, u8); 3] = [("eth0", 11, 0, 0), ("eth1", 12, 0, 1), ("eth2", 13, 1, 0)];

/// The active slot after each failover (`None`: no active slave; the word then keeps id and port and
/// only loses its ACTIVE bit). Every step changes the legacy word.
const FAILOVERS: [Option<usize>; 7] = [Some(1), Some(2), None, Some(0), Some(2), Some(1), Some(0)];

/// The page after `n` failovers (`n` = 0: eth0 active).
fn state(n: usize) -> PageData {
    let mut d = PageData::new("bond0", 10, std::process::id());
    d.slave_count = u32::try_from(SLAVES.len()).unwrap();
    for (i, &(name, ifindex, id, port)) in SLAVES.iter().enumerate() {
        d.slaves[i] =
            SlaveRecord { name: page::name_buf(name), ifindex, link: 1, smartnic_id: id, port, ..SlaveRecord::EMPTY };
    }
    let active = if n == 0 { Some(0) } else { FAILOVERS[n - 1] };
    // The slot whose id/port the word keeps when nothing is active.
    let last = (0..=n).rev().find_map(|k| if k == 0 { Some(0) } else { FAILOVERS[k - 1] }).unwrap();
    let (_, _, id, port) = SLAVES[last];
    d.failover_count = n as u64;
    d.last_change_source = 1;
    d.heartbeat_mono_ns = clock::monotonic_ns();
    d.legacy_word = legacy::encode(active.is_some(), id, port);
    if let Some(a) = active {
        d.flags = FLAG_ACTIVE;
        d.active_slot = u32::try_from(a).unwrap();
        d.active_ifindex = SLAVES[a].1;
        d.active_name = page::name_buf(SLAVES[a].0);
        d.slaves[a].role = 1;
    }
    d
}

fn expected_trading_line(n: usize) -> String {
    let d = state(n);
    let (name, slot) = match FAILOVERS[n - 1] {
        Some(a) => (SLAVES[a].0, i32::try_from(a).unwrap()),
        None => ("-", -1),
    };
    format!(
        "change {n} word=0x{:08x} active={name} ifindex={} slot={slot} failovers={n} source=page",
        d.legacy_word, d.active_ifindex
    )
}

fn expected_legacy_line(n: usize) -> String {
    let w = state(n).legacy_word;
    format!(
        "word {n} 0x{w:08x} active={} id={} port={}",
        u8::from(legacy::is_active(w)),
        legacy::smartnic_id(w),
        legacy::port(w)
    )
}

/// Both programs on one page; every failover is published only after both reported the previous one,
/// so each must report all of them, in order.
fn every_failover_is_seen(link: Link, tag: &str) {
    let dir = tmpdir(tag);
    let mut w = PageWriter::create(&dir, "bond0", &state(0)).unwrap();
    let count = FAILOVERS.len().to_string();
    let dir_s = dir.to_str().unwrap();
    let page_s = w.path().to_str().unwrap().to_owned();
    let mut trading = Proc::spawn(program("trading_loop", link), &["bond0", dir_s, "--count", &count]);
    let mut legacy_r = Proc::spawn(program("legacy_reader", Link::None), &[&page_s, "--count", &count]);
    let ready = format!("ready word=0x{:08x}", state(0).legacy_word);
    assert_eq!(trading.next_line(), ready);
    assert_eq!(legacy_r.next_line(), ready);
    for n in 1..=FAILOVERS.len() {
        w.publish(&state(n));
        assert_eq!(trading.next_line(), expected_trading_line(n));
        assert_eq!(legacy_r.next_line(), expected_legacy_line(n));
    }
    assert_eq!(trading.wait(), 0, "trading_loop exit code");
    assert_eq!(legacy_r.wait(), 0, "legacy_reader exit code");
    println!("{link:?}: trading_loop {:#?}\nlegacy_reader {:#?}", trading.seen, legacy_r.seen);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn static_library_every_failover_seen_by_trading_loop_and_legacy_reader() {
    every_failover_is_seen(Link::Static, "static");
}

#[test]
fn shared_library_every_failover_seen_by_trading_loop_and_legacy_reader() {
    every_failover_is_seen(Link::Shared, "shared");
}

#[test]
fn trading_loop_once() {
    let dir = tmpdir("once");
    let mut w = PageWriter::create(&dir, "bond0", &state(2)).unwrap();
    let dir_s = dir.to_str().unwrap();
    for link in [Link::Static, Link::Shared] {
        let mut p = Proc::spawn(program("trading_loop", link), &["bond0", dir_s, "--once"]);
        let d = state(2);
        assert_eq!(
            p.next_line(),
            format!(
                "snapshot bond=bond0 word=0x{:08x} active=eth2 ifindex=13 slot=2 failovers=2 slaves=3 \
                 stale=0",
                d.legacy_word
            ),
            "{link:?}"
        );
        assert_eq!(p.wait(), 0);
    }
    let mut retired = state(3);
    retired.flags |= FLAG_RETIRED;
    w.publish(&retired);
    let mut p = Proc::spawn(program("trading_loop", Link::Shared), &["bond0", dir_s, "--once"]);
    let line = p.next_line();
    assert!(line.contains(" active=- ") && line.ends_with(" stale=1"), "{line}");
    assert_eq!(p.wait(), 0);
}

#[test]
fn trading_loop_reports_open_errors() {
    let dir = tmpdir("errors");
    let dir_s = dir.to_str().unwrap();
    for (bond, message) in [("bond/0", "invalid bond name"), ("bond0", "no such page")] {
        let out = Command::new(program("trading_loop", Link::Shared)).args([bond, dir_s, "--once"]).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(message), "{bond}: {stderr}");
    }
    let out = Command::new(program("legacy_reader", Link::None)).arg(dir.join("exabond-none")).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
}
