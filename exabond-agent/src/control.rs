//! The root-only control socket. One request line per connection, one reply line:
//!
//! | request | effect | reply |
//! |---|---|---|
//! | `+BOND` | place BOND under management (checked) | `ok <message>` or `err <code> <message>` |
//! | `-BOND` | stop managing BOND | `ok <message>` |
//! | `list` (or an empty line) | — | `ok <bond> <bond> ...` |
//! | `status` | — | `ok <JSON object>`: enforcement mode, member drivers, per-bond veto counts |
//! | `pitfalls` | — | `ok <JSON array>`: the current MAC pitfalls (`bond`, `mac`, `donor`, ...) |
//! | `watch` | subscribe to the agent's events | `ok watching`, then one JSON line per event (see below) |
//!
//! `<code>` is the CLI exit code of the refusal (see `exabond --help`). Peers other than uid 0 get
//! `err 10 permission denied`.
//!
//! `watch` keeps the connection: each event is one line, the `AgentEvent` serialisation (veto lines also get
//! the bond's name as `bond`); a client too slow for the agent's event bus gets `{"event":"lagged","missed":N}`
//! instead of the N events it missed; when the agent stops, a last `{"event":"shutdown"}` line and the
//! connection closes. The stream ends when the client closes its side.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::agent_events::AgentEvent;
use crate::exit_code::Exit;
use crate::mac_pitfall::Tracker;
use crate::manage;
use crate::shared::Shared;

/// Bind the socket (mode 0600, replacing a stale one).
///
/// # Errors
/// If the directory or socket cannot be created.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    bind_with_mode(path, 0o600)
}

/// Bind a Unix socket at `path` with permissions `mode`, creating its directory and replacing a stale
/// socket.
///
/// # Errors
/// If the directory or socket cannot be created.
pub fn bind_with_mode(path: &Path, mode: u32) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    Ok(l)
}

/// The last line of a `watch` stream when the agent stops.
pub const SHUTDOWN_LINE: &str = r#"{"event":"shutdown"}"#;
/// How long the agent waits, when it stops, for open connections (watchers get their shutdown line).
const DRAIN: std::time::Duration = std::time::Duration::from_secs(2);

/// Serve requests until cancelled, then give open connections [`DRAIN`] to finish (watchers are told the
/// agent stops).
pub async fn serve(
    listener: UnixListener,
    path: PathBuf,
    shared: Arc<Shared>,
    pitfalls: Arc<Tracker>,
    cancel: CancellationToken,
) {
    let conns = tokio_util::task::TaskTracker::new();
    loop {
        let conn = tokio::select! {
            () = cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                let (shared, pitfalls, cancel) = (shared.clone(), pitfalls.clone(), cancel.clone());
                conns.spawn(async move {
                    if let Err(e) = handle(stream, &shared, &pitfalls, &cancel).await {
                        tracing::warn!("control connection: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("control socket accept: {e}"),
        }
    }
    let _ = std::fs::remove_file(path);
    conns.close();
    if tokio::time::timeout(DRAIN, conns.wait()).await.is_err() {
        tracing::warn!("control connections still open after {DRAIN:?}; closing them");
    }
}

async fn handle(
    stream: UnixStream,
    shared: &Shared,
    pitfalls: &Tracker,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (r, mut w) = stream.into_split();
    if cred.uid() != 0 {
        tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "control request refused: not root");
        w.write_all(
            format!("err {} permission denied: the exabond control socket is for root\n", Exit::PermissionDenied)
                .as_bytes(),
        )
        .await?;
        return Ok(());
    }
    let mut line = String::new();
    let mut r = BufReader::new(r);
    (&mut r).take(256).read_line(&mut line).await?;
    if line.trim() == "watch" {
        return watch(r, w, shared, cancel).await;
    }
    let reply =
        if line.trim() == "pitfalls" { format!("ok {}", pitfalls.json()) } else { answer(line.trim(), shared).await };
    w.write_all(reply.as_bytes()).await?;
    w.write_all(b"\n").await
}

use tokio::io::AsyncReadExt as _;

/// One event as a `watch` line (without the newline): the `AgentEvent` serialisation, fields in their
/// declared order; a veto also gets the bond's name (`bond`) after its tag (from the enforcement side's
/// managed bonds: the real-time publisher lock is not taken for it).
fn event_line(ev: &AgentEvent, shared: &Shared) -> String {
    let line = serde_json::to_string(ev).unwrap_or_default();
    if let AgentEvent::Veto { bond_ifindex, .. } = ev {
        let name = shared.enforcement().bond_name(*bond_ifindex).map(str::to_owned);
        if let Some(name) = name {
            const TAG: &str = r#"{"event":"veto","#;
            if let Some(rest) = line.strip_prefix(TAG) {
                return format!("{TAG}\"bond\":{},{rest}", serde_json::Value::String(name));
            }
        }
    }
    line
}

/// Stream events to a `watch` client until it disconnects or the agent stops.
async fn watch(
    mut r: BufReader<tokio::net::unix::OwnedReadHalf>,
    mut w: tokio::net::unix::OwnedWriteHalf,
    shared: &Shared,
    cancel: &CancellationToken,
) -> std::io::Result<()> {
    use tokio::sync::broadcast::error::RecvError;
    // Subscribed before the reply: every event after the client has read `ok` reaches it.
    let mut rx = shared.events.subscribe();
    w.write_all(b"ok watching\n").await?;
    tracing::debug!("control: a watcher connected");
    let mut scratch = [0u8; 64];
    loop {
        let line = tokio::select! {
            biased;
            () = cancel.cancelled() => SHUTDOWN_LINE.to_owned(),
            n = r.read(&mut scratch) => match n {
                Ok(0) | Err(_) => return Ok(()), // the client went away
                Ok(_) => continue,               // nothing to say after `watch`: ignored
            },
            ev = rx.recv() => match ev {
                Ok(ev) => event_line(&ev, shared),
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "control: a watcher is too slow; it missed {n} events");
                    format!(r#"{{"event":"lagged","missed":{n}}}"#)
                }
                Err(RecvError::Closed) => SHUTDOWN_LINE.to_owned(),
            },
        };
        let stop = line == SHUTDOWN_LINE;
        let write = async {
            w.write_all(line.as_bytes()).await?;
            w.write_all(b"\n").await
        };
        tokio::select! {
            biased;
            r = write => r?,
            // A client that does not read must not hold the agent up when it stops.
            () = cancel.cancelled(), if !stop => return Ok(()),
        }
        if stop {
            return w.shutdown().await;
        }
    }
}

async fn answer(req: &str, shared: &Shared) -> String {
    let result = if let Some(name) = req.strip_prefix('+') {
        let r = manage::manage(shared, name).await;
        log(req, &r);
        r
    } else if let Some(name) = req.strip_prefix('-') {
        let r = manage::unmanage(shared, name);
        log(req, &r);
        r
    } else if let Some(name) = req.strip_prefix('?') {
        manage::member(shared, name)
    } else if req.is_empty() || req == "list" {
        Ok(manage::list(shared))
    } else if req == "status" {
        Ok(manage::status(shared))
    } else {
        return format!(
            "err {} unknown request {req:?}: use +BOND, -BOND, ?DEVICE, list, status, pitfalls or watch",
            Exit::Usage
        );
    };
    match result {
        Ok(m) => format!("ok {m}"),
        Err(e) => format!("err {} {e}", e.exit_code()),
    }
}

fn log(req: &str, r: &Result<String, manage::ControlError>) {
    match r {
        Ok(m) => tracing::info!(request = req, "control: {m}"),
        Err(e) => tracing::warn!(request = req, "control: refused: {e}"),
    }
}

/// A parsed reply.
#[derive(Debug, PartialEq, Eq)]
pub enum Reply {
    /// Success with its message.
    Ok(String),
    /// Refusal with exit code (an [`Exit`] number, as the agent sent it) and message.
    Err(u8, String),
}

/// Parse a reply line.
#[must_use]
pub fn parse_reply(line: &str) -> Reply {
    let line = line.trim_end();
    if let Some(m) = line.strip_prefix("ok") {
        return Reply::Ok(m.trim_start().to_owned());
    }
    if let Some(rest) = line.strip_prefix("err ") {
        let (code, msg) = rest.split_once(' ').unwrap_or((rest, ""));
        return Reply::Err(code.parse().unwrap_or(Exit::Internal.code()), msg.to_owned());
    }
    Reply::Err(Exit::Internal.code(), format!("malformed reply from the agent: {line:?}"))
}

/// Send one request to the agent and return its reply (client side, blocking).
///
/// # Errors
/// `(exit code, message)` when the agent cannot be reached.
pub fn request(path: &Path, req: &str) -> Result<Reply, (u8, String)> {
    use std::io::{BufRead as _, Write as _};
    let internal = |e: std::io::Error| (Exit::Internal.code(), e.to_string());
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            (Exit::PermissionDenied.code(), format!("permission denied on {}: run as root", path.display()))
        }
        _ => (
            Exit::NoAgent.code(),
            format!(
                "no exabond agent is running (cannot connect to {}: {e}); start one with `exabond agent`",
                path.display()
            ),
        ),
    })?;
    s.write_all(format!("{req}\n").as_bytes()).map_err(internal)?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).map_err(internal)?;
    Ok(parse_reply(&line))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies() {
        assert_eq!(parse_reply("ok bond0 bond1\n"), Reply::Ok("bond0 bond1".into()));
        assert_eq!(parse_reply("ok\n"), Reply::Ok(String::new()));
        assert_eq!(parse_reply("err 7 bond0: member v0 ...\n"), Reply::Err(7, "bond0: member v0 ...".into()));
        assert!(matches!(parse_reply("garbage"), Reply::Err(1, _)));
    }

    /// The server side of `watch` against the client's relay, over a real socket: events in order, a
    /// `lagged` line for a client that fell behind, the shutdown line when the agent stops; and `pitfalls`.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn watch_streams_lags_and_ends() {
        use std::io::{BufRead as _, Write as _};

        use crate::agent_events::AgentEvent;

        // SAFETY: geteuid(2) has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            eprintln!("skipped: the control socket answers root only");
            return;
        }
        let dir = std::env::temp_dir().join(format!("exabond-ctl-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("control.sock");
        let shared = Arc::new(crate::shared::for_tests(dir.clone()));
        let cancel = CancellationToken::new();
        let server =
            tokio::spawn(serve(bind(&path).unwrap(), path.clone(), shared.clone(), Arc::default(), cancel.clone()));

        let p = path.clone();
        let reply = tokio::task::spawn_blocking(move || request(&p, "pitfalls")).await.unwrap();
        assert_eq!(reply, Ok(Reply::Ok("[]".into())));

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
        let p = path.clone();
        let client = tokio::task::spawn_blocking(move || {
            let s = std::os::unix::net::UnixStream::connect(&p).unwrap();
            (&s).write_all(b"watch\n").unwrap();
            let mut r = std::io::BufReader::new(&s);
            let mut first = String::new();
            r.read_line(&mut first).unwrap();
            ready_tx.send(first).unwrap();
            go_rx.recv().unwrap();
            let mut out = Vec::new();
            let end = crate::cli::watch::relay(r, &mut out, true, String::new);
            (end, String::from_utf8(out).unwrap())
        });
        let first = tokio::task::spawn_blocking(move || ready_rx.recv().unwrap()).await.unwrap();
        assert_eq!(first, "ok watching\n");
        shared.emit(AgentEvent::Member { bond: "b0".into(), member: "m0".into(), change: "added" });
        // Written into the socket before the flood.
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        // Far more than the bus holds while the client does not read.
        for _ in 0..5000 {
            shared.emit(AgentEvent::Manage { bond: "b1".into() });
        }
        go_tx.send(()).unwrap();
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        cancel.cancel();
        let (end, out) = tokio::time::timeout(std::time::Duration::from_secs(10), client).await.unwrap().unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), server).await.unwrap().unwrap();
        assert_eq!(end, crate::cli::watch::End::Shutdown);
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines[0], r#"{"event":"member","bond":"b0","member":"m0","change":"added"}"#);
        assert_eq!(*lines.last().unwrap(), SHUTDOWN_LINE);
        let lagged = lines.iter().find(|l| l.contains(r#""event":"lagged""#)).expect("a lagged line");
        let v: serde_json::Value = serde_json::from_str(lagged).unwrap();
        assert!(v["missed"].as_u64().unwrap() > 0, "{lagged}");
        assert!(lines.len() < 5000, "some events were skipped, {} lines", lines.len());
        assert!(!path.exists(), "socket removed");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn no_agent_is_exit_11() {
        let e = request(Path::new("/nonexistent/exabond.sock"), "list").unwrap_err();
        assert_eq!(e.0, Exit::NoAgent);
        assert!(e.1.contains("no exabond agent"), "{}", e.1);
    }
}
