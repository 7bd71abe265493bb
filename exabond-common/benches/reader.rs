//! Reader costs on a real mapped page file (`cargo bench -p exabond-common --bench reader`):
//!
//! - `legacy_word/changed`: [`PageReader::changed`], the hot-loop check, against
//!   `legacy_word/atomic_load_acquire`: a bare `AtomicU32::load(Acquire)` of the same word of the same
//!   file (through a second read-only mapping of it), the floor any reader pays;
//! - `snapshot/uncontended`: [`PageReader::snapshot`] with no writer;
//! - `snapshot/into_buffer`: [`PageReader::snapshot_into`] (into a buffer the caller keeps) with no writer;
//! - `snapshot/writer_full_rate`: the same while a writer thread on another core publishes back to back
//!   (the bench thread and the writer are pinned to different CPUs when there are two). Then, against the
//!   same writer, a fixed run of `$EXABOND_CONTENDED_CALLS` calls (10^8 by default) counts the
//!   `ReadError::Inconsistent` results (retries exhausted): the latch's goal is none.

use std::fs::File;
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use criterion::Criterion;
use exabond_common::page::{legacy, PageData, SlaveRecord, FLAG_ACTIVE, MAX_SLAVES, PAGE_SIZE};
use exabond_common::reader::PageReader;
use exabond_common::writer::PageWriter;

/// A full block (every slave listed), different for each `n`.
fn block(n: u64) -> PageData {
    let mut d = PageData::new("bond0", 9, 1);
    d.failover_count = n;
    d.heartbeat_mono_ns = n;
    d.flags = FLAG_ACTIVE;
    d.legacy_word = legacy::encode(true, 0xff, (n % 2) as u8);
    d.slave_count = u32::try_from(MAX_SLAVES).unwrap();
    for (s, ifindex) in d.slaves.iter_mut().zip(10..) {
        *s = SlaveRecord { ifindex, ..SlaveRecord::EMPTY };
    }
    d
}

/// Pin the calling thread to `cpu` if the machine has it (best effort: benches still run unpinned).
fn pin_to(cpu: usize) {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid cpu_set_t and `cpu` < CPU_SETSIZE (checked by the caller: 0 or 1).
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc != 0 {
        eprintln!("(could not pin to CPU {cpu}: {})", std::io::Error::last_os_error());
    }
}

#[expect(clippy::many_single_char_names, reason = "criterion's usual c/g/b next to the writer w and the reader r")]
fn reader_benches(c: &mut Criterion) {
    let dir = std::env::temp_dir().join(format!("exabond-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let mut w = PageWriter::create(&dir, "bond0", &block(0)).unwrap();
    let mut r = PageReader::open_in(&dir, "bond0").unwrap();
    let two_cpus = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    if two_cpus {
        pin_to(0);
    }

    // The same legacy word through a second read-only mapping of the same file (same physical page).
    let file = File::open(w.path()).unwrap();
    // SAFETY: read-only shared mapping of the page file, which stays PAGE_SIZE bytes; accessed only
    // through an atomic below.
    let map = unsafe { memmap2::MmapOptions::new().len(PAGE_SIZE).map(&file) }.unwrap();
    #[expect(clippy::cast_ptr_alignment, reason = "a mapping is page-aligned")]
    // SAFETY: offset 0 of a page-aligned mapping of PAGE_SIZE bytes: in bounds and 4-aligned; the map
    // outlives every use (dropped at the end of this function).
    let word = unsafe { &*map.as_ptr().cast::<AtomicU32>() };

    let mut g = c.benchmark_group("legacy_word");
    g.bench_function("changed", |b| b.iter(|| black_box(r.changed())));
    g.bench_function("atomic_load_acquire", |b| {
        b.iter(|| black_box(black_box(word).load(Ordering::Acquire)));
    });
    g.finish();

    let mut g = c.benchmark_group("snapshot");
    g.bench_function("uncontended", |b| b.iter(|| black_box(r.snapshot())));
    let mut buf = PageData::new("", 0, 0);
    g.bench_function("into_buffer", |b| b.iter(|| black_box(r.snapshot_into(black_box(&mut buf)))));

    // A writer publishing back to back on the other CPU.
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let blocks = [block(1), block(2)];
        std::thread::spawn(move || {
            if two_cpus {
                pin_to(1);
            }
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                w.publish(&blocks[(n & 1) as usize]);
                n += 1;
            }
            (w, n)
        })
    };
    let started = std::time::Instant::now();
    let (mut calls, mut inconsistent) = (0u64, 0u64);
    g.bench_function("writer_full_rate", |b| {
        b.iter(|| {
            let s = r.snapshot();
            calls += 1;
            inconsistent += u64::from(s.is_err());
            black_box(s)
        });
    });
    g.finish();
    // The give-up count over a fixed, large number of calls (criterion's own count varies with its timing).
    let fixed: u64 = std::env::var("EXABOND_CONTENDED_CALLS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000_000);
    let t = std::time::Instant::now();
    let mut fixed_failed = 0u64;
    for _ in 0..fixed {
        fixed_failed += u64::from(black_box(r.snapshot()).is_err());
    }
    #[expect(clippy::cast_precision_loss, reason = "a mean for display")]
    let fixed_ns = t.elapsed().as_nanos() as f64 / fixed.max(1) as f64;
    println!("snapshot against the writer, {fixed} calls: {fixed_failed} gave up, {fixed_ns:.1} ns per call");
    stop.store(true, Ordering::Relaxed);
    let (w, publications) = writer.join().unwrap();
    let secs = started.elapsed().as_secs_f64();
    #[expect(clippy::cast_precision_loss, reason = "a rate for display")]
    let rate = publications as f64 / secs / 1e6;
    println!(
        "snapshot/writer_full_rate: writer published {publications} times in {secs:.1} s ({rate:.1} M/s); \
         {inconsistent} of {calls} snapshot calls returned ReadError::Inconsistent"
    );
    // For `cargo xtask bench`'s table (it sets CRITERION_HOME to a fresh directory per run).
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        let doc = format!(
            "{{\"publications\": {publications}, \"seconds\": {secs}, \"snapshot_calls\": {calls}, \"inconsistent\": {inconsistent}, \"fixed_calls\": {fixed}, \"fixed_inconsistent\": {fixed_failed}, \"fixed_ns\": {fixed_ns}}}\n"
        );
        let _ = std::fs::write(std::path::Path::new(&home).join("contention.json"), doc);
    }
    drop(map);
    drop(r);
    drop(w);
    let _ = std::fs::remove_dir_all(&dir);
}

// What `criterion_group!`/`criterion_main!` expand to, without their undocumented `pub fn`.
fn main() {
    let mut c = Criterion::default().configure_from_args();
    reader_benches(&mut c);
    c.final_summary();
}
