//! The reader socket (`--reader-socket`, default `/run/exabond/reader.sock`, mode 0666): any local process
//! asks for a managed bond's fast word with a `FastRequest` and gets a `FastReply` and, on success, a
//! descriptor of `FAST_WORDS` (`SCM_RIGHTS`; see `exabond_common::fast`). Unprivileged `bpf()` is
//! off on Debian, so this is how a trading process that is not root maps the map.
//!
//! What a reader gets is what the pages already show every local user (the active slave of each managed
//! bond). The descriptor is the map's own (the kernel maps no read-only BPF map descriptor, see
//! `fast_words.rs`); the page guard refuses anyone but the agent a writable mapping of it, and without the
//! guard (no BPF LSM) only root peers get it. Unprivileged `bpf()` being off, a peer cannot update the map
//! through it either. One request per connection; a client that does not send its 24 bytes within
//! [`REQUEST_TIMEOUT`] is dropped.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use exabond_common::fast::{
    FastReply, FastRequest, FAST_ERR_NOT_MANAGED, FAST_ERR_REQUEST, FAST_ERR_ROOT_ONLY, FAST_ERR_UNAVAILABLE, FAST_OK,
};
use exabond_common::fast_reader::send_reply;
use tokio::io::AsyncReadExt as _;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::shared::Shared;

/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// Bind the socket (mode 0666: any local process may ask; replacing a stale one).
///
/// # Errors
/// If the directory or socket cannot be created.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    crate::control::bind_with_mode(path, 0o666)
}

/// The reply to `req` from a peer of uid `uid`.
fn answer(shared: &Shared, req: &FastRequest, uid: Option<u32>) -> FastReply {
    let Some(name) = req.bond_name() else { return FastReply::error(FAST_ERR_REQUEST) };
    let Some(bond) = shared.publisher().ifindex_of(name) else { return FastReply::error(FAST_ERR_NOT_MANAGED) };
    let Some(fast) = shared.fast() else { return FastReply::error(FAST_ERR_UNAVAILABLE) };
    let fast = fast.lock();
    if !fast.guarded() && uid != Some(0) {
        return FastReply::error(FAST_ERR_ROOT_ONLY);
    }
    match fast.handout(bond) {
        Some((slot, epoch)) => {
            FastReply { status: FAST_OK, slot, epoch, bond_ifindex: bond, ..FastReply::error(FAST_OK) }
        }
        None => FastReply::error(FAST_ERR_UNAVAILABLE),
    }
}

async fn serve_one(shared: &Shared, mut stream: UnixStream) -> std::io::Result<()> {
    let mut buf = [0u8; 24];
    tokio::time::timeout(REQUEST_TIMEOUT, stream.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no request"))??;
    let req = FastRequest::from_bytes(&buf);
    let uid = stream.peer_cred().ok().map(|c| c.uid());
    let reply = answer(shared, &req, uid);
    let std = stream.into_std()?;
    std.set_nonblocking(false)?;
    std.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    if reply.status == FAST_OK {
        let Some(fd) = shared.fast().map(|f| f.lock().reader_fd()) else { return Ok(()) };
        send_reply(&std, &reply, Some(std::os::fd::AsFd::as_fd(&*fd)))
    } else {
        tracing::debug!(bond = ?req.bond_name(), status = reply.status, "reader socket: no fast word");
        send_reply(&std, &reply, None)
    }
}

/// Serve requests until cancelled.
pub async fn serve(listener: UnixListener, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let stream = tokio::select! {
            () = cancel.cancelled() => return,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    tracing::warn!("reader socket: accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let shared = shared.clone();
        tokio::spawn(async move {
            if let Err(e) = serve_one(&shared, stream).await {
                tracing::debug!("reader socket: {e}");
            }
        });
    }
}
