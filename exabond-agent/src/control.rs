//! The root-only control socket. One request line per connection, one reply line:
//!
//! | request | effect | reply |
//! |---|---|---|
//! | `+BOND` | place BOND under management (checked) | `ok <message>` or `err <code> <message>` |
//! | `-BOND` | stop managing BOND | `ok <message>` |
//! | `list` (or an empty line) | — | `ok <bond> <bond> ...` |
//! | `status` | — | `ok <JSON object>`: enforcement mode, member drivers, per-bond veto counts |
//!
//! `<code>` is the CLI exit code of the refusal (see `exabond --help`). Peers other than uid 0 get
//! `err 10 permission denied`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio::io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;

use crate::manage::{self, Shared};

/// Default socket path.
pub const DEFAULT_SOCKET: &str = "/run/exabond/control.sock";
/// Exit code: the caller is not root.
pub const EXIT_PERMISSION: u8 = 10;
/// Exit code: no agent is listening.
pub const EXIT_NO_AGENT: u8 = 11;
/// Exit code: malformed request.
pub const EXIT_USAGE: u8 = 2;

/// Bind the socket (mode 0600, replacing a stale one).
///
/// # Errors
/// If the directory or socket cannot be created.
pub fn bind(path: &Path) -> std::io::Result<UnixListener> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let _ = std::fs::remove_file(path);
    let l = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    Ok(l)
}

/// Serve requests until cancelled.
pub async fn serve(listener: UnixListener, path: PathBuf, shared: Arc<Shared>, cancel: CancellationToken) {
    loop {
        let conn = tokio::select! {
            () = cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        match conn {
            Ok((stream, _)) => {
                let shared = shared.clone();
                tokio::spawn(async move {
                    if let Err(e) = handle(stream, &shared).await {
                        tracing::warn!("control connection: {e}");
                    }
                });
            }
            Err(e) => tracing::warn!("control socket accept: {e}"),
        }
    }
    let _ = std::fs::remove_file(path);
}

async fn handle(stream: UnixStream, shared: &Shared) -> std::io::Result<()> {
    let cred = stream.peer_cred()?;
    let (r, mut w) = stream.into_split();
    if cred.uid() != 0 {
        tracing::warn!(uid = cred.uid(), pid = ?cred.pid(), "control request refused: not root");
        w.write_all(
            format!("err {EXIT_PERMISSION} permission denied: the exabond control socket is for root\n").as_bytes(),
        )
        .await?;
        return Ok(());
    }
    let mut line = String::new();
    BufReader::new(r).take(256).read_line(&mut line).await?;
    let reply = answer(line.trim(), shared).await;
    w.write_all(reply.as_bytes()).await?;
    w.write_all(b"\n").await
}

use tokio::io::AsyncReadExt as _;

async fn answer(req: &str, shared: &Shared) -> String {
    let result = if let Some(name) = req.strip_prefix('+') {
        let r = manage::manage(shared, name).await;
        log(req, &r);
        r
    } else if let Some(name) = req.strip_prefix('-') {
        let r = manage::unmanage(shared, name);
        log(req, &r);
        r
    } else if req.is_empty() || req == "list" {
        Ok(manage::list(shared))
    } else if req == "status" {
        Ok(manage::status(shared, &shared.page_dir))
    } else {
        return format!("err {EXIT_USAGE} unknown request {req:?}: use +BOND, -BOND or list");
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
    /// Refusal with exit code and message.
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
        return Reply::Err(code.parse().unwrap_or(manage::EXIT_INTERNAL), msg.to_owned());
    }
    Reply::Err(manage::EXIT_INTERNAL, format!("malformed reply from the agent: {line:?}"))
}

/// Send one request to the agent and return its reply (client side, blocking).
///
/// # Errors
/// `(exit code, message)` when the agent cannot be reached.
pub fn request(path: &Path, req: &str) -> Result<Reply, (u8, String)> {
    use std::io::{BufRead as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::PermissionDenied => {
            (EXIT_PERMISSION, format!("permission denied on {}: run as root", path.display()))
        }
        _ => (
            EXIT_NO_AGENT,
            format!(
                "no exabond agent is running (cannot connect to {}: {e}); start one with `exabond agent`",
                path.display()
            ),
        ),
    })?;
    s.write_all(format!("{req}\n").as_bytes()).map_err(|e| (manage::EXIT_INTERNAL, e.to_string()))?;
    let mut line = String::new();
    std::io::BufReader::new(s).read_line(&mut line).map_err(|e| (manage::EXIT_INTERNAL, e.to_string()))?;
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

    #[test]
    fn no_agent_is_exit_11() {
        let e = request(Path::new("/nonexistent/exabond.sock"), "list").unwrap_err();
        assert_eq!(e.0, EXIT_NO_AGENT);
        assert!(e.1.contains("no exabond agent"), "{}", e.1);
    }
}
