//! The latch and the revision before it work together in both directions (the layout version stays 1):
//! a reader of the first revision (copy 0 at an even sequence only) reads a latched writer's page without a
//! torn copy, and this revision's reader reads a page whose writer keeps no second copy. Both ways under a
//! writer publishing back to back on another thread. And a latched reader does not wait for the writer:
//! at an odd sequence it reads copy 1.
//! (Integration tests: `missing_docs` does not apply.)

use std::fs::OpenOptions;
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use exabond_common::page::{
    legacy, PageData, DATA_OFFSET, DATA_WORDS, FLAG_ACTIVE, LATCH_SEQ_OFFSET, PAGE_SIZE, SEQ_OFFSET,
};
use exabond_common::reader::PageReader;
use exabond_common::writer::PageWriter;

fn tmpdir(tag: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("exabond-latch-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A block whose fields all follow from `n`: a copy mixing two publications does not equal `block(its n)`.
fn block(n: u64) -> PageData {
    let mut d = PageData::new("bond0", 9, 1);
    d.failover_count = n;
    d.last_change_mono_ns = n.wrapping_mul(3);
    d.kernel_event_ns = n.wrapping_mul(7);
    d.heartbeat_mono_ns = !n;
    d.active_ifindex = u32::try_from(n % 1000).unwrap();
    d.flags = FLAG_ACTIVE;
    d.legacy_word = legacy::encode(true, 0xff, u8::try_from(n % 251).unwrap());
    d.last_update_mono_ns = n.wrapping_mul(11);
    d
}

/// A read-write shared mapping of a page file, viewed as atomics at byte offsets.
struct Raw(memmap2::MmapRaw);

impl Raw {
    fn open(path: &std::path::Path) -> Self {
        let f = OpenOptions::new().read(true).write(true).open(path).unwrap();
        Self(memmap2::MmapOptions::new().len(PAGE_SIZE).map_raw(&f).unwrap())
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a page-aligned mapping, offsets multiples of 8")]
    fn word(&self, at: usize) -> &AtomicU64 {
        assert!(at % 8 == 0 && at + 8 <= PAGE_SIZE);
        // SAFETY: in bounds, 8-aligned, the mapping lives as long as `self`; every access is atomic.
        unsafe { &*self.0.as_ptr().add(at).cast::<AtomicU64>() }
    }

    /// The first revision's reader: copy 0 between two equal, even reads of the sequence.
    fn read_v1(&self) -> Option<PageData> {
        let s1 = self.word(SEQ_OFFSET).load(Ordering::Acquire);
        if s1 & 1 == 1 {
            return None;
        }
        let mut w = [0u64; DATA_WORDS];
        for (i, v) in w.iter_mut().enumerate() {
            *v = self.word(DATA_OFFSET + 8 * i).load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        (self.word(SEQ_OFFSET).load(Ordering::Relaxed) == s1).then(|| PageData::from_words(&w))
    }

    /// The first revision's writer: sequence odd, copy 0, sequence even, legacy word; no copy 1, no
    /// `latch_seq`.
    fn write_v1(&self, d: &PageData) {
        let seq = self.word(SEQ_OFFSET);
        let s = seq.load(Ordering::Relaxed);
        let s = s + (s & 1);
        seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (i, &v) in d.as_words().iter().enumerate() {
            self.word(DATA_OFFSET + 8 * i).store(v, Ordering::Relaxed);
        }
        seq.store(s + 2, Ordering::Release);
        // The legacy word: the low half of word 0 (little-endian), stored alone as the first revision did.
        let w0 = self.word(0);
        let rest = w0.load(Ordering::Relaxed) & !0xffff_ffff;
        w0.store(rest | u64::from(d.legacy_word), Ordering::Release);
    }
}

/// Reads for `dur` on this thread with `read`, while `write(n)` publishes block `n` (from 6 up) back to
/// back on another; returns (consistent reads, bad reads): a read is bad if it mixes two publications or
/// goes back to an older one than a read before it (a stale copy).
fn race(
    dur: Duration,
    write: impl FnMut(u64) + Send + 'static,
    mut read: impl FnMut() -> Option<PageData>,
) -> (u64, u64) {
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let stop = stop.clone();
        let mut write = write;
        std::thread::spawn(move || {
            let mut n = 6;
            while !stop.load(Ordering::Relaxed) {
                write(n);
                n += 1;
            }
        })
    };
    let (mut good, mut torn, mut last) = (0, 0, 0);
    let t = Instant::now();
    while t.elapsed() < dur {
        if let Some(d) = read() {
            if d == block(d.failover_count) && d.failover_count >= last {
                last = d.failover_count;
                good += 1;
            } else {
                torn += 1;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    writer.join().unwrap();
    (good, torn)
}

#[test]
fn a_first_revision_reader_reads_a_latched_page() {
    let dir = tmpdir("v1reader");
    let mut w = PageWriter::create(&dir, "bond0", &block(1)).unwrap();
    let raw = Raw::open(w.path());
    assert_eq!(raw.read_v1(), Some(block(1)));
    let (good, torn) = race(Duration::from_secs(2), move |n| w.publish(&block(n)), || raw.read_v1());
    assert_eq!(torn, 0, "torn copies read by a first-revision reader");
    assert!(good > 1000, "only {good} reads succeeded");
}

#[test]
fn a_latched_reader_reads_a_page_without_a_second_copy() {
    let dir = tmpdir("v1writer");
    let w = PageWriter::create(&dir, "bond0", &block(1)).unwrap();
    let path = w.path().to_owned();
    drop(w);
    let raw = Raw::open(&path);
    // A first-revision writer takes over: copy 1 and latch_seq stay as the latched writer left them.
    raw.write_v1(&block(5));
    let r = PageReader::open_in(&dir, "bond0").unwrap();
    assert_eq!(r.snapshot().unwrap(), block(5), "copy 0 at an even sequence");
    assert_eq!(r.legacy_word(), block(5).legacy_word);
    let (good, torn) = race(Duration::from_secs(2), move |n| raw.write_v1(&block(n)), || r.snapshot().ok());
    assert_eq!(torn, 0, "torn or stale-copy reads of a page without a second copy");
    assert!(good > 1000, "only {good} reads succeeded");
}

#[test]
fn a_reader_mid_publication_reads_copy_1_without_waiting() {
    let dir = tmpdir("midpub");
    let mut writer = PageWriter::create(&dir, "bond0", &block(1)).unwrap();
    writer.publish(&block(2));
    let raw = Raw::open(writer.path());
    let r = PageReader::open_in(&dir, "bond0").unwrap();
    // Freeze a publication half-way through its first half: sequence odd, copy 0 half-written.
    let s = raw.word(SEQ_OFFSET).load(Ordering::Relaxed);
    assert_eq!(raw.word(LATCH_SEQ_OFFSET).load(Ordering::Relaxed), s + 1, "copy 1 valid at the next odd sequence");
    raw.word(SEQ_OFFSET).store(s + 1, Ordering::Release);
    for i in 0..DATA_WORDS / 2 {
        raw.word(DATA_OFFSET + 8 * i).store(block(3).as_words()[i], Ordering::Relaxed);
    }
    let (seq, d) = r.snapshot_with_seq().unwrap();
    assert_eq!((seq, d), (s + 1, block(2)), "copy 1, at once");
    assert_eq!(raw.read_v1(), None, "a first-revision reader has to wait here");
    // A stale latch_seq (a writer without a second copy is mid-update): the reader must not take copy 1.
    raw.word(LATCH_SEQ_OFFSET).store(s - 1, Ordering::Relaxed);
    let t = Instant::now();
    assert!(r.snapshot().is_err(), "no snapshot while only a half-written copy 0 is valid");
    assert!(t.elapsed() < Duration::from_secs(10));
}
