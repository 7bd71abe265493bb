//! Reading a bond's page: open by bond name or path (read-only map), a one-load "changed?" check for hot
//! loops, and consistent snapshots through the seqlock. No allocation or syscall after [`PageReader::open`]
//! (the clock reads of [`PageReader::heartbeat_age_ns`] go through the vDSO).

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use memmap2::{Mmap, MmapOptions};

use crate::clock;
use crate::page::{PageData, DEFAULT_PAGE_DIR, LAYOUT_VERSION, PAGE_MAGIC, PAGE_SIZE};
use crate::seqlock::RawPage;
use crate::writer::page_path;

/// How many times [`PageReader::snapshot`] retries a torn copy before giving up. With the latch a copy
/// is only torn when the writer completes half a publication during it, so a retry is rare even against
/// a writer publishing back to back; reaching this means the page is not written by an exabond agent (or
/// by one without the second copy that died mid-update).
pub const SNAPSHOT_RETRIES: u32 = 100_000;

/// Errors of the page reader.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The page file could not be opened or mapped.
    #[error("cannot open the page {path}: {source} (is the bond managed by a running exabond agent?)")]
    Open {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The file is smaller than a page.
    #[error("{path} is {len} bytes, not an exabond page ({PAGE_SIZE} bytes)")]
    TooSmall {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// Wrong magic: not an exabond page (for example the original kernel module's page, which has only the
    /// legacy word).
    #[error("{path} has no exabond page magic (found {found:#010x}): only its legacy word at offset 0 can be read")]
    BadMagic {
        /// The file.
        path: PathBuf,
        /// The value found.
        found: u32,
    },
    /// A page of another layout version.
    #[error(
        "{path} has page layout version {found}, this reader understands version {LAYOUT_VERSION}: update the reader"
    )]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The page was rewritten in another layout while this reader mapped it (an agent of another
    /// version adopted it in place): the legacy word still works; re-open with a reader that knows it.
    #[error("the page changed to layout version {found} (magic {magic:#010x}) while mapped; this reader understands version {LAYOUT_VERSION}")]
    LayoutChanged {
        /// The magic found.
        magic: u32,
        /// The version found.
        found: u32,
    },
    /// No consistent copy after [`SNAPSHOT_RETRIES`] attempts.
    #[error(
        "no consistent snapshot after {SNAPSHOT_RETRIES} attempts: the writer died mid-update or the page is corrupt"
    )]
    Inconsistent,
}

/// A read-only mapping of one bond page.
pub struct PageReader {
    raw: RawPage,
    cached: u32,
    _map: Mmap,
}

impl PageReader {
    /// Open the page of bond `bond` in the default directory (`/dev`).
    ///
    /// # Errors
    /// See [`ReadError`].
    pub fn open(bond: &str) -> Result<Self, ReadError> {
        Self::open_in(Path::new(DEFAULT_PAGE_DIR), bond)
    }

    /// Open the page of bond `bond` in `dir`.
    ///
    /// # Errors
    /// See [`ReadError`].
    pub fn open_in(dir: &Path, bond: &str) -> Result<Self, ReadError> {
        Self::open_path(&page_path(dir, bond))
    }

    /// Open a page file by path, check it is an exabond page of this layout, and map it read-only.
    ///
    /// # Errors
    /// See [`ReadError`].
    pub fn open_path(path: &Path) -> Result<Self, ReadError> {
        let err = |source| ReadError::Open { path: path.to_owned(), source };
        let file = File::open(path).map_err(err)?;
        let len = file.metadata().map_err(err)?.len();
        if len < PAGE_SIZE as u64 {
            return Err(ReadError::TooSmall { path: path.to_owned(), len });
        }
        // SAFETY: read-only shared mapping of one page; the writer only changes it through the seqlock
        // protocol, and all our accesses are atomic.
        let map = unsafe { MmapOptions::new().len(PAGE_SIZE).map(&file) }.map_err(err)?;
        // SAFETY: PAGE_SIZE bytes, page-aligned, kept alive in `_map`.
        let raw = unsafe { RawPage::new(map.as_ptr()) };
        let mut reader = Self { raw, cached: 0, _map: map };
        match reader.snapshot() {
            Ok(_) => {}
            Err(ReadError::LayoutChanged { magic, .. }) if magic != PAGE_MAGIC => {
                return Err(ReadError::BadMagic { path: path.to_owned(), found: magic });
            }
            Err(ReadError::LayoutChanged { found, .. }) => {
                return Err(ReadError::UnsupportedVersion { path: path.to_owned(), found });
            }
            Err(e) => return Err(e),
        }
        reader.cached = reader.legacy_word();
        Ok(reader)
    }

    /// The exasock-compatible legacy word (one acquire load).
    #[inline]
    #[must_use]
    pub fn legacy_word(&self) -> u32 {
        self.raw.legacy().load(Ordering::Acquire)
    }

    /// Hot-loop check: one load of the legacy word compared with the value seen last time; `true` (and
    /// the cache updated) when the active link changed. Like the original's word, an A→B→A flip between
    /// two calls is invisible here; [`Self::snapshot`]'s `failover_count` sees it.
    #[inline]
    pub fn changed(&mut self) -> bool {
        let w = self.legacy_word();
        if w == self.cached {
            false
        } else {
            self.cached = w;
            true
        }
    }

    /// The seqlock sequence (even when stable; grows by 2 per publication, heartbeats included).
    #[inline]
    #[must_use]
    pub fn sequence(&self) -> u64 {
        self.raw.seq().load(Ordering::Acquire)
    }

    /// A consistent copy of the block (retries while the writer is mid-update).
    ///
    /// # Errors
    /// [`ReadError::Inconsistent`] after [`SNAPSHOT_RETRIES`] failed attempts; never a torn value.
    #[inline]
    pub fn snapshot(&self) -> Result<PageData, ReadError> {
        let mut data = core::mem::MaybeUninit::<PageData>::uninit();
        // SAFETY: `data` is writable storage for one PageData.
        unsafe { self.read_raw(data.as_mut_ptr()) }?;
        // SAFETY: a successful read wrote every word, and any bits are a valid PageData.
        Ok(unsafe { data.assume_init() })
    }

    /// The retry loop: the sequence of the first consistent copy written to `out`.
    ///
    /// # Safety
    /// `out` must be valid for writes of one `PageData` (it may be uninitialised).
    #[inline(always)]
    #[expect(
        clippy::inline_always,
        reason = "the hot read path: each caller gets its own copy loop straight into its buffer, no call"
    )]
    unsafe fn read_raw(&self, out: *mut PageData) -> Result<u64, ReadError> {
        for _ in 0..SNAPSHOT_RETRIES {
            // SAFETY: forwarded from the caller.
            if let Some(seq) = unsafe { self.raw.try_read_into(out) } {
                // SAFETY: a successful read wrote every word of `out`.
                let (magic, found) = unsafe { ((*out).magic, (*out).version) };
                if magic != PAGE_MAGIC || found != LAYOUT_VERSION {
                    return Err(ReadError::LayoutChanged { magic, found });
                }
                return Ok(seq);
            }
            core::hint::spin_loop();
        }
        Err(ReadError::Inconsistent)
    }

    /// Like [`Self::snapshot`], with the sequence number the copy was taken at.
    ///
    /// # Errors
    /// As [`Self::snapshot`].
    pub fn snapshot_with_seq(&self) -> Result<(u64, PageData), ReadError> {
        let mut data = core::mem::MaybeUninit::<PageData>::uninit();
        // SAFETY: `data` is writable storage for one PageData.
        let seq = unsafe { self.read_raw(data.as_mut_ptr()) }?;
        // SAFETY: a successful read wrote every word, and any bits are a valid PageData.
        Ok((seq, unsafe { data.assume_init() }))
    }

    /// A consistent copy of the block into `out` (a buffer the caller keeps: no 520-byte value to move),
    /// returning the sequence it was taken at. The fastest full read.
    ///
    /// # Errors
    /// As [`Self::snapshot`]; `out` then holds an unspecified (but valid) value.
    #[inline]
    pub fn snapshot_into(&self, out: &mut PageData) -> Result<u64, ReadError> {
        // SAFETY: `out` is a live, writable PageData.
        unsafe { self.read_raw(out) }
    }

    /// Nanoseconds since the agent's last heartbeat in `data` (0 if it is in the future).
    #[must_use]
    pub fn heartbeat_age_ns(data: &PageData) -> u64 {
        clock::monotonic_ns().saturating_sub(data.heartbeat_mono_ns)
    }

    /// Whether the page is stale: retired, or no heartbeat for longer than `max_age`.
    ///
    /// # Errors
    /// As [`Self::snapshot`].
    pub fn is_stale(&self, max_age: std::time::Duration) -> Result<bool, ReadError> {
        let d = self.snapshot()?;
        Ok(d.is_retired() || u128::from(Self::heartbeat_age_ns(&d)) > max_age.as_nanos())
    }
}
