//! The seqlock across address spaces: two reader *processes* map the page read-only (as trading processes
//! do) and take snapshots in a loop while this process publishes at full rate. Every snapshot must be one
//! publication, never a mix of two: 0 torn snapshots, with at least 10^7 snapshots in total (asserted
//! in optimised builds; a debug build stops at a time cap and prints what it reached).
//!
//! The readers are this test binary run again (`std::env::current_exe()`) with [`CHILD_ENV`] set to the
//! page's path, filtered to the `reader_process` entry point (`--ignored --exact reader_process`): it is
//! `#[ignore]`d, so a plain `cargo test` never runs it on its own, and it fails loudly when started without
//! that variable (e.g. by `cargo test -- --ignored`). A reader stops at its share of the target, when its
//! stdin closes (the parent's time cap) or at its own cap, and prints one `RESULT` line that the parent
//! parses.
//! (Integration tests: `missing_docs` does not apply.)

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exabond_common::page::{legacy, PageData, SlaveRecord, FLAG_ACTIVE, MAX_SLAVES};
use exabond_common::reader::{PageReader, ReadError};
use exabond_common::writer::PageWriter;

/// Set (to the page path) in the environment of the reader processes.
const CHILD_ENV: &str = "EXABOND_STRESS_READER_PAGE";
/// Number of reader processes.
const READERS: u64 = 2;
/// Snapshots to take across all readers.
const TARGET_READS: u64 = 10_000_000;
/// The parent stops the readers after this long whatever they reached: debug builds (`cargo test`) are
/// slower than 10^7 snapshots in this time on 2 cores; optimised builds reach the target well before.
const TIME_CAP: Duration = Duration::from_secs(if cfg!(debug_assertions) { 20 } else { 50 });
/// Optimised code is fast enough that the 10^7 target is asserted.
const ASSERT_TARGET: bool = !cfg!(debug_assertions);

/// A block whose every field is derived from `n` (as in `page_roundtrip.rs`), so a torn copy (fields from
/// two publications) is detectable: see [`consistent`].
#[expect(clippy::cast_possible_truncation, reason = "test data: the fields derived from `n` keep its low bits")]
fn block(n: u64) -> PageData {
    let mut d = PageData::new("bond0", 9, 1);
    d.failover_count = n;
    d.last_change_mono_ns = n.wrapping_mul(3);
    d.last_change_real_ns = n.wrapping_mul(5);
    d.kernel_event_ns = n.wrapping_mul(7);
    d.heartbeat_mono_ns = !n;
    d.agent_pid = (n >> 32) as u32 ^ 0x5a5a_5a5a;
    d.active_ifindex = (n % 1000) as u32;
    d.active_slot = (n % MAX_SLAVES as u64) as u32;
    d.active_mac = n.to_le_bytes();
    let h = (n ^ 0x0101_0101_0101_0101).wrapping_mul(0x9e37_79b9_7f4a_7c15).to_le_bytes();
    for (i, b) in d.active_name.iter_mut().enumerate() {
        *b = h[i % 8];
    }
    d.flags = FLAG_ACTIVE;
    d.legacy_word = legacy::encode(true, 0xff, (n % 251) as u8);
    d.slave_count = MAX_SLAVES as u32;
    for (i, s) in d.slaves.iter_mut().enumerate() {
        *s = SlaveRecord {
            ifindex: (n as u32).wrapping_add(i as u32),
            link_failures: (n >> 3) as u32,
            mac: n.wrapping_add(i as u64).to_le_bytes(),
            ..SlaveRecord::EMPTY
        };
    }
    d
}

fn consistent(d: &PageData) -> bool {
    *d == block(d.failover_count)
}

/// What one reader process did.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    /// Consistent snapshots.
    reads: u64,
    /// Snapshots mixing two publications (must stay 0).
    torn: u64,
    /// `ReadError::Inconsistent`: the bounded retries ran out (counted, not a failure).
    starved: u64,
    /// Snapshots of a publication other than the previous snapshot's (the page really moved).
    distinct: u64,
}

impl Counts {
    fn line(&self) -> String {
        format!("RESULT reads={} torn={} starved={} distinct={}", self.reads, self.torn, self.starved, self.distinct)
    }

    fn parse(line: &str) -> Option<Self> {
        let mut c = Self::default();
        let rest = line.trim().strip_prefix("RESULT ")?;
        for kv in rest.split(' ') {
            let (k, v) = kv.split_once('=')?;
            let v = v.parse().ok()?;
            match k {
                "reads" => c.reads = v,
                "torn" => c.torn = v,
                "starved" => c.starved = v,
                "distinct" => c.distinct = v,
                _ => return None,
            }
        }
        Some(c)
    }
}

/// The reader process's loop.
fn run_reader(page: &Path) -> Counts {
    // Opening takes a snapshot too (to check the magic), which a full-rate writer can starve.
    let mut r = loop {
        match PageReader::open_path(page) {
            Ok(r) => break r,
            Err(ReadError::Inconsistent) => {}
            Err(e) => panic!("reader: cannot open the page: {e}"),
        }
    };
    // The parent closes our stdin to stop us.
    let stop = Arc::new(AtomicBool::new(false));
    {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Relaxed);
        });
    }
    let share = TARGET_READS.div_ceil(READERS);
    let deadline = Instant::now() + TIME_CAP + Duration::from_secs(5);
    let mut c = Counts::default();
    let mut last = 0u64;
    let mut first_torn = None;
    while c.reads < share {
        // Checked every 4096 snapshots: a relaxed load is cheap, the clock read less so.
        if c.reads % 4096 == 0 && (stop.load(Ordering::Relaxed) || Instant::now() > deadline) {
            break;
        }
        let s = match r.snapshot() {
            Ok(s) => s,
            Err(ReadError::Inconsistent) => {
                c.starved += 1;
                continue;
            }
            Err(e) => panic!("reader: {e}"),
        };
        c.reads += 1;
        if !consistent(&s) {
            c.torn += 1;
            first_torn.get_or_insert(s);
        }
        assert!(s.failover_count >= last, "went backwards: {} < {last}", s.failover_count);
        if s.failover_count != last {
            c.distinct += 1;
            last = s.failover_count;
        }
        let _ = r.changed();
    }
    if let Some(t) = first_torn {
        eprintln!("first torn snapshot: {t:?}");
    }
    c
}

/// The reader role of [`two_reader_processes_never_see_a_torn_snapshot`], which starts it as a child process;
/// not a test of its own.
#[test]
#[ignore = "child-process entry point of two_reader_processes_never_see_a_torn_snapshot, which runs it"]
fn reader_process() {
    let page = std::env::var_os(CHILD_ENV).unwrap_or_else(|| {
        panic!(
            "reader_process is the reader child of two_reader_processes_never_see_a_torn_snapshot, which starts it \
             with {CHILD_ENV}=<page path>; run that test instead"
        )
    });
    let c = run_reader(Path::new(&page));
    // On its own line: libtest has printed "test reader_process ... " without a newline.
    println!("\n{}", c.line());
}

#[test]
fn two_reader_processes_never_see_a_torn_snapshot() {
    let dir = std::env::temp_dir().join(format!("exabond-xproc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = PageWriter::create(&dir, "bond0", &block(0)).unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut children: Vec<_> = (0..READERS)
        .map(|_| {
            Command::new(&exe)
                .args(["--ignored", "--exact", "reader_process", "--nocapture", "--test-threads=1"])
                .env(CHILD_ENV, w.path())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .expect("start a reader process")
        })
        .collect();

    // Publish back to back until both readers are done or the time cap.
    let start = Instant::now();
    let mut n = 0u64;
    let mut next = block(1);
    loop {
        n += 1;
        w.publish(&next);
        next = block(n + 1);
        if n % 1024 == 0 {
            let done = children.iter_mut().all(|c| c.try_wait().is_ok_and(|s| s.is_some()));
            if done || start.elapsed() > TIME_CAP {
                break;
            }
        }
    }
    let write_time = start.elapsed();
    let mut total = Counts::default();
    for (i, mut child) in children.into_iter().enumerate() {
        drop(child.stdin.take()); // stop it if still running
        let out = BufReader::new(child.stdout.take().unwrap());
        let lines: Vec<String> = out.lines().map_while(Result::ok).collect();
        let status = child.wait().unwrap();
        assert!(status.success(), "reader {i} failed: {status}; {lines:?}");
        let c = lines
            .iter()
            .find_map(|l| Counts::parse(l))
            .unwrap_or_else(|| panic!("reader {i} printed no RESULT line: {lines:?}"));
        println!("reader process {i}: {c:?}");
        total.reads += c.reads;
        total.torn += c.torn;
        total.starved += c.starved;
        total.distinct += c.distinct;
        // Unoptimised, the writer holds the sequence odd most of the time and a reader's copy is slow, so
        // readers mostly succeed while the writer is descheduled: fewer distinct publications.
        let min_distinct = if cfg!(debug_assertions) { 10 } else { 1000 };
        assert!(
            c.distinct >= min_distinct,
            "reader {i} saw only {} distinct publications: the test did not race",
            c.distinct
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = total.reads as f64 / write_time.as_secs_f64() / 1e6;
    println!(
        "cross-process seqlock stress ({}): {n} publications in {write_time:.1?}, {} consistent snapshots \
         over {READERS} processes ({rate:.1} M/s), {} torn, {} starved snapshot calls, {} distinct",
        if cfg!(debug_assertions) { "debug" } else { "optimised" },
        total.reads,
        total.torn,
        total.starved,
        total.distinct,
    );
    assert_eq!(total.torn, 0, "torn snapshots: {total:?}");
    if ASSERT_TARGET {
        assert!(total.reads >= TARGET_READS, "only {} snapshots in {TIME_CAP:?} (target {TARGET_READS})", total.reads);
    } else if total.reads < TARGET_READS {
        println!(
            "debug build: {} of the {TARGET_READS} snapshot target within the {TIME_CAP:?} cap \
             (asserted only with optimisations: `cargo test --release`)",
            total.reads
        );
    }
}
