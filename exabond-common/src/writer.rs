//! The single writer of a bond's page (used by the agent).

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use memmap2::MmapMut;

use crate::page::{PageData, FLAG_RETIRED, PAGE_FILE_PREFIX, PAGE_SIZE};
use crate::seqlock::RawPage;

/// Errors of the page writer.
#[derive(Debug, thiserror::Error)]
pub enum WriteError {
    /// Creating, sizing, mapping or renaming the page file failed.
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

/// The path of bond `bond`'s page in `dir`.
#[must_use]
pub fn page_path(dir: &Path, bond: &str) -> PathBuf {
    dir.join(format!("{PAGE_FILE_PREFIX}{bond}"))
}

/// Owner of one page file, mapped read-write. Only one may exist per file.
pub struct PageWriter {
    path: PathBuf,
    map: MmapMut,
    raw: RawPage,
    current: PageData,
    _file: File,
}

impl PageWriter {
    /// Create (or replace) `dir/exabond-<bond>` holding `initial`, mode 0444.
    ///
    /// The file is built under a temporary name and renamed into place, so a reader never sees a
    /// half-initialised page. A page that readers still map from an earlier run is replaced, not
    /// overwritten (those readers keep the old, stale page and can see its heartbeat stop).
    ///
    /// # Errors
    /// [`WriteError::Create`] with the path and the OS error.
    pub fn create(dir: &Path, bond: &str, initial: &PageData) -> Result<Self, WriteError> {
        let path = page_path(dir, bond);
        let tmp = dir.join(format!(".{PAGE_FILE_PREFIX}{bond}.{}.tmp", std::process::id()));
        let err = |source| WriteError::Create { path: path.clone(), source };
        let _ = fs::remove_file(&tmp);
        let file = OpenOptions::new().read(true).write(true).create_new(true).mode(0o444).open(&tmp).map_err(err)?;
        let setup = || -> io::Result<MmapMut> {
            file.set_len(PAGE_SIZE as u64)?;
            file.set_permissions(Permissions::from_mode(0o444))?;
            // SAFETY: the file was just created by us, has PAGE_SIZE bytes, and nobody else writes it.
            unsafe { MmapMut::map_mut(&file) }
        };
        let map = match setup() {
            Ok(m) => m,
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                return Err(err(e));
            }
        };
        // SAFETY: the mapping is PAGE_SIZE bytes, page-aligned, and lives as long as `self`.
        let raw = unsafe { RawPage::new(map.as_ptr()) };
        raw.write(initial);
        if let Err(e) = fs::rename(&tmp, &path) {
            let _ = fs::remove_file(&tmp);
            return Err(err(e));
        }
        Ok(Self { path, map, raw, current: *initial, _file: file })
    }

    /// The page file.
    #[must_use]
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What was last published.
    #[must_use]
    pub const fn current(&self) -> &PageData {
        &self.current
    }

    /// Publish a new block (and its legacy word). Only the words that changed since the last publication
    /// are stored (this writer is the page's only one, so `current` is what the page holds).
    pub fn publish(&mut self, data: &PageData) {
        self.raw.write_over(data, Some(&self.current));
        self.current = *data;
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
        match fs::remove_file(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(WriteError::Remove { path: self.path.clone(), source }),
        }
    }
}
