//! The agent's configuration file (`exabond agent --config FILE`), TOML:
//!
//! | key | type | flag | default |
//! |---|---|---|---|
//! | `bonds` | list of bond names | `--bond` (repeatable) | none |
//! | `member_drivers` | list of driver names | `--member-driver` (repeatable) | none (`exanic` is always allowed) |
//! | `page_dir` | path | `--page-dir` | `/dev` |
//! | `poll_ms` | integer (ms) | `--poll-ms` | MIN(miimon, `arp_interval`) of the bonds |
//! | `metrics_addr` | `"IP:PORT"` | `--metrics-addr` | none (no metrics endpoint) |
//! | `socket` | path | `--socket` | `/run/exabond/control.sock` |
//! | `reader_socket` | path | `--reader-socket` | `/run/exabond/reader.sock` (the fast words, for any local reader) |
//!
//! A flag given on the command line wins over the file; a list given by flags replaces the file's list (it
//! is not appended to). Unknown keys are an error, and every error names the file, the line and column, and
//! the key.
//!
//! This module knows nothing of the command line: `cli::agent` turns its flags into [`Settings`] and calls
//! [`resolve`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;

/// Default path of the control socket.
pub const DEFAULT_SOCKET: &str = "/run/exabond/control.sock";

/// The settings one source (the file, or the command line) gives; `None` / absent = not given there.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Bonds to manage at start.
    #[serde(default)]
    pub bonds: Option<Vec<Spanned<String>>>,
    /// Extra member drivers.
    #[serde(default)]
    pub member_drivers: Option<Vec<String>>,
    /// Page directory.
    #[serde(default)]
    pub page_dir: Option<PathBuf>,
    /// Poll period (ms).
    #[serde(default)]
    pub poll_ms: Option<u32>,
    /// Metrics endpoint address.
    #[serde(default)]
    pub metrics_addr: Option<SocketAddr>,
    /// Control socket.
    #[serde(default)]
    pub socket: Option<PathBuf>,
    /// Reader socket (fast words).
    #[serde(default)]
    pub reader_socket: Option<PathBuf>,
}

/// What the agent runs with, after merging the file and the flags and applying the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// Bonds to manage at start.
    pub bonds: Vec<String>,
    /// Extra member drivers.
    pub member_drivers: Vec<String>,
    /// Page directory.
    pub page_dir: PathBuf,
    /// Poll period override (ms).
    pub poll_ms: Option<u32>,
    /// Metrics endpoint, if any.
    pub metrics_addr: Option<SocketAddr>,
    /// Control socket.
    pub socket: PathBuf,
    /// Reader socket (fast words).
    pub reader_socket: PathBuf,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read the config file {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a bad key or value.
    #[error(
        "config file {}, line {line}, column {column}{}: {message}\n    {line} | {text}",
        path.display(),
        key.as_ref().map(|k| format!(", key `{k}`")).unwrap_or_default()
    )]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// The key the error is about, when it can be told.
        key: Option<String>,
        /// What is wrong.
        message: String,
        /// The offending line.
        text: String,
    },
    /// A bad value given on the command line.
    #[error("{flag} {value:?}: {message}")]
    Flag {
        /// The flag.
        flag: &'static str,
        /// Its value.
        value: String,
        /// What is wrong.
        message: String,
    },
}

/// 1-based (line, column) of byte `offset` in `text`, and the line itself.
fn position(text: &str, offset: usize) -> (usize, usize, &str) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line_no = before.matches('\n').count() + 1;
    let column = text[line_start..offset].chars().count() + 1;
    let line = text[line_start..].split('\n').next().unwrap_or_default().trim_end_matches('\r');
    (line_no, column, line)
}

/// The `key = ...` a position belongs to: the nearest line at or above it that assigns a key (a value
/// can span lines, e.g. a list), stopping at a table header.
fn key_at(text: &str, line_no: usize) -> Option<String> {
    let lines: Vec<&str> = text.split('\n').collect();
    for l in lines[..line_no.min(lines.len())].iter().rev() {
        let t = l.trim_start();
        if t.starts_with('[') {
            return None;
        }
        let key: String = t.chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_' || *c == '-').collect();
        if !key.is_empty() && t[key.len()..].trim_start().starts_with('=') {
            return Some(key);
        }
    }
    None
}

/// The key named in a message such as "unknown field `bondz`, expected ...".
fn key_in_message(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.split('`').next().map(str::to_owned)
}

fn invalid(path: &Path, text: &str, span: Option<std::ops::Range<usize>>, message: &str) -> ConfigError {
    let (line, column, line_text) = position(text, span.map_or(0, |s| s.start));
    ConfigError::Invalid {
        path: path.to_owned(),
        line,
        column,
        key: key_in_message(message).or_else(|| key_at(text, line)),
        message: message.trim_end().to_owned(),
        text: line_text.to_owned(),
    }
}

impl Settings {
    /// Parse the text of a config file (`path` is for the messages).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] with the line, column and key.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let s: Self = toml::from_str(text).map_err(|e| invalid(path, text, e.span(), e.message()))?;
        for b in s.bonds.iter().flatten() {
            if let Err(e) = crate::ifname::validate(b.get_ref()) {
                return Err(invalid(path, text, Some(b.span()), &format!("invalid bond name {:?}: {e}", b.get_ref())));
            }
        }
        Ok(s)
    }

    /// Read and parse a config file.
    ///
    /// # Errors
    /// As [`Settings::parse`], or [`ConfigError::Read`].
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(path, &text)
    }

    /// `self` (the command line) over `file`: every setting `self` gives wins, lists included (replaced,
    /// not appended).
    #[must_use]
    pub fn over(self, file: Self) -> Self {
        Self {
            bonds: self.bonds.or(file.bonds),
            member_drivers: self.member_drivers.or(file.member_drivers),
            page_dir: self.page_dir.or(file.page_dir),
            poll_ms: self.poll_ms.or(file.poll_ms),
            metrics_addr: self.metrics_addr.or(file.metrics_addr),
            socket: self.socket.or(file.socket),
            reader_socket: self.reader_socket.or(file.reader_socket),
        }
    }

    /// Apply the defaults.
    #[must_use]
    pub fn finish(self) -> AgentConfig {
        AgentConfig {
            bonds: self.bonds.unwrap_or_default().into_iter().map(Spanned::into_inner).collect(),
            member_drivers: self.member_drivers.unwrap_or_default(),
            page_dir: self.page_dir.unwrap_or_else(|| PathBuf::from(exabond_common::page::DEFAULT_PAGE_DIR)),
            poll_ms: self.poll_ms,
            metrics_addr: self.metrics_addr,
            socket: self.socket.unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET)),
            reader_socket: self.reader_socket.unwrap_or_else(|| PathBuf::from(exabond_common::fast::READER_SOCKET)),
        }
    }
}

/// The configuration of `exabond agent`: the settings its `flags` give over its `--config` file (if any)
/// over the defaults.
///
/// # Errors
/// [`ConfigError`] naming the file, line, column and key.
pub fn resolve(flags: Settings, file: Option<&Path>) -> Result<AgentConfig, ConfigError> {
    let file = match file {
        Some(p) => Settings::load(p)?,
        None => Settings::default(),
    };
    Ok(flags.over(file).finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    const FULL: &str = r#"
# every key
bonds = ["bond0", "bond1"]
member_drivers = ["veth"]
page_dir = "/run/exabond"
poll_ms = 50
metrics_addr = "127.0.0.1:9464"
socket = "/run/exabond/control.sock"
reader_socket = "/run/exabond/reader.sock"
"#;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::parse(Path::new("/etc/exabond.toml"), text)
    }

    fn names(s: &Settings) -> Vec<String> {
        s.bonds.iter().flatten().map(|b| b.get_ref().clone()).collect()
    }

    #[test]
    fn every_key() {
        let c = parse(FULL).unwrap().finish();
        assert_eq!(c.bonds, ["bond0", "bond1"]);
        assert_eq!(c.member_drivers, ["veth"]);
        assert_eq!(c.page_dir, Path::new("/run/exabond"));
        assert_eq!(c.poll_ms, Some(50));
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9464".parse().unwrap()));
        assert_eq!(c.socket, Path::new("/run/exabond/control.sock"));
    }

    #[test]
    fn defaults() {
        let c = parse("").unwrap().finish();
        assert!(c.bonds.is_empty() && c.member_drivers.is_empty());
        assert_eq!(c.page_dir, Path::new("/dev"));
        assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(c.poll_ms, None);
        assert_eq!(c.metrics_addr, None);
    }

    #[test]
    fn flags_win_and_lists_replace() {
        let file = parse(FULL).unwrap();
        let flags = Settings {
            bonds: Some(vec![Spanned::new(0..0, "bond9".to_owned())]),
            poll_ms: Some(7),
            metrics_addr: Some("[::1]:9000".parse().unwrap()),
            ..Settings::default()
        };
        let c = flags.over(file).finish();
        assert_eq!(c.bonds, ["bond9"], "the flags' list replaces the file's");
        assert_eq!(c.member_drivers, ["veth"], "not given by flags: the file's");
        assert_eq!(c.poll_ms, Some(7));
        assert_eq!(c.metrics_addr, Some("[::1]:9000".parse().unwrap()));
        assert_eq!(c.page_dir, Path::new("/run/exabond"));
        assert_eq!(c.socket, Path::new("/run/exabond/control.sock"));
        // Nothing from flags: the file entirely.
        let c = Settings::default().over(parse(FULL).unwrap()).finish();
        assert_eq!(c, parse(FULL).unwrap().finish());
        // A file-less run: the flags over the defaults.
        let c = Settings { page_dir: Some("/tmp/p".into()), ..Settings::default() }.over(Settings::default()).finish();
        assert_eq!(c.page_dir, Path::new("/tmp/p"));
        assert_eq!(c.socket, Path::new(DEFAULT_SOCKET));
        assert_eq!(names(&parse(FULL).unwrap()), ["bond0", "bond1"]);
    }

    fn err(text: &str) -> (usize, usize, Option<String>, String) {
        match parse(text).unwrap_err() {
            e @ ConfigError::Invalid { .. } => {
                let shown = e.to_string();
                let ConfigError::Invalid { line, column, key, message, .. } = e else { unreachable!() };
                assert!(shown.starts_with("config file /etc/exabond.toml, line "), "{shown}");
                (line, column, key, message)
            }
            other => panic!("{other}"),
        }
    }

    #[test]
    fn unknown_key_is_an_error_with_its_line() {
        let (line, column, key, message) = err("bonds = [\"bond0\"]\n\nbondz = [\"bond1\"]\n");
        assert_eq!((line, column), (3, 1));
        assert_eq!(key.as_deref(), Some("bondz"));
        assert!(message.contains("unknown field"), "{message}");
    }

    #[test]
    fn bad_values_name_key_and_line() {
        let (line, column, key, message) = err("bonds = [\"bond0\"]\npoll_ms = \"fast\"\n");
        assert_eq!((line, column), (2, 11));
        assert_eq!(key.as_deref(), Some("poll_ms"));
        assert!(message.contains("invalid type"), "{message}");

        let (line, _, key, _) = err("metrics_addr = \"localhost\"\n");
        assert_eq!((line, key.as_deref()), (1, Some("metrics_addr")));

        let (line, _, key, message) = err("poll_ms = -1\n");
        assert_eq!((line, key.as_deref()), (1, Some("poll_ms")), "{message}");

        // A list over several lines: the key of the list, the line of the element.
        let (line, column, key, message) = err("member_drivers = [\n  \"veth\",\n  5,\n]\n");
        assert_eq!((line, column, key.as_deref()), (3, 3, Some("member_drivers")), "{message}");

        // Bond names are checked like --bond.
        let (line, column, key, message) = err("page_dir = \"/run/exabond\"\nbonds = [\"bond0\", \"../x\"]\n");
        assert_eq!((line, column, key.as_deref()), (2, 19, Some("bonds")));
        assert!(message.contains("invalid bond name"), "{message}");

        // Not TOML at all.
        let (line, _, _, _) = err("bonds = [\"bond0\"]\npage_dir = \n");
        assert_eq!(line, 2);

        // A table is not a key of ours.
        let (_, _, key, _) = err("[metrics]\naddr = \"127.0.0.1:1\"\n");
        assert_eq!(key.as_deref(), Some("metrics"));
    }

    #[test]
    fn unreadable_file() {
        let e = Settings::load(Path::new("/nonexistent/exabond.toml")).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/exabond.toml"), "{e}");
    }

    #[test]
    fn the_example_in_deploy_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/exabond.toml");
        let c = Settings::load(&path).unwrap().finish();
        assert!(!c.bonds.is_empty());
        assert_eq!(c.page_dir, Path::new("/run/exabond/pages"));
    }
}
