//! Watching the page directory: a page removed, replaced, renamed, re-permissioned or written by another
//! process is noticed at once (inotify) and mended by [`Publisher::verify_pages`]. With the BPF LSM page
//! guard such changes are refused in the kernel and this never fires; without it (or for a process that
//! got past it) this is the backstop. Content changes are not watched here (in `/dev`, every write to
//! `/dev/null` would wake the agent): the poll loop verifies the pages every `netlink::FULL_REFRESH_EVERY`
//! (500 ms) without the page guard, every `netlink::DEEP_REFRESH_EVERY` with it, which also covers writes
//! through a mapping, which inotify never reports.
//!
//! [`Publisher::verify_pages`]: crate::publisher::Publisher::verify_pages

use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// What is watched: every way a directory entry or a file's metadata changes.
const MASK: u32 = libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_CREATE
    | libc::IN_ATTRIB
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF;

/// An inotify instance watching `dir`.
///
/// # Errors
/// The OS error of `inotify_init1` or `inotify_add_watch`.
pub fn open(dir: &Path) -> std::io::Result<AsyncFd<OwnedFd>> {
    // SAFETY: plain syscall; the result is checked.
    let fd = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    let cdir = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "NUL in the page directory"))?;
    // SAFETY: valid fd and NUL-terminated path.
    if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), cdir.as_ptr(), MASK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is an open inotify descriptor owned by the AsyncFd for its whole life.
    Ok(unsafe { AsyncFd::register(fd) }?)
}

/// Whether one buffer of inotify records names a page (`exabond-*`), the directory itself, or an
/// overflow (events lost): then every page is checked, one `stat` and a compare per bond.
fn concerns_pages(buf: &[u8]) -> bool {
    const HEADER: usize = core::mem::size_of::<libc::inotify_event>();
    let mut at = 0;
    while at + HEADER <= buf.len() {
        let word = |i: usize| u32::from_ne_bytes([buf[at + i], buf[at + i + 1], buf[at + i + 2], buf[at + i + 3]]);
        let (mask, len) = (word(4), word(12) as usize);
        let name = buf.get(at + HEADER..at + HEADER + len).unwrap_or_default();
        if mask & (libc::IN_Q_OVERFLOW | libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0
            || name.starts_with(exabond_common::page::PAGE_FILE_PREFIX.as_bytes())
        {
            return true;
        }
        at += HEADER + len;
    }
    false
}

/// Drain the pending events; true if one concerns the pages (see [`concerns_pages`]).
fn drain(fd: &OwnedFd) -> std::io::Result<bool> {
    let mut buf = [0u8; 4096];
    let mut hit = false;
    loop {
        // SAFETY: reading into our own buffer of that length.
        let n = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            return if e.kind() == std::io::ErrorKind::WouldBlock { Ok(hit) } else { Err(e) };
        }
        if n == 0 {
            return Ok(hit);
        }
        hit |= concerns_pages(&buf[..n.unsigned_abs()]);
    }
}

/// Check every page now, and make the page guard follow a re-created page; then log the repairs.
pub fn verify(shared: &Shared) {
    let notes = {
        // Lock order: enforcement, then publisher.
        let mut enf = shared.enforcement();
        let mut p = shared.publisher();
        let verified = p.verify_pages();
        if verified.moved {
            enf.sync_pages(&p.page_inodes());
        }
        verified.notes
    };
    shared.report(notes);
}

/// The watcher task: runs until `cancel`.
pub async fn watch(shared: Arc<Shared>, fd: AsyncFd<OwnedFd>, cancel: CancellationToken) {
    loop {
        let ready = tokio::select! {
            () = cancel.cancelled() => return,
            r = fd.readable() => r,
        };
        let mut guard = match ready {
            Ok(g) => g,
            Err(e) => {
                tracing::error!("page directory watch failed ({e}); the poll still checks the pages (every 500 ms without the BPF LSM)");
                return;
            }
        };
        let hit = match drain(fd.get_ref()) {
            Ok(h) => h,
            Err(e) => {
                tracing::error!("page directory watch failed ({e}); the poll still checks the pages (every 500 ms without the BPF LSM)");
                return;
            }
        };
        guard.clear_ready();
        if hit {
            verify(&shared);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(mask: u32, name: &str) -> Vec<u8> {
        let mut padded = name.as_bytes().to_vec();
        if !padded.is_empty() {
            padded.resize(name.len().div_ceil(16) * 16 + 16, 0);
        }
        let mut v = Vec::new();
        v.extend(1i32.to_ne_bytes());
        v.extend(mask.to_ne_bytes());
        v.extend(0u32.to_ne_bytes());
        v.extend(u32::try_from(padded.len()).unwrap().to_ne_bytes());
        v.extend(padded);
        v
    }

    #[test]
    fn only_page_events_count() {
        let other = [record(libc::IN_CREATE, "ttyS1"), record(libc::IN_ATTRIB, ".exabond-bond0.7.tmp")].concat();
        assert!(!concerns_pages(&other));
        assert!(concerns_pages(&[other.clone(), record(libc::IN_DELETE, "exabond-bond0")].concat()));
        assert!(concerns_pages(&record(libc::IN_Q_OVERFLOW, "")));
        assert!(concerns_pages(&record(libc::IN_DELETE_SELF, "")));
        assert!(!concerns_pages(&[0u8; 7]), "a short buffer is ignored");
    }
}
