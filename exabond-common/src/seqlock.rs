//! The seqlock over a mapped page: atomic views of the legacy word, the sequence and the block.
//!
//! The block is copied as relaxed 64-bit atomic loads/stores between an acquire load of `seq` and an
//! acquire fence, which is the data-race-free way to write a seqlock in Rust (no volatile reads of
//! memory that another process writes).

use core::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};

use crate::page::{PageData, DATA_OFFSET, DATA_WORDS, LEGACY_WORD_OFFSET, PAGE_SIZE, SEQ_OFFSET};

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
        let mut buf = [0u64; DATA_WORDS];
        for (dst, src) in buf.iter_mut().zip(self.words()) {
            *dst = src.load(Ordering::Relaxed);
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
