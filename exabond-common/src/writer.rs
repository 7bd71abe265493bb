//! The single writer of a bond's page (used by the agent).
//!
//! A page keeps its inode for as long as its bond is managed: a starting agent adopts the page a previous
//! agent left (same file, same inode, so readers that opened it once — libexasock does — keep seeing every
//! update) and rewrites it in place. Only unmanaging or deleting the bond retires and removes it.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

use memmap2::{MmapOptions, MmapRaw};

use crate::page::{PageData, DATA_WORDS, FLAG_RETIRED, LAYOUT_VERSION, PAGE_FILE_PREFIX, PAGE_MAGIC, PAGE_SIZE};
use crate::policy_maps::{kernel_dev, PageInode};
use crate::seqlock::RawPage;

/// The permissions of a page file: readable by everyone, writable by nobody (the agent writes through
/// the mapping it made when it created or adopted the file).
pub const PAGE_MODE: u32 = 0o444;

/// Errors of the page writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Creating, opening, sizing, mapping or renaming the page file failed.
    #[error("cannot create the page {path}: {source}")]
    Create {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Removing the page file failed.
    #[error("cannot remove the page {path}: {source}")]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// How [`PageWriter::open`] came by its page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Opened {
    /// No page was there: a new file.
    Created,
    /// An exabond page was there and is now this writer's, in place (same inode).
    Adopted {
        /// Its sequence was odd: a writer died mid-publication (the block was rewritten whole).
        repaired_odd_seq: bool,
        /// The layout version it had (a different one is rewritten in the current layout, in place).
        from_version: u32,
        /// Its failover count (carried over so the count never goes back for readers).
        failover_count: u64,
    },
    /// Something that is not an exabond page was there (named in the reason): replaced by a new file.
    Replaced(String),
}

/// The path of bond `bond`'s page in `dir`.
#[must_use]
pub fn page_path(dir: &Path, bond: &str) -> PathBuf {
    dir.join(format!("{PAGE_FILE_PREFIX}{bond}"))
}

/// The kernel's name of a file's inode (for the page guard) from its metadata.
#[must_use]
pub fn page_inode(meta: &fs::Metadata) -> PageInode {
    let dev = meta.dev();
    // glibc's `major()`/`minor()` of a user-space `dev_t`.
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    #[expect(clippy::cast_possible_truncation, reason = "the kernel's major is 12 bits and its minor 20")]
    PageInode { dev: kernel_dev(major as u32, minor as u32), _pad: 0, ino: meta.ino() }
}

/// Owner of one page file, mapped read-write. Only one may exist per file.
pub struct PageWriter {
    path: PathBuf,
    map: MmapRaw,
    raw: RawPage,
    current: PageData,
    inode: PageInode,
    file: File,
    crash_on_failover: bool,
}

fn map_page(file: &File) -> io::Result<(MmapRaw, RawPage)> {
    let map = MmapOptions::new().len(PAGE_SIZE).map_raw(file)?;
    // SAFETY: a shared mapping of PAGE_SIZE bytes, page-aligned, kept alive with the writer.
    let raw = unsafe { RawPage::new(map.as_ptr()) };
    Ok((map, raw))
}

impl PageWriter {
    /// Open `dir/exabond-<bond>` for writing and publish `initial` on it.
    ///
    /// An exabond page already there (left by an earlier agent, or by a crash) is adopted in place: same
    /// inode, so readers that mapped it keep working; an odd sequence (a writer killed mid-publication)
    /// is repaired by rewriting the whole block; a page of another layout version is rewritten in this
    /// layout (the legacy word at offset 0 never moves). Anything else under that name (wrong size, no
    /// magic) is replaced by a new file. A new file is built under a temporary name and renamed into
    /// place, so no reader ever sees a half-initialised page.
    ///
    /// # Errors
    /// [`WriteError::Create`] with the path and the OS error.
    pub fn open(dir: &Path, bond: &str, initial: &PageData) -> Result<(Self, Opened), WriteError> {
        let path = page_path(dir, bond);
        let err = |source| WriteError::Create { path: path.clone(), source };
        let file = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Ok((Self::create(dir, bond, initial)?, Opened::Created));
            }
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                let w = Self::create(dir, bond, initial)?;
                return Ok((w, Opened::Replaced("a symbolic link".into())));
            }
            Err(e) => return Err(err(e)),
        };
        let meta = file.metadata().map_err(err)?;
        if !meta.is_file() || meta.len() != PAGE_SIZE as u64 {
            let why = format!("a file of {} bytes", meta.len());
            return Ok((Self::create(dir, bond, initial)?, Opened::Replaced(why)));
        }
        let (map, raw) = map_page(&file).map_err(err)?;
        let (magic, version) = raw.magic_version();
        if magic != PAGE_MAGIC {
            drop(map);
            let why = format!("no exabond magic (found {magic:#010x})");
            return Ok((Self::create(dir, bond, initial)?, Opened::Replaced(why)));
        }
        let seq = raw.seq().load(Ordering::Acquire);
        let failover_count = if version == LAYOUT_VERSION { raw.failover_count() } else { 0 };
        file.set_permissions(Permissions::from_mode(PAGE_MODE)).map_err(err)?;
        // The whole block, whatever the previous one held (torn, older layout): readers see one change.
        raw.write(initial);
        let opened = Opened::Adopted { repaired_odd_seq: seq & 1 == 1, from_version: version, failover_count };
        let w = Self { path, map, raw, current: *initial, inode: page_inode(&meta), file, crash_on_failover: false };
        Ok((w, opened))
    }

    /// Create (or replace) `dir/exabond-<bond>` holding `initial`, mode 0444, built under a temporary
    /// name and renamed into place.
    ///
    /// # Errors
    /// [`WriteError::Create`] with the path and the OS error.
    pub fn create(dir: &Path, bond: &str, initial: &PageData) -> Result<Self, WriteError> {
        let path = page_path(dir, bond);
        let tmp = dir.join(format!(".{PAGE_FILE_PREFIX}{bond}.{}.tmp", std::process::id()));
        let err = |source| WriteError::Create { path: path.clone(), source };
        let _ = fs::remove_file(&tmp);
        let file =
            OpenOptions::new().read(true).write(true).create_new(true).mode(PAGE_MODE).open(&tmp).map_err(err)?;
        let setup = || -> io::Result<(MmapRaw, RawPage, fs::Metadata)> {
            file.set_len(PAGE_SIZE as u64)?;
            file.set_permissions(Permissions::from_mode(PAGE_MODE))?;
            let (map, raw) = map_page(&file)?;
            Ok((map, raw, file.metadata()?))
        };
        let (map, raw, meta) = match setup() {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(err(e));
            }
        };
        raw.write(initial);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        Ok(Self { path, map, raw, current: *initial, inode: page_inode(&meta), file, crash_on_failover: false })
    }

    /// The page file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The page's inode as the kernel names it (what the page guard matches).
    #[must_use]
    pub const fn inode(&self) -> PageInode {
        self.inode
    }

    /// What was last published.
    #[must_use]
    pub const fn current(&self) -> &PageData {
        &self.current
    }

    /// Publish a new block (and its legacy word). Only the words that changed since the last publication
    /// are stored (this writer is the page's only one, so `current` is what the page holds).
    pub fn publish(&mut self, data: &PageData) {
        if self.crash_on_failover && data.failover_count != self.current.failover_count {
            self.raw.write_torn(data);
            // Test hook (see `crash_on_next_failover`): die as a crash would, sequence odd, block half
            // written, legacy word not yet stored.
            std::process::abort();
        }
        self.raw.write_over(data, Some(&self.current));
        self.current = *data;
    }

    /// Publish a heartbeat: `heartbeat_mono_ns` alone, stores only (one word per copy of the block and the
    /// sequences; no comparison of the block, no copy of it). The legacy word's cache line is not touched.
    pub fn heartbeat(&mut self, mono_ns: u64) {
        const WORD: usize = core::mem::offset_of!(PageData, heartbeat_mono_ns) / 8;
        const _: () = assert!(core::mem::offset_of!(PageData, heartbeat_mono_ns) % 8 == 0);
        self.current.heartbeat_mono_ns = mono_ns;
        self.raw.write_word(WORD, mono_ns);
    }

    /// Test hook: the next publication that changes the failover count stops half-way (sequence odd,
    /// part of the block stored) and aborts the process, as a crash in the middle of a publication would.
    /// Used by the end-to-end suite to prove that the next agent repairs the page.
    #[doc(hidden)]
    pub fn crash_on_next_failover(&mut self) {
        self.crash_on_failover = true;
    }

    /// Whether the page still holds what this writer published (another process with write access, or
    /// a bug, may have changed it). Read while no publication runs (the writer is `&self`).
    #[must_use]
    pub fn intact(&self) -> bool {
        self.raw.holds(&self.current)
    }

    /// Rewrite the whole block and the legacy word (after [`Self::intact`] said no).
    pub fn republish(&mut self) {
        self.raw.write(&self.current);
    }

    /// Whether the path still names this writer's file, with the page's permissions.
    ///
    /// # Errors
    /// The `stat` error other than "not found" (which is `Ok(false)`).
    pub fn in_place(&self) -> io::Result<bool> {
        match fs::symlink_metadata(&self.path) {
            Ok(m) => Ok(page_inode(&m) == self.inode),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Put the page's permissions back to 0444 if something changed them; true if it had to.
    ///
    /// # Errors
    /// The `fstat`/`fchmod` error.
    pub fn restore_mode(&self) -> io::Result<bool> {
        let mode = self.file.metadata()?.mode() & 0o7777;
        if mode == PAGE_MODE {
            return Ok(false);
        }
        self.file.set_permissions(Permissions::from_mode(PAGE_MODE))?;
        Ok(true)
    }

    /// Put the page's size back to one page if something truncated or extended it (a truncation also
    /// zeroed the block: the caller republishes); true if it had to.
    ///
    /// # Errors
    /// The `fstat`/`ftruncate` error.
    pub fn restore_size(&self) -> io::Result<bool> {
        if self.file.metadata()?.len() == PAGE_SIZE as u64 {
            return Ok(false);
        }
        self.file.set_len(PAGE_SIZE as u64)?;
        Ok(true)
    }

    /// The page file was removed or replaced by someone else: mark the orphaned page retired (readers
    /// that still map it learn they must re-open) and publish the current block on a new file at the
    /// path.
    ///
    /// # Errors
    /// [`WriteError::Create`] if the new file cannot be made (this writer then keeps the old page, retired;
    /// the caller retries).
    pub fn recreate(&mut self, dir: &Path, bond: &str) -> Result<(), WriteError> {
        let data = self.current;
        // The old mapping says retired before the new file can be opened: a reader that finds the new
        // file has its old one marked already (the file is gone, so retiring it first loses nothing).
        self.retire();
        let fresh = Self::create(dir, bond, &data)?;
        let old = std::mem::replace(self, fresh);
        self.crash_on_failover = old.crash_on_failover;
        Ok(())
    }

    /// The bond was renamed: move the page file to the new name, in place (same inode, so readers that
    /// map it keep working), replacing whatever the new name held. The caller publishes the new name.
    ///
    /// # Errors
    /// [`WriteError::Create`] with the new path and the OS error.
    pub fn rename(&mut self, dir: &Path, new_bond: &str) -> Result<(), WriteError> {
        let to = page_path(dir, new_bond);
        fs::rename(&self.path, &to).map_err(|source| WriteError::Create { path: to.clone(), source })?;
        self.path = to;
        Ok(())
    }

    /// Mark the page retired: readers that still map it see [`FLAG_RETIRED`] and a stopped heartbeat.
    pub fn retire(&mut self) {
        let mut d = self.current;
        d.flags |= FLAG_RETIRED;
        self.publish(&d);
        let _ = self.map.flush();
    }

    /// Retire the page and remove its file.
    ///
    /// # Errors
    /// [`WriteError::Remove`] if the file could not be removed (it is retired all the same).
    pub fn retire_and_remove(mut self) -> Result<(), WriteError> {
        self.retire();
        if !self.in_place().unwrap_or(true) {
            return Ok(()); // the path is no longer ours: leave whatever is there
        }
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(WriteError::Remove { path: self.path.clone(), source }),
        }
    }
}

/// Retire and remove an exabond page that no agent writes any more (a bond that is no longer managed,
/// found at start-up). Files that are not exabond pages are left alone. Returns whether it was one.
///
/// # Errors
/// [`WriteError::Remove`] naming the file.
pub fn retire_orphan(path: &Path) -> Result<bool, WriteError> {
    let err = |source| WriteError::Remove { path: path.to_owned(), source };
    let file = match OpenOptions::new().read(true).write(true).custom_flags(libc::O_NOFOLLOW).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    let meta = file.metadata().map_err(err)?;
    if !meta.is_file() || meta.len() != PAGE_SIZE as u64 {
        return Ok(false);
    }
    let (_map, raw) = map_page(&file).map_err(err)?;
    if raw.magic_version() != (PAGE_MAGIC, LAYOUT_VERSION) {
        return Ok(false);
    }
    let mut data = raw.read_unchecked();
    data.flags |= FLAG_RETIRED;
    raw.write(&data);
    fs::remove_file(path).map_err(err)?;
    Ok(true)
}

const _: () = assert!(DATA_WORDS * 8 == core::mem::size_of::<PageData>());

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reader::PageReader;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("exabond-writer-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        d
    }

    fn data(count: u64) -> PageData {
        let mut d = PageData::new("bond0", 7, 1);
        d.failover_count = count;
        d.legacy_word = crate::page::legacy::encode(true, 1, u8::try_from(count % 256).unwrap());
        d
    }

    #[test]
    fn adoption_keeps_the_inode_and_readers() {
        let d = dir("adopt");
        let (mut w, how) = PageWriter::open(&d, "bond0", &data(1)).unwrap();
        assert_eq!(how, Opened::Created);
        let ino = w.inode();
        let mut r = PageReader::open_in(&d, "bond0").unwrap();
        w.publish(&data(2));
        drop(w); // the agent exits (or dies): the page stays
        let (mut w2, how) = PageWriter::open(&d, "bond0", &data(0)).unwrap();
        assert!(matches!(how, Opened::Adopted { repaired_odd_seq: false, from_version: 1, failover_count: 2 }));
        assert_eq!(w2.inode(), ino, "same inode");
        w2.publish(&data(3));
        assert!(r.changed(), "the reader that opened before the restart sees the new agent's word");
        assert_eq!(r.snapshot().unwrap().failover_count, 3);
        assert!(w2.in_place().unwrap() && w2.intact());
    }

    #[test]
    fn a_heartbeat_is_one_word_in_both_copies() {
        let d = dir("heartbeat");
        let (mut w, _) = PageWriter::open(&d, "bond0", &data(1)).unwrap();
        let r = PageReader::open_in(&d, "bond0").unwrap();
        let seq = r.sequence();
        w.heartbeat(12_345);
        let mut want = data(1);
        want.heartbeat_mono_ns = 12_345;
        assert_eq!(r.snapshot().unwrap(), want);
        assert_eq!(r.sequence(), seq + 2, "one publication");
        assert!(w.intact(), "copy 1 and latch_seq in step too");
        assert_eq!(w.current(), &want);
    }

    #[test]
    fn a_torn_page_is_repaired_in_place() {
        let d = dir("torn");
        let (w, _) = PageWriter::open(&d, "bond0", &data(1)).unwrap();
        w.raw.write_torn(&data(9));
        assert_eq!(w.raw.seq().load(Ordering::Relaxed) & 1, 1);
        drop(w);
        // The latch: the copy the dead writer was not writing still holds its last block.
        let r = PageReader::open_in(&d, "bond0").unwrap();
        assert_eq!(r.snapshot().unwrap(), data(1), "a torn page reads as the block before the crash");
        let (_w, how) = PageWriter::open(&d, "bond0", &data(4)).unwrap();
        assert!(matches!(how, Opened::Adopted { repaired_odd_seq: true, .. }), "{how:?}");
        let r = PageReader::open_in(&d, "bond0").unwrap();
        assert_eq!(r.snapshot().unwrap(), data(4));
        assert_eq!(r.legacy_word(), data(4).legacy_word);
    }

    #[test]
    fn other_files_are_replaced_and_another_layout_is_rewritten() {
        let d = dir("replace");
        fs::write(page_path(&d, "bond0"), b"not a page").unwrap();
        let (_w, how) = PageWriter::open(&d, "bond0", &data(1)).unwrap();
        assert!(matches!(how, Opened::Replaced(ref why) if why.contains("10 bytes")), "{how:?}");
        let (mut w, _) = PageWriter::open(&d, "bond0", &data(1)).unwrap();
        let mut other = data(5);
        other.version = LAYOUT_VERSION + 1;
        w.publish(&other);
        let ino = w.inode();
        drop(w);
        let (w, how) = PageWriter::open(&d, "bond0", &data(6)).unwrap();
        assert!(matches!(how, Opened::Adopted { from_version: 2, failover_count: 0, .. }), "{how:?}");
        assert_eq!(w.inode(), ino);
        assert_eq!(PageReader::open_in(&d, "bond0").unwrap().snapshot().unwrap(), data(6));
    }

    #[test]
    fn removal_and_scribbles_are_noticed_and_mended() {
        let d = dir("mend");
        let (mut w, _) = PageWriter::open(&d, "bond0", &data(1)).unwrap();
        let old_reader = PageReader::open_in(&d, "bond0").unwrap();
        fs::set_permissions(w.path(), Permissions::from_mode(0o666)).unwrap();
        assert!(w.restore_mode().unwrap());
        assert_eq!(fs::metadata(w.path()).unwrap().mode() & 0o7777, PAGE_MODE);
        // A scribble through another mapping.
        {
            let f = OpenOptions::new().read(true).write(true).open(w.path()).unwrap();
            let (_m, raw) = map_page(&f).unwrap();
            raw.legacy().store(0xffff_ffff, Ordering::Relaxed);
        }
        assert!(!w.intact());
        w.republish();
        assert!(w.intact());
        OpenOptions::new().write(true).open(w.path()).unwrap().set_len(4).unwrap();
        assert!(w.restore_size().unwrap() && !w.intact(), "a truncation zeroes the block");
        w.republish();
        assert!(w.intact() && !w.restore_size().unwrap());
        assert_eq!(old_reader.legacy_word(), data(1).legacy_word);
        fs::remove_file(w.path()).unwrap();
        assert!(!w.in_place().unwrap());
        w.recreate(&d, "bond0").unwrap();
        assert!(w.in_place().unwrap());
        assert!(old_reader.snapshot().unwrap().is_retired(), "the orphan says: re-open");
        let r = PageReader::open_in(&d, "bond0").unwrap();
        assert!(!r.snapshot().unwrap().is_retired());
        // Rename keeps the inode.
        let ino = w.inode();
        w.rename(&d, "bond1").unwrap();
        assert!(w.in_place().unwrap() && w.inode() == ino && !page_path(&d, "bond0").exists());
        assert!(retire_orphan(&page_path(&d, "bond1")).unwrap());
        assert!(r.snapshot().unwrap().is_retired() && !page_path(&d, "bond1").exists());
        fs::write(page_path(&d, "x"), b"keep me").unwrap();
        assert!(!retire_orphan(&page_path(&d, "x")).unwrap(), "not a page: left alone");
    }
}
