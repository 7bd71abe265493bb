//! Reading a bond's page: open by bond name or path (read-only map), a one-load "changed?" check for hot
//! loops, and consistent snapshots through the seqlock. No allocation or syscall after [`PageReader::open`]
//! (the clock reads of [`PageReader::heartbeat_age_ns`] go through the vDSO).
//!
//! Where the agent offers it, the reader also maps the bond's fast word ([`crate::fast`]: the kernel's own
//! publication of the legacy word, ahead of the page by the agent's latency) and its hot-loop calls
//! ([`PageReader::changed`], [`PageReader::legacy_word`], [`PageReader::active`]) read that; everything
//! else, and those calls once the fast word is retired or when it is not offered, reads the page.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use memmap2::{Mmap, MmapOptions};

use crate::clock;
use crate::fast::READER_SOCKET;
use crate::fast_reader::{FastError, FastWord};
use crate::page::{PageData, DEFAULT_PAGE_DIR, FLAG_ACTIVE, LAYOUT_VERSION, PAGE_FILE_PREFIX, PAGE_MAGIC, PAGE_SIZE};
use crate::seqlock::RawPage;
use crate::writer::page_path;

/// Where [`PageReader`] asks for the fast word.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FastSource<'a> {
    /// `$EXABOND_READER_SOCKET`, else [`READER_SOCKET`]; none at all if `$EXABOND_FAST` is `off`.
    Default,
    /// This socket.
    Socket(&'a Path),
    /// Never: the page only.
    Off,
}

/// Which publication a reader's hot-loop calls read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActiveSource {
    /// The kernel's fast word.
    Fast,
    /// The agent's page.
    Page,
}

/// The active slave as the hot-loop calls see it (see [`PageReader::active`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Active {
    /// The legacy word.
    pub word: u32,
    /// ifindex of the active slave (0: none shown).
    pub ifindex: u32,
    /// `CLOCK_MONOTONIC` ns of the kernel's change behind it (0 when the page's change was not seen by
    /// the probe).
    pub kernel_ns: u64,
    /// Where it was read.
    pub source: ActiveSource,
}

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

/// A read-only mapping of one bond page, and of its fast word where the agent offers it.
pub struct PageReader {
    raw: RawPage,
    cached: u32,
    /// The fast word's word-and-epoch as `changed` saw it last.
    cached_fast: u64,
    /// The fast slot's first word while the hot-loop calls read it; null once retired or never attached.
    hot: *const core::sync::atomic::AtomicU64,
    fast: Option<FastWord>,
    /// Why the fast word is not read (it was not offered), for diagnostics.
    fast_note: Option<String>,
    /// The fast word was attached, then retired: the hot-loop calls went back to the page.
    fast_retired: bool,
    _map: Mmap,
}

// SAFETY: `hot` points into `fast`'s mapping, owned by this value; every access is an atomic load.
unsafe impl Send for PageReader {}
// SAFETY: as above; the `&self` methods only load.
unsafe impl Sync for PageReader {}

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

    /// Open a page file by path, check it is an exabond page of this layout, map it read-only, and attach
    /// the bond's fast word if the agent offers it ([`FastSource::Default`]).
    ///
    /// # Errors
    /// See [`ReadError`]. The fast word is best effort: [`Self::fast_note`] says why it is not read.
    pub fn open_path(path: &Path) -> Result<Self, ReadError> {
        Self::open_path_with(path, FastSource::Default)
    }

    /// [`Self::open_path`] with the fast word asked for at `fast`.
    ///
    /// # Errors
    /// See [`ReadError`].
    pub fn open_path_with(path: &Path, fast: FastSource<'_>) -> Result<Self, ReadError> {
        let mut reader = Self::open_page(path)?;
        let env_socket = std::env::var_os("EXABOND_READER_SOCKET").map(PathBuf::from);
        let socket = match fast {
            FastSource::Off => None,
            FastSource::Socket(p) => Some(p.to_owned()),
            FastSource::Default if std::env::var_os("EXABOND_FAST").is_some_and(|v| v == "off") => None,
            FastSource::Default => Some(env_socket.unwrap_or_else(|| PathBuf::from(READER_SOCKET))),
        };
        let bond = path.file_name().and_then(|n| n.to_str()).and_then(|n| n.strip_prefix(PAGE_FILE_PREFIX));
        match (socket, bond) {
            (Some(socket), Some(bond)) => {
                if let Err(e) = reader.attach_fast(&socket, bond) {
                    reader.fast_note = Some(e.to_string());
                }
            }
            (None, _) => reader.fast_note = Some("not asked for".into()),
            (_, None) => reader.fast_note = Some(format!("{} is not named {PAGE_FILE_PREFIX}<bond>", path.display())),
        }
        Ok(reader)
    }

    /// Ask the agent at `socket` for `bond`'s fast word and read it from now on (replacing one attached
    /// before). The slot must speak for this page's bond (same ifindex).
    ///
    /// # Errors
    /// [`FastError`]; the reader then keeps reading what it read before.
    pub fn attach_fast(&mut self, socket: &Path, bond: &str) -> Result<(), FastError> {
        let fast = FastWord::connect(socket, bond)?;
        let page_bond = self.snapshot().map_or(0, |d| d.bond_ifindex);
        if fast.bond_ifindex() != page_bond {
            return Err(FastError::Protocol {
                path: socket.to_owned(),
                what: format!(
                    "its bond {bond} is ifindex {}, the page's is {page_bond} (another agent, or another namespace)",
                    fast.bond_ifindex()
                ),
            });
        }
        let v = fast.word_and_epoch();
        self.hot = fast.hot_word();
        self.cached_fast = v;
        self.cached = FastWord::word_of(v);
        self.fast = Some(fast);
        self.fast_note = None;
        self.fast_retired = false;
        if FastWord::epoch_of(v) != self.fast.as_ref().map_or(0, FastWord::epoch) {
            self.retire_fast();
        }
        Ok(())
    }

    /// Whether the hot-loop calls read the fast word (attached, and not retired as far as this reader has
    /// seen).
    #[must_use]
    pub fn uses_fast(&self) -> bool {
        !self.hot.is_null()
    }

    /// Why the fast word is not read: not offered (the agent's answer), not asked for, or retired.
    #[must_use]
    pub fn fast_note(&self) -> Option<&str> {
        if self.fast_retired {
            Some("the fast word was retired (bond unmanaged, or the kernel stopped publishing it): reading the page")
        } else {
            self.fast_note.as_deref()
        }
    }

    /// The attached fast word, if any (retired or not).
    #[must_use]
    pub const fn fast(&self) -> Option<&FastWord> {
        self.fast.as_ref()
    }

    /// The fast word was retired: back to the page (no call, no allocation: `changed` inlines it).
    #[inline]
    fn retire_fast(&mut self) {
        self.hot = core::ptr::null();
        self.cached = self.page_word();
        self.fast_retired = true;
    }

    /// Open and check the page alone.
    fn open_page(path: &Path) -> Result<Self, ReadError> {
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
        let mut reader = Self {
            raw,
            cached: 0,
            cached_fast: 0,
            hot: core::ptr::null(),
            fast: None,
            fast_note: None,
            fast_retired: false,
            _map: map,
        };
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
        reader.cached = reader.page_word();
        Ok(reader)
    }

    /// The exasock-compatible legacy word: the fast word's while it is read (one load, and a check of its
    /// epoch), else the page's (one acquire load).
    #[inline]
    #[must_use]
    pub fn legacy_word(&self) -> u32 {
        if !self.hot.is_null() {
            // SAFETY: `hot` points into the fast word's live mapping (it is nulled before that goes).
            let v = unsafe { &*self.hot }.load(Ordering::Acquire);
            if self.fast.as_ref().is_some_and(|f| FastWord::epoch_of(v) == f.epoch()) {
                return FastWord::word_of(v);
            }
        }
        self.page_word()
    }

    /// The page's legacy word, what exasock readers see (one acquire load), whatever the fast word says.
    #[inline]
    #[must_use]
    pub fn page_word(&self) -> u32 {
        self.raw.legacy().load(Ordering::Acquire)
    }

    /// Hot-loop check: one load of the legacy word (the fast word's with its epoch, or the page's) compared
    /// with the value seen last time; `true` (and the cache updated) when the active link changed, or when
    /// the fast word was retired and the reader went back to the page. Like the original's word, an A→B→A
    /// flip between two calls is invisible here; [`Self::snapshot`]'s `failover_count` sees it.
    #[inline]
    pub fn changed(&mut self) -> bool {
        if !self.hot.is_null() {
            // SAFETY: `hot` points into the fast word's live mapping (it is nulled before that goes).
            let v = unsafe { &*self.hot }.load(Ordering::Acquire);
            if v == self.cached_fast {
                return false;
            }
            if self.fast.as_ref().is_some_and(|f| FastWord::epoch_of(v) == f.epoch()) {
                self.cached_fast = v;
                self.cached = FastWord::word_of(v);
            } else {
                self.retire_fast();
            }
            return true;
        }
        let w = self.page_word();
        if w == self.cached {
            false
        } else {
            self.cached = w;
            true
        }
    }

    /// The active slave as the hot-loop calls see it: from the fast word (a consistent copy of the
    /// kernel's slot) while it is read, else from a snapshot of the page. Right after [`Self::changed`]
    /// said yes, this agrees with the word it saw or a later one; a snapshot may still show the previous
    /// slave for the agent's latency.
    ///
    /// # Errors
    /// [`ReadError`] from the page's snapshot.
    pub fn active(&self) -> Result<Active, ReadError> {
        if !self.hot.is_null() {
            if let Some(st) = self.fast.as_ref().and_then(|f| f.state().ok()) {
                return Ok(Active {
                    word: st.word,
                    ifindex: st.active_ifindex,
                    kernel_ns: st.kernel_ns,
                    source: ActiveSource::Fast,
                });
            }
        }
        let d = self.snapshot()?;
        Ok(Active {
            word: d.legacy_word,
            ifindex: if d.flags & FLAG_ACTIVE != 0 { d.active_ifindex } else { 0 },
            kernel_ns: d.kernel_event_ns,
            source: ActiveSource::Page,
        })
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
