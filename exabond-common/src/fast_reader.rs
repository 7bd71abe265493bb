//! Reading a bond's fast word (see [`crate::fast`]): ask the agent's reader socket for a descriptor of
//! `FAST_WORDS`, map it read-only (shared: the kernel's stores show through), and read the bond's slot. After [`FastWord::connect`], no syscall and
//! no allocation: one 64-bit load for the hot-loop check, a seqlocked copy for the rest.

use std::io;
use std::os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use memmap2::{Mmap, MmapOptions};

use crate::fast::{
    FastReply, FastRequest, FastSlot, FAST_ERR_NOT_MANAGED, FAST_ERR_REQUEST, FAST_ERR_ROOT_ONLY, FAST_ERR_UNAVAILABLE,
    FAST_MAGIC, FAST_MAP_BYTES, FAST_OK, FAST_PROTOCOL, FAST_SLOTS, FAST_SLOT_SIZE,
};

/// How long [`FastWord::connect`] waits for the agent's answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Why the fast word is not available.
#[derive(Debug, thiserror::Error)]
pub enum FastError {
    /// The socket could not be reached or the exchange failed (no agent running, or an older one).
    #[error("cannot reach the exabond reader socket {path}: {source}")]
    Socket {
        /// The socket.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The agent answered with something this reader does not understand.
    #[error("the exabond reader socket {path} answered something else than a fast-word reply: {what}")]
    Protocol {
        /// The socket.
        path: PathBuf,
        /// What was wrong.
        what: String,
    },
    /// The agent refused: the bond is not managed, the kernel does not publish the word now, or the name
    /// is not valid.
    #[error("the agent has no fast word for bond {bond}: {why}")]
    Refused {
        /// The bond.
        bond: String,
        /// Why.
        why: &'static str,
    },
    /// The descriptor could not be mapped.
    #[error("cannot map the fast words: {0}")]
    Map(#[source] io::Error),
    /// The slot no longer speaks for the bond (its epoch changed: the bond was unmanaged, or the kernel
    /// stopped publishing it): read the page.
    #[error("the fast word of this bond was retired (epoch {had} is now {now}): read the page")]
    Retired {
        /// The epoch handed out.
        had: u32,
        /// The epoch now.
        now: u32,
    },
    /// No consistent copy of the slot after many attempts (its writer is not an exabond probe).
    #[error("no consistent copy of the fast word after {0} attempts")]
    Inconsistent(u32),
}

/// The kernel half of a slot, copied consistently.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FastState {
    /// The legacy word.
    pub word: u32,
    /// The active slave as the page shows it (0: none).
    pub active_ifindex: u32,
    /// [`crate::fast::FAST_ACTIVE`], [`crate::fast::FAST_UNJUDGED`].
    pub flags: u32,
    /// `CLOCK_MONOTONIC` ns of the kernel's last change.
    pub kernel_ns: u64,
    /// Changes written since the slot was handed out.
    pub changes: u64,
    /// The kernel's active slave, judged or not (0: none).
    pub kernel_ifindex: u32,
    /// The slot's sequence the copy was taken at.
    pub seq: u64,
}

/// Attempts of [`FastWord::state`] before giving up (the kernel holds the sequence odd for a few stores).
const STATE_RETRIES: u32 = 100_000;

/// One bond's slot in a read-only mapping of `FAST_WORDS`.
pub struct FastWord {
    _map: Mmap,
    slot: *const FastSlot,
    epoch: u32,
    index: u32,
    bond_ifindex: u32,
}

// SAFETY: the slot pointer is into the mapping this value owns; every access is an atomic load.
unsafe impl Send for FastWord {}
// SAFETY: as above (only loads).
unsafe impl Sync for FastWord {}

impl FastWord {
    /// Ask the agent at `socket` for the fast word of `bond` and map it.
    ///
    /// # Errors
    /// [`FastError`]: no agent, an older agent, a bond it does not manage, a kernel that does not publish.
    pub fn connect(socket: &Path, bond: &str) -> Result<Self, FastError> {
        let (reply, fd) = request(socket, bond)?;
        Self::map(&fd, reply.slot, reply.epoch, reply.bond_ifindex)
    }

    /// Map slot `index` of the `FAST_WORDS` descriptor `fd` (read-only, shared: the kernel's stores show
    /// through), speaking for the bond while its epoch is `epoch`.
    ///
    /// # Errors
    /// [`FastError::Map`], or [`FastError::Retired`] if the epoch is already another.
    pub fn map(fd: &OwnedFd, index: u32, epoch: u32, bond_ifindex: u32) -> Result<Self, FastError> {
        if index >= FAST_SLOTS {
            return Err(FastError::Map(io::Error::new(io::ErrorKind::InvalidInput, "slot out of range")));
        }
        // SAFETY: a read-only shared mapping of the map's values; accessed only through atomics.
        let map = unsafe { MmapOptions::new().len(FAST_MAP_BYTES).map(fd) }.map_err(FastError::Map)?;
        // SAFETY: index < FAST_SLOTS, so the slot is inside the FAST_MAP_BYTES mapping; the mapping is
        // page-aligned, so the slot is 64-aligned.
        #[expect(clippy::cast_ptr_alignment, reason = "a page-aligned mapping of 64-byte slots")]
        let slot = unsafe { map.as_ptr().add(index as usize * FAST_SLOT_SIZE) }.cast::<FastSlot>();
        let w = Self { _map: map, slot, epoch, index, bond_ifindex };
        w.check_epoch()?;
        Ok(w)
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a 64-aligned slot, offsets multiples of 4")]
    fn u32_at(&self, off: usize) -> &AtomicU32 {
        debug_assert!(off % 4 == 0 && off < FAST_SLOT_SIZE);
        // SAFETY: in the slot (64 bytes, 64-aligned) of a live mapping; atomics only.
        unsafe { &*self.slot.cast::<u8>().add(off).cast::<AtomicU32>() }
    }

    #[expect(clippy::cast_ptr_alignment, reason = "a 64-aligned slot, offsets multiples of 8")]
    fn u64_at(&self, off: usize) -> &AtomicU64 {
        debug_assert!(off % 8 == 0 && off < FAST_SLOT_SIZE);
        // SAFETY: as above, 8-aligned.
        unsafe { &*self.slot.cast::<u8>().add(off).cast::<AtomicU64>() }
    }

    /// The slot's first 64 bits (word and epoch), for a reader's hot path.
    #[must_use]
    pub(crate) fn hot_word(&self) -> *const AtomicU64 {
        self.u64_at(0)
    }

    /// The word (low half) and the epoch (high half) in one load: what hot loops compare.
    #[inline]
    #[must_use]
    pub fn word_and_epoch(&self) -> u64 {
        self.u64_at(0).load(Ordering::Acquire)
    }

    /// The epoch handed out with the slot.
    #[must_use]
    pub const fn epoch(&self) -> u32 {
        self.epoch
    }

    /// The slot's index in the map.
    #[must_use]
    pub const fn slot(&self) -> u32 {
        self.index
    }

    /// The bond's ifindex, as the agent gave it.
    #[must_use]
    pub const fn bond_ifindex(&self) -> u32 {
        self.bond_ifindex
    }

    /// The epoch half of a [`Self::word_and_epoch`] value.
    #[inline]
    #[must_use]
    pub const fn epoch_of(v: u64) -> u32 {
        (v >> 32) as u32
    }

    /// The word half of a [`Self::word_and_epoch`] value.
    #[inline]
    #[must_use]
    #[expect(clippy::cast_possible_truncation, reason = "the low half")]
    pub const fn word_of(v: u64) -> u32 {
        v as u32
    }

    /// Whether the slot still speaks for the bond.
    ///
    /// # Errors
    /// [`FastError::Retired`] when its epoch changed.
    pub fn check_epoch(&self) -> Result<(), FastError> {
        let now = self.u32_at(4).load(Ordering::Acquire);
        if now == self.epoch {
            Ok(())
        } else {
            Err(FastError::Retired { had: self.epoch, now })
        }
    }

    /// A consistent copy of the kernel half (retried while the kernel writes it; checks the epoch after).
    ///
    /// # Errors
    /// [`FastError::Retired`], or [`FastError::Inconsistent`] if the sequence never settles.
    pub fn state(&self) -> Result<FastState, FastError> {
        // SAFETY: `slot` points into this value's live mapping.
        let st = unsafe { read_slot(self.slot, STATE_RETRIES) }.ok_or(FastError::Inconsistent(STATE_RETRIES))?;
        self.check_epoch()?;
        Ok(st)
    }
}

/// A consistent copy of the kernel half of the slot at `slot`, or `None` after `retries` attempts that
/// found the sequence odd or moving. For every reader of a slot (a reader's read-only mapping, the agent's
/// own read-write one).
///
/// # Safety
/// `slot` must point to a 64-aligned `FastSlot` in a mapping that stays alive during the call; every access
/// is an atomic load.
#[must_use]
pub unsafe fn read_slot(slot: *const FastSlot, retries: u32) -> Option<FastState> {
    #[expect(clippy::cast_ptr_alignment, reason = "a 64-aligned slot, offsets multiples of 4")]
    // SAFETY: in the slot (caller contract), 4-aligned.
    let u32_at = |off: usize| unsafe { &*slot.cast::<u8>().add(off).cast::<AtomicU32>() };
    #[expect(clippy::cast_ptr_alignment, reason = "a 64-aligned slot, offsets multiples of 8")]
    // SAFETY: in the slot (caller contract), 8-aligned.
    let u64_at = |off: usize| unsafe { &*slot.cast::<u8>().add(off).cast::<AtomicU64>() };
    for _ in 0..retries {
        let s1 = u64_at(8).load(Ordering::Acquire);
        if s1 & 1 == 0 {
            let st = FastState {
                word: u32_at(0).load(Ordering::Relaxed),
                active_ifindex: u32_at(16).load(Ordering::Relaxed),
                flags: u32_at(20).load(Ordering::Relaxed),
                kernel_ns: u64_at(24).load(Ordering::Relaxed),
                changes: u64_at(32).load(Ordering::Relaxed),
                kernel_ifindex: u32_at(40).load(Ordering::Relaxed),
                seq: s1,
            };
            fence(Ordering::Acquire);
            if u64_at(8).load(Ordering::Relaxed) == s1 {
                return Some(st);
            }
        }
        core::hint::spin_loop();
    }
    None
}

/// The exchange with the reader socket: the agent's reply to a request for `bond`'s fast word, and the
/// descriptor of `FAST_WORDS` that came with it. [`FastWord::connect`] maps it.
///
/// # Errors
/// As [`FastWord::connect`].
pub fn request(socket: &Path, bond: &str) -> Result<(FastReply, OwnedFd), FastError> {
    let err = |source| FastError::Socket { path: socket.to_owned(), source };
    let req = FastRequest::new(bond).ok_or(FastError::Refused { bond: bond.to_owned(), why: "not a valid name" })?;
    let stream = UnixStream::connect(socket).map_err(err)?;
    stream.set_read_timeout(Some(CONNECT_TIMEOUT)).map_err(err)?;
    stream.set_write_timeout(Some(CONNECT_TIMEOUT)).map_err(err)?;
    io::Write::write_all(&mut &stream, &req.to_bytes()).map_err(err)?;
    let (bytes, fd) = recv_with_fd(&stream).map_err(err)?;
    let reply = FastReply::from_bytes(&bytes);
    let protocol = |what: String| FastError::Protocol { path: socket.to_owned(), what };
    if reply.magic != FAST_MAGIC || reply.version != FAST_PROTOCOL {
        return Err(protocol(format!("magic {:#x}, version {}", reply.magic, reply.version)));
    }
    let why = match reply.status {
        FAST_OK => None,
        FAST_ERR_NOT_MANAGED => Some("it does not manage a bond of that name"),
        FAST_ERR_UNAVAILABLE => Some("the kernel does not publish it now (eBPF off or the failover probe detached)"),
        FAST_ERR_REQUEST => Some("the agent did not understand the request"),
        FAST_ERR_ROOT_ONLY => {
            Some("the agent runs without the BPF LSM, which guards the words against writers: root only")
        }
        _ => Some("unknown status"),
    };
    if let Some(why) = why {
        return Err(FastError::Refused { bond: bond.to_owned(), why });
    }
    let fd = fd.ok_or_else(|| protocol("no descriptor came with the reply".into()))?;
    if reply.slots != FAST_SLOTS || reply.slot_size as usize != FAST_SLOT_SIZE || reply.slot >= reply.slots {
        return Err(protocol(format!(
            "a map of {} slots of {} bytes, slot {} (this reader knows {FAST_SLOTS} of {FAST_SLOT_SIZE})",
            reply.slots, reply.slot_size, reply.slot
        )));
    }
    Ok((reply, fd))
}

/// Receive a 32-byte reply and at most one descriptor (`SCM_RIGHTS`).
fn recv_with_fd(stream: &UnixStream) -> io::Result<([u8; 32], Option<OwnedFd>)> {
    let mut buf = [0u8; 32];
    let mut got = 0;
    let mut fd = None;
    // Room for one descriptor's control message, aligned for cmsghdr.
    let mut control = [0u64; 8];
    while got < buf.len() {
        let mut iov = libc::iovec { iov_base: buf[got..].as_mut_ptr().cast(), iov_len: buf.len() - got };
        // SAFETY: msghdr is plain data for which all-zero is valid.
        let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
        msg.msg_iov = &raw mut iov;
        msg.msg_iovlen = 1;
        if fd.is_none() {
            msg.msg_control = control.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&control);
        }
        // SAFETY: valid socket, iovec and control buffer for the sizes given.
        let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &raw mut msg, libc::MSG_CMSG_CLOEXEC) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the agent closed the socket before replying"));
        }
        if fd.is_none() {
            fd = take_fd(&msg);
        }
        got += usize::try_from(n).unwrap_or(0);
    }
    Ok((buf, fd))
}

/// The first descriptor of an `SCM_RIGHTS` control message in `msg` (the others, if any, are closed).
fn take_fd(msg: &libc::msghdr) -> Option<OwnedFd> {
    let mut out = None;
    // SAFETY: `msg` was filled by recvmsg; the CMSG macros walk its control buffer within msg_controllen.
    let mut c = unsafe { libc::CMSG_FIRSTHDR(msg) };
    while !c.is_null() {
        // SAFETY: `c` points to a control message header inside the buffer.
        let h = unsafe { &*c };
        if h.cmsg_level == libc::SOL_SOCKET && h.cmsg_type == libc::SCM_RIGHTS {
            // SAFETY: the header's length covers its data.
            let data_len = h.cmsg_len as usize - unsafe { libc::CMSG_LEN(0) } as usize;
            for i in 0..data_len / 4 {
                // SAFETY: within the message's data: `data_len / 4` descriptors.
                let raw = i32::from_ne_bytes(unsafe { libc::CMSG_DATA(c).add(4 * i).cast::<[u8; 4]>().read() });
                // SAFETY: the kernel installed this descriptor in our table for us; we own it now.
                let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                if out.is_none() {
                    out = Some(owned);
                }
            }
        }
        // SAFETY: walks to the next header within msg_controllen (or NULL).
        c = unsafe { libc::CMSG_NXTHDR(msg, c) };
    }
    out
}

/// The agent's side of the exchange: send `reply` and, with it, `fd` (`SCM_RIGHTS`), on a blocking stream.
///
/// # Errors
/// The `sendmsg` error.
pub fn send_reply(stream: &UnixStream, reply: &FastReply, fd: Option<std::os::fd::BorrowedFd<'_>>) -> io::Result<()> {
    let bytes = reply.to_bytes();
    let mut iov = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    let mut control = [0u64; 8];
    // SAFETY: msghdr is plain data for which all-zero is valid.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &raw mut iov;
    msg.msg_iovlen = 1;
    if let Some(fd) = fd {
        // SAFETY: CMSG_SPACE of one descriptor fits the 64-byte control buffer.
        let space = unsafe { libc::CMSG_SPACE(4) } as usize;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space;
        // SAFETY: the control buffer holds one header; CMSG_FIRSTHDR points at it.
        let c = unsafe { libc::CMSG_FIRSTHDR(&raw const msg) };
        // SAFETY: `c` is the first header of our buffer, room for one descriptor.
        unsafe {
            (*c).cmsg_level = libc::SOL_SOCKET;
            (*c).cmsg_type = libc::SCM_RIGHTS;
            (*c).cmsg_len = libc::CMSG_LEN(4) as usize;
            libc::CMSG_DATA(c).cast::<[u8; 4]>().write(fd.as_raw_fd().to_ne_bytes());
        }
    }
    // SAFETY: valid socket and message; the descriptor stays open for the call.
    let n = unsafe { libc::sendmsg(stream.as_raw_fd(), &raw const msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if usize::try_from(n).unwrap_or(0) != bytes.len() {
        return Err(io::Error::new(io::ErrorKind::WriteZero, "short send of the reply"));
    }
    Ok(())
}
