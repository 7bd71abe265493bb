//! The seqlock over a mapped page: atomic views of the legacy word, the sequence and the block.
//!
//! The block is copied as relaxed 64-bit atomic loads/stores between an acquire load of `seq` and an
//! acquire fence, which is the data-race-free way to write a seqlock in Rust (no volatile reads of
//! memory that another process writes).

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::page::{
    PageData, SlaveRecord, DATA_OFFSET, DATA_WORDS, LEGACY_WORD_OFFSET, MAX_SLAVES, PAGE_SIZE, SEQ_OFFSET,
};

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

    pub(crate) fn legacy(&self) -> &AtomicU32 {
        // SAFETY: in bounds and 4-aligned (page base is page-aligned); see `new`.
        unsafe { &*self.base.add(LEGACY_WORD_OFFSET).cast::<AtomicU32>() }
    }

    pub(crate) fn seq(&self) -> &AtomicU64 {
        // SAFETY: in bounds and 8-aligned; see `new`.
        unsafe { &*self.base.add(SEQ_OFFSET).cast::<AtomicU64>() }
    }

    fn words(&self) -> &[AtomicU64; DATA_WORDS] {
        // SAFETY: DATA_OFFSET + DATA_WORDS*8 <= PAGE_SIZE and 8-aligned; see `new`.
        unsafe { &*self.base.add(DATA_OFFSET).cast::<[AtomicU64; DATA_WORDS]>() }
    }

    /// One attempt at a consistent copy: `None` if the writer was active or the copy was torn.
    #[inline]
    pub(crate) fn try_read(&self) -> Option<(u64, PageData)> {
        let s1 = self.seq().load(Ordering::Acquire);
        if s1 & 1 != 0 {
            return None;
        }
        // Copy the fixed part, then only the listed slave records (unused slots are all-zero on the page
        // and stay zero in `buf`), then the tail: a 2-member bond copies 29 words instead of 65.
        let mut buf = [0u64; DATA_WORDS];
        let words = self.words();
        for i in 0..HEAD_WORDS {
            buf[i] = words[i].load(Ordering::Relaxed);
        }
        let w = buf[SLAVE_COUNT_WORD];
        let count = if cfg!(target_endian = "little") { (w >> 32) as usize } else { (w & 0xffff_ffff) as usize };
        let end = HEAD_WORDS + count.min(MAX_SLAVES) * SLAVE_WORDS;
        for i in (HEAD_WORDS..end).chain(TAIL_WORDS_START..DATA_WORDS) {
            buf[i] = words[i].load(Ordering::Relaxed);
        }
        fence(Ordering::Acquire);
        let s2 = self.seq().load(Ordering::Relaxed);
        (s1 == s2).then(|| (s1, PageData::from_words(&buf)))
    }

    /// Publish `data` (single writer only): seq odd, block, seq even, then the legacy word.
    pub(crate) fn write(&self, data: &PageData) {
        let seq = self.seq();
        let s = seq.load(Ordering::Relaxed);
        let s = s + (s & 1); // recover from a writer that died mid-update
        seq.store(s + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        for (dst, src) in self.words().iter().zip(data.to_words()) {
            dst.store(src, Ordering::Relaxed);
        }
        seq.store(s + 2, Ordering::Release);
        self.legacy().store(data.legacy_word, Ordering::Release);
    }
}
