//! The latched seqlock over a mapped page: atomic views of the legacy word, the sequence, the two copies
//! of the block and `latch_seq` (the protocol is in [`crate::page`]'s module doc).
//!
//! The block is copied as relaxed 64-bit atomic loads/stores between an acquire load of `seq` and an
//! acquire fence, which is the data-race-free way to write a seqlock in Rust (no volatile reads of
//! memory that another process writes).

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::page::{
    PageData, SlaveRecord, DATA_OFFSET, DATA_WORDS, LATCH_DATA_OFFSET, LATCH_SEQ_OFFSET, LEGACY_WORD_OFFSET,
    MAX_SLAVES, PAGE_SIZE, SEQ_OFFSET,
};

/// One copy of the block in the page, as atomics.
type Words = [AtomicU64; DATA_WORDS];

/// Words before the slave table.
const HEAD_WORDS: usize = core::mem::offset_of!(PageData, slaves) / 8;
/// Word holding `slave_count` (its upper half on little-endian).
const SLAVE_COUNT_WORD: usize = core::mem::offset_of!(PageData, slave_count) / 8;
/// Words per slave record.
const SLAVE_WORDS: usize = core::mem::size_of::<SlaveRecord>() / 8;
const _: () = assert!(core::mem::offset_of!(PageData, slaves) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(PageData, slave_count) % 8 == 4);
const _: () = assert!(core::mem::size_of::<SlaveRecord>() % 8 == 0);
/// First word after the slave table.
const TAIL_WORDS_START: usize = HEAD_WORDS + MAX_SLAVES * SLAVE_WORDS;
const _: () = assert!(TAIL_WORDS_START <= DATA_WORDS);

/// Atomic views over one mapped page. Holds a raw pointer; the owner keeps the mapping alive.
#[derive(Clone, Copy)]
pub(crate) struct RawPage {
    base: *const u8,
}

// SAFETY: every access goes through atomics.
unsafe impl Send for RawPage {}
// SAFETY: as above.
unsafe impl Sync for RawPage {}

impl RawPage {
    /// # Safety
    /// `base` must point to at least `PAGE_SIZE` bytes, 8-aligned, that stay mapped while this is used.
    pub(crate) unsafe fn new(base: *const u8) -> Self {
        debug_assert!(base as usize % 8 == 0);
        let _ = PAGE_SIZE;
        Self { base }
    }

    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the base is 8-aligned (a contract of `new`) and the offset a multiple of 8"
    )]
    pub(crate) fn legacy(&self) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned (page base is page-aligned); see `new`.
        unsafe { &*self.base.add(LEGACY_WORD_OFFSET).cast::<AtomicU32>() }
    }

    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the base is 8-aligned (a contract of `new`) and the offset a multiple of 8"
    )]
    pub(crate) fn seq(&self) -> &AtomicU64 {
        // SAFETY: in bounds and 8-aligned; see `new`.
        unsafe { &*self.base.add(SEQ_OFFSET).cast::<AtomicU64>() }
    }

    /// `latch_seq`: the odd sequence at which copy 1 is the block to read.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the base is 8-aligned (a contract of `new`) and the offset a multiple of 8"
    )]
    pub(crate) fn latch_seq(&self) -> &AtomicU64 {
        // SAFETY: in bounds and 8-aligned; see `new`.
        unsafe { &*self.base.add(LATCH_SEQ_OFFSET).cast::<AtomicU64>() }
    }

    /// Copy 0 of the block.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the base is 8-aligned (a contract of `new`) and the offset a multiple of 8"
    )]
    fn words(&self) -> &Words {
        // SAFETY: DATA_OFFSET + DATA_WORDS*8 <= PAGE_SIZE and 8-aligned; see `new`.
        unsafe { &*self.base.add(DATA_OFFSET).cast::<Words>() }
    }

    /// Copy 1 of the block.
    #[expect(
        clippy::cast_ptr_alignment,
        reason = "the base is 8-aligned (a contract of `new`) and the offset a multiple of 8"
    )]
    fn latch_words(&self) -> &Words {
        // SAFETY: LATCH_DATA_OFFSET + DATA_WORDS*8 <= PAGE_SIZE and 8-aligned (asserted in page.rs); see `new`.
        unsafe { &*self.base.add(LATCH_DATA_OFFSET).cast::<Words>() }
    }

    /// One attempt at a consistent copy into `out`: the sequence it was taken at, or `None` if the copy
    /// was torn by a publication that completed a half during it, or the sequence is odd and copy 1 is not
    /// valid for it (a writer that keeps no second copy is mid-update). Then `out` holds a mix of two
    /// versions: valid bits, wrong meaning. Every word of `out` is written when this returns `Some`.
    ///
    /// At an even sequence it reads copy 0, at an odd one copy 1: never the copy the writer is storing.
    /// One pass, straight into the destination (no staging buffer, no second copy): the fixed part, the
    /// listed slave records, zeros for the unlisted slots (not read from the page), then the tail. A
    /// 2-member bond loads 29 words instead of 65.
    ///
    /// # Safety
    /// `out` must be valid for writes of one `PageData` (it may be uninitialised).
    #[inline]
    pub(crate) unsafe fn try_read_into(&self, out: *mut PageData) -> Option<u64> {
        let s1 = self.seq().load(Ordering::Acquire);
        let words = if s1 & 1 == 0 {
            self.words()
        } else if self.latch_seq().load(Ordering::Relaxed) == s1 {
            self.latch_words()
        } else {
            return None;
        };
        let dst = out.cast::<u64>();
        let put = |i: usize, v: u64| {
            debug_assert!(i < DATA_WORDS);
            // SAFETY: `out` is writable (caller); PageData is DATA_WORDS u64 words, 8-aligned, with no padding
            // and valid for any bits (asserted in page.rs), and every `i` passed is < DATA_WORDS.
            unsafe { dst.add(i).write(v) };
        };
        let mut count_word = 0;
        for (i, w) in words.iter().enumerate().take(HEAD_WORDS) {
            let v = w.load(Ordering::Relaxed);
            if i == SLAVE_COUNT_WORD {
                count_word = v;
            }
            put(i, v);
        }
        let count = if cfg!(target_endian = "little") {
            (count_word >> 32) as usize
        } else {
            (count_word & 0xffff_ffff) as usize
        };
        let end = HEAD_WORDS + count.min(MAX_SLAVES) * SLAVE_WORDS;
        for (i, w) in words.iter().enumerate().take(end).skip(HEAD_WORDS) {
            put(i, w.load(Ordering::Relaxed));
        }
        for i in end..TAIL_WORDS_START {
            put(i, 0);
        }
        for (i, w) in words.iter().enumerate().skip(TAIL_WORDS_START) {
            put(i, w.load(Ordering::Relaxed));
        }
        fence(Ordering::Acquire);
        let s2 = self.seq().load(Ordering::Relaxed);
        (s1 == s2).then_some(s1)
    }

    /// `magic` and `version` of the block, read without the seqlock (for a writer adopting a page whose
    /// sequence may be odd).
    pub(crate) fn magic_version(self) -> (u32, u32) {
        const _: () = assert!(core::mem::offset_of!(PageData, magic) == 0);
        const _: () = assert!(core::mem::offset_of!(PageData, version) == 4);
        let w = self.words()[0].load(Ordering::Acquire);
        #[expect(clippy::cast_possible_truncation, reason = "the two halves of one word")]
        if cfg!(target_endian = "little") {
            (w as u32, (w >> 32) as u32)
        } else {
            ((w >> 32) as u32, w as u32)
        }
    }

    /// `failover_count` of the block, read without the seqlock (see [`Self::magic_version`]).
    pub(crate) fn failover_count(self) -> u64 {
        const W: usize = core::mem::offset_of!(PageData, failover_count) / 8;
        const _: () = assert!(core::mem::offset_of!(PageData, failover_count) % 8 == 0);
        self.words()[W].load(Ordering::Acquire)
    }

    /// The block as it is, without the seqlock (for a writer, or a page no writer touches).
    pub(crate) fn read_unchecked(&self) -> PageData {
        let mut out = PageData::new("", 0, 0);
        // SAFETY: `out` is a live PageData; every word is loaded atomically.
        let dst = (&raw mut out).cast::<u64>();
        for (i, w) in self.words().iter().enumerate() {
            // SAFETY: i < DATA_WORDS, the size of PageData in words (asserted in page.rs).
            unsafe { dst.add(i).write(w.load(Ordering::Relaxed)) };
        }
        out
    }

    /// Whether the page holds exactly `data` (both copies, `latch_seq` in step) and its legacy word (the
    /// writer's check that nobody else wrote the page; only meaningful while no publication runs).
    pub(crate) fn holds(self, data: &PageData) -> bool {
        let same = |words: &Words| words.iter().zip(data.as_words()).all(|(w, &v)| w.load(Ordering::Relaxed) == v);
        let s = self.seq().load(Ordering::Acquire);
        s & 1 == 0
            && self.latch_seq().load(Ordering::Relaxed) == s + 1
            && self.legacy().load(Ordering::Relaxed) == data.legacy_word
            && same(self.words())
            && same(self.latch_words())
    }

    /// Test hook: start publishing `data` and stop half-way, as a writer that dies mid-publication
    /// leaves the page: sequence odd, the first half of copy 0 stored, the legacy word not.
    pub(crate) fn write_torn(self, data: &PageData) {
        let seq = self.seq();
        let s = seq.load(Ordering::Relaxed);
        seq.store((s | 1) + if s & 1 == 0 { 0 } else { 2 }, Ordering::Release);
        fence(Ordering::Release);
        for (dst, &src) in self.words().iter().zip(data.as_words()).take(DATA_WORDS / 2) {
            dst.store(src, Ordering::Relaxed);
        }
    }

    /// Publish a change of one word of the block (single writer only): the latch with one store per copy,
    /// nothing compared, nothing copied. `word` < `DATA_WORDS`. What a heartbeat costs.
    pub(crate) fn write_word(self, word: usize, value: u64) {
        let (w0, w1) = (&self.words()[word], &self.latch_words()[word]);
        let seq = self.seq();
        let s = seq.load(Ordering::Relaxed);
        let s = s + (s & 1);
        seq.store(s + 1, Ordering::Release);
        fence(Ordering::Release);
        w0.store(value, Ordering::Relaxed);
        seq.store(s + 2, Ordering::Release);
        fence(Ordering::Release);
        w1.store(value, Ordering::Relaxed);
        self.latch_seq().store(s + 3, Ordering::Relaxed);
    }

    /// Publish `data` (single writer only), storing every word of both copies.
    pub(crate) fn write(self, data: &PageData) {
        self.write_over(data, None);
    }

    /// Publish `data` over `previous`, what this writer last published (single writer only): only the
    /// words that differ are stored, so the cache lines a publication does not change (a heartbeat changes
    /// one word; the slave table rarely changes) stay valid in the readers' caches. `None` stores all.
    ///
    /// The latch: copy 1 (valid at `seq` + 1, see `latch_seq`) serves readers while copy 0 is written at
    /// an odd sequence, copy 0 serves them while copy 1 is written at the even one. With `None` (a page
    /// just created or adopted, whose copy 1 may hold anything), `latch_seq` is not in step yet: readers
    /// that find the sequence odd retry, as with a writer that keeps no second copy.
    pub(crate) fn write_over(self, data: &PageData, previous: Option<&PageData>) {
        // Which words to store, worked out before the sequence goes odd so the windows hold nothing but
        // the stores.
        const _: () = assert!(DATA_WORDS <= 128);
        let new = data.as_words();
        let changed: u128 = match previous {
            Some(p) => {
                let old = p.as_words();
                (0..DATA_WORDS).filter(|&i| old[i] != new[i]).fold(0, |m, i| m | (1u128 << i))
            }
            None => u128::MAX,
        };
        let store = |words: &Words| {
            for (i, (dst, &src)) in words.iter().zip(new).enumerate() {
                if changed & (1u128 << i) != 0 {
                    dst.store(src, Ordering::Relaxed);
                }
            }
        };
        let seq = self.seq();
        let s = seq.load(Ordering::Relaxed);
        let s = s + (s & 1); // recover from a writer that died mid-update
                             // Release: copy 1 and `latch_seq`, stored at the end of the previous publication, are visible to
                             // whoever sees the odd sequence. The fence orders the odd sequence before copy 0's stores.
        seq.store(s + 1, Ordering::Release);
        fence(Ordering::Release);
        store(self.words());
        seq.store(s + 2, Ordering::Release);
        // The word hot loops poll: left alone (its cache line undisturbed) unless it changes. Stored as
        // soon as copy 0 holds its block.
        if previous.is_none_or(|p| p.legacy_word != data.legacy_word) {
            self.legacy().store(data.legacy_word, Ordering::Release);
        }
        // The even sequence before copy 1's stores (a reader still on copy 1 at s + 1 then retries).
        fence(Ordering::Release);
        store(self.latch_words());
        self.latch_seq().store(s + 3, Ordering::Relaxed);
    }
}
