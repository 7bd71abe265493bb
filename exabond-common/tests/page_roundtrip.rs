//! Writer/reader tests over real files: visibility, validation, and a multi-threaded seqlock stress test.
//! (Integration tests: `missing_docs` does not apply.)

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use exabond_common::page::{self, legacy, PageData, SlaveRecord, FLAG_ACTIVE, MAX_SLAVES};
use exabond_common::reader::{PageReader, ReadError};
use exabond_common::writer::PageWriter;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("exabond-test-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A block whose every field is derived from `n`, so a torn copy (fields from two publications) is
/// detectable: see `consistent`.
#[expect(clippy::cast_possible_truncation, reason = "test data: the fields derived from `n` keep its low bits")]
fn block(n: u64) -> PageData {
    let mut d = PageData::new("bond0", 9, 1);
    d.failover_count = n;
    d.last_change_mono_ns = n * 3;
    d.last_change_real_ns = n * 5;
    d.kernel_event_ns = n * 7;
    d.heartbeat_mono_ns = !n;
    d.active_ifindex = (n % 1000) as u32;
    d.flags = FLAG_ACTIVE;
    d.legacy_word = legacy::encode(true, 0xff, (n % 251) as u8);
    d.slave_count = MAX_SLAVES as u32;
    for (i, s) in d.slaves.iter_mut().enumerate() {
        *s = SlaveRecord {
            ifindex: (n as u32).wrapping_add(i as u32),
            link_failures: (n >> 3) as u32,
            ..SlaveRecord::EMPTY
        };
    }
    d
}

fn consistent(d: &PageData) -> bool {
    let n = d.failover_count;
    *d == block(n)
}

#[test]
fn reader_sees_what_writer_publishes() {
    let dir = tmpdir("rw");
    let mut w = PageWriter::create(&dir, "bond0", &PageData::new("bond0", 9, 1)).unwrap();
    let mode = std::fs::metadata(w.path()).unwrap();
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o444);
    let mut r = PageReader::open_in(&dir, "bond0").unwrap();
    assert!(!r.changed());
    assert_eq!(r.snapshot().unwrap().bond_name(), "bond0");
    let b = block(17);
    w.publish(&b);
    assert!(r.changed(), "legacy word changed");
    assert!(!r.changed(), "cached after the first look");
    assert_eq!(r.legacy_word(), b.legacy_word);
    let s = r.snapshot().unwrap();
    assert_eq!(s, b);
    // The raw bytes at the documented offsets are what a C reader sees.
    let bytes = std::fs::read(w.path()).unwrap();
    assert_eq!(bytes.len(), page::PAGE_SIZE);
    assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), b.legacy_word);
    assert_eq!(u32::from_ne_bytes(bytes[72..76].try_into().unwrap()), page::PAGE_MAGIC);
    assert_eq!(u64::from_ne_bytes(bytes[136..144].try_into().unwrap()), 17);
    assert_eq!(u64::from_ne_bytes(bytes[64..72].try_into().unwrap()) % 2, 0);
    w.retire_and_remove().unwrap();
    assert!(r.snapshot().unwrap().is_retired(), "a reader that still maps a removed page sees it retired");
    assert!(r.is_stale(std::time::Duration::from_secs(3600)).unwrap());
    assert!(matches!(PageReader::open_in(&dir, "bond0"), Err(ReadError::Open { .. })));
}

/// The writer stores only the words that changed: after any sequence of publications the file holds
/// exactly the last block, byte for byte, and readers see it.
#[test]
fn partial_publications_leave_exactly_the_last_block() {
    let dir = tmpdir("partial");
    let mut w = PageWriter::create(&dir, "bond0", &block(1)).unwrap();
    let r = PageReader::open_in(&dir, "bond0").unwrap();
    let mut heartbeat_only = block(1);
    heartbeat_only.heartbeat_mono_ns = 42;
    let mut fewer_slaves = block(2);
    fewer_slaves.slave_count = 2;
    for s in &mut fewer_slaves.slaves[2..] {
        *s = SlaveRecord::EMPTY;
    }
    let steps = [heartbeat_only, block(2), fewer_slaves, block(2), block(1), heartbeat_only, block(1)];
    for d in &steps {
        w.publish(d);
        assert_eq!(r.snapshot().unwrap(), *d);
        assert_eq!(r.legacy_word(), d.legacy_word);
        let bytes = std::fs::read(w.path()).unwrap();
        let words = d.to_words();
        let word_at = |at: usize| u64::from_ne_bytes(bytes[at..at + 8].try_into().unwrap());
        for (i, word) in words.iter().enumerate() {
            assert_eq!(word_at(page::DATA_OFFSET + i * 8), *word, "copy 0, word {i}");
            assert_eq!(word_at(page::LATCH_DATA_OFFSET + i * 8), *word, "copy 1, word {i}");
        }
        assert_eq!(word_at(page::LATCH_SEQ_OFFSET), word_at(page::SEQ_OFFSET) + 1, "latch_seq in step");
        assert_eq!(u32::from_ne_bytes(bytes[0..4].try_into().unwrap()), d.legacy_word);
    }
    w.retire_and_remove().unwrap();
}

#[test]
fn reader_refuses_what_is_not_a_page() {
    let dir = tmpdir("bad");
    std::fs::write(dir.join("exabond-short"), [0u8; 4]).unwrap();
    assert!(matches!(PageReader::open_in(&dir, "short"), Err(ReadError::TooSmall { len: 4, .. })));
    // The original module's page: only a legacy word.
    let mut legacy_only = vec![0u8; 4096];
    legacy_only[..4].copy_from_slice(&legacy::encode(true, 1, 0).to_ne_bytes());
    std::fs::write(dir.join("exabond-old"), &legacy_only).unwrap();
    let e = PageReader::open_in(&dir, "old").err().unwrap();
    assert!(matches!(e, ReadError::BadMagic { .. }));
    assert!(e.to_string().contains("exabond-old"), "{e}");
    let mut future = vec![0u8; 4096];
    future[72..76].copy_from_slice(&page::PAGE_MAGIC.to_ne_bytes());
    future[76..80].copy_from_slice(&99u32.to_ne_bytes());
    std::fs::write(dir.join("exabond-new"), &future).unwrap();
    assert!(matches!(PageReader::open_in(&dir, "new"), Err(ReadError::UnsupportedVersion { found: 99, .. })));
}

/// Writer at full rate, readers on other threads: every snapshot must be one publication, never a mix.
#[test]
fn seqlock_stress_no_torn_snapshots() {
    let dir = tmpdir("stress");
    let mut w = PageWriter::create(&dir, "bond0", &block(0)).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let mut r = PageReader::open_in(&dir, "bond0").unwrap();
            std::thread::spawn(move || {
                let (mut reads, mut torn, mut starved, mut last) = (0u64, 0u64, 0u64, 0u64);
                while !stop.load(Ordering::Relaxed) {
                    // With a writer publishing back to back on an oversubscribed 2-core machine a reader can
                    // be starved (the bounded retries run out): that is an error, never a torn value.
                    let s = match r.snapshot() {
                        Ok(s) => s,
                        Err(ReadError::Inconsistent) => {
                            starved += 1;
                            continue;
                        }
                        Err(e) => panic!("{e}"),
                    };
                    reads += 1;
                    if !consistent(&s) {
                        torn += 1;
                    }
                    assert!(s.failover_count >= last, "went backwards: {} < {last}", s.failover_count);
                    last = s.failover_count;
                    let _ = r.changed();
                }
                (reads, torn, starved)
            })
        })
        .collect();
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(1500);
    let mut n = 0u64;
    while std::time::Instant::now() < deadline {
        n += 1;
        w.publish(&block(n));
    }
    stop.store(true, Ordering::Relaxed);
    let mut total = 0;
    for h in readers {
        let (reads, torn, starved) = h.join().unwrap();
        assert_eq!(torn, 0, "torn snapshots out of {reads}");
        println!("reader: {reads} snapshots, {starved} starved attempts");
        total += reads;
    }
    assert!(n > 1000 && total > 1000, "stress too small: {n} writes, {total} reads");
    println!("seqlock stress: {n} publications, {total} consistent snapshots, 0 torn");
}
