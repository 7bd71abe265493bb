//! `exabond watch`: the agent's events as they happen, one line each: a timestamp (UTC) and a short sentence,
//! or with `--json` the JSON lines the control socket's `watch` request streams.

use std::io::{BufRead, Write};
use std::process::ExitCode;

use serde_json::Value;

use crate::cli::control::ControlArgs;
use crate::control::{self, Reply};
use crate::exit_code::Exit;

/// Arguments of `exabond watch`.
#[derive(clap::Args)]
pub struct WatchArgs {
    /// Print each event as the agent sends it (one JSON object per line) instead of a sentence.
    #[arg(long)]
    pub json: bool,
    /// Socket.
    #[command(flatten)]
    pub ctl: ControlArgs,
}

/// How a stream ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// The agent said it stops.
    Shutdown,
    /// The connection closed without that (agent killed?).
    Closed,
    /// Our stdout is gone (e.g. `exabond watch | head`).
    OutputClosed,
    /// Reading failed.
    Error(String),
}

/// `2025-01-02T03:04:05.678Z` for a time since the epoch.
#[must_use]
pub fn utc_timestamp(since_epoch: std::time::Duration) -> String {
    let secs = since_epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    #[expect(clippy::cast_possible_wrap, reason = "u64 seconds / 86 400 is below 2^48: it fits an i64")]
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since_epoch.subsec_millis()
    )
}

fn s<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str().unwrap_or("?")
}

fn opt(v: &Value, k: &str) -> String {
    v[k].as_str().map_or_else(|| "none".to_owned(), str::to_owned)
}

/// The sentence for one event line (without the timestamp).
#[must_use]
pub fn sentence(v: &Value) -> String {
    let bond = s(v, "bond");
    match v["event"].as_str().unwrap_or_default() {
        "failover" => {
            let latency =
                v["kernel_to_page_us"].as_f64().map(|us| format!(", kernel→page {us:.1} µs")).unwrap_or_default();
            format!(
                "{bond}: failover {} -> {} (seen by {}, failover #{}{latency})",
                opt(v, "from"),
                opt(v, "to"),
                s(v, "source"),
                v["failover_count"]
            )
        }
        "link" => {
            format!("{bond}: member {} link {} (link failures {})", s(v, "member"), s(v, "link"), v["link_failures"])
        }
        "member" => format!("{bond}: member {} {}", s(v, "member"), s(v, "change")),
        "veto" => {
            let bond = v["bond"].as_str().map_or_else(|| format!("bond #{}", v["bond_ifindex"]), str::to_owned);
            format!(
                "{bond}: VETO {} refused ({}, errno {}) for pid {} ({})",
                s(v, "what"),
                s(v, "detail"),
                v["errno"],
                v["pid"],
                s(v, "comm")
            )
        }
        "manage" => format!("{bond}: now managed"),
        "unmanage" => format!("{bond}: no longer managed ({})", s(v, "reason")),
        "revert" => format!("{bond}: detect-and-revert: {}", s(v, "action")),
        "bypass" => format!(
            "{bond}: BYPASS {} {} found (seen by {}): {}",
            s(v, "kind"),
            s(v, "detail"),
            s(v, "seen_by"),
            s(v, "outcome")
        ),
        "resync" => format!("rtnetlink notifications lost: resynchronised from a full dump ({} devices)", v["devices"]),
        "self_check" => format!("self-check: {}: {}", s(v, "what"), s(v, "action")),
        "enforcement" => {
            let reasons: Vec<&str> =
                v["reasons"].as_array().map(|a| a.iter().filter_map(Value::as_str).collect()).unwrap_or_default();
            if reasons.is_empty() {
                format!("enforcement {}", s(v, "state"))
            } else {
                format!("enforcement {}: {}", s(v, "state"), reasons.join("; "))
            }
        }
        "failover_probe" if s(v, "reason").is_empty() => format!("failover probe {}", s(v, "state")),
        "failover_probe" => format!("failover probe {}: {}", s(v, "state"), s(v, "reason")),
        "mac_pitfall" => format!(
            "{bond}: WARNING MAC pitfall: the bond's MAC {} is the own address of {}, which is not one of its members",
            s(v, "mac"),
            s(v, "donor")
        ),
        "lagged" => format!("(this watcher was too slow: {} events missed)", v["missed"]),
        "shutdown" => "the agent is stopping".to_owned(),
        other => format!("{other}: {v}"),
    }
}

/// Copy the event lines of `input` to `out` (as is with `json`, else as timestamped sentences) until the
/// stream ends.
pub fn relay(input: impl BufRead, out: &mut impl Write, json: bool, now: impl Fn() -> String) -> End {
    for line in input.lines() {
        let line = match line {
            Ok(l) => l,
            Err(e) => return End::Error(e.to_string()),
        };
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line).unwrap_or_else(|_| Value::String(line.clone()));
        let text = if json { line } else { format!("{} {}", now(), sentence(&v)) };
        if writeln!(out, "{text}").and_then(|()| out.flush()).is_err() {
            return End::OutputClosed;
        }
        if v["event"] == "shutdown" {
            return End::Shutdown;
        }
    }
    End::Closed
}

fn now_utc() -> String {
    utc_timestamp(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default())
}

/// Connect, subscribe and relay.
#[must_use]
pub fn run(args: &WatchArgs) -> ExitCode {
    let path = &args.ctl.socket;
    let stream = match std::os::unix::net::UnixStream::connect(path) {
        Ok(s) => s,
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
            eprintln!("exabond: permission denied on {}: run as root", path.display());
            return ExitCode::from(Exit::PermissionDenied);
        }
        Err(e) => {
            eprintln!(
                "exabond: no exabond agent is running (cannot connect to {}: {e}); start one with `exabond agent`",
                path.display()
            );
            return ExitCode::from(Exit::NoAgent);
        }
    };
    if let Err(e) = (&stream).write_all(b"watch\n") {
        eprintln!("exabond: {e}");
        return ExitCode::from(Exit::Internal);
    }
    let mut input = std::io::BufReader::new(&stream);
    let mut first = String::new();
    if let Err(e) = input.read_line(&mut first) {
        eprintln!("exabond: {e}");
        return ExitCode::from(Exit::Internal);
    }
    match control::parse_reply(&first) {
        Reply::Ok(_) => {}
        Reply::Err(code, m) => {
            eprintln!("exabond: {m}");
            return ExitCode::from(code);
        }
    }
    eprintln!("exabond: watching the agent's events on {} (Ctrl-C to stop)", path.display());
    match relay(input, &mut std::io::stdout().lock(), args.json, now_utc) {
        End::Shutdown => {
            eprintln!("exabond: the agent stopped; watch ends");
            ExitCode::SUCCESS
        }
        End::OutputClosed => ExitCode::SUCCESS,
        End::Closed => {
            eprintln!("exabond: the agent closed the connection without stopping cleanly (killed?); watch ends");
            ExitCode::from(Exit::Internal)
        }
        End::Error(e) => {
            eprintln!("exabond: reading from the agent: {e}");
            ExitCode::from(Exit::Internal)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::agent_events::AgentEvent;

    #[test]
    fn timestamps() {
        assert_eq!(utc_timestamp(Duration::ZERO), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc_timestamp(Duration::from_millis(951_782_400_123)), "2000-02-29T00:00:00.123Z");
        assert_eq!(utc_timestamp(Duration::from_secs(1_735_689_599)), "2024-12-31T23:59:59.000Z");
        assert_eq!(utc_timestamp(Duration::from_secs(4_107_542_400)), "2100-03-01T00:00:00.000Z");
    }

    fn line(e: &AgentEvent) -> Value {
        serde_json::to_value(e).unwrap()
    }

    #[test]
    fn sentences() {
        let ebpf = AgentEvent::Failover {
            bond: "bond0".into(),
            from: Some("eth0".into()),
            to: Some("eth1".into()),
            source: "ebpf",
            failover_count: 4,
            kernel_to_page_us: Some(12.34),
        };
        assert_eq!(
            sentence(&line(&ebpf)),
            "bond0: failover eth0 -> eth1 (seen by ebpf, failover #4, kernel→page 12.3 µs)"
        );
        let netlink = AgentEvent::Failover {
            bond: "bond0".into(),
            from: Some("eth1".into()),
            to: None,
            source: "netlink",
            failover_count: 5,
            kernel_to_page_us: None,
        };
        assert_eq!(sentence(&line(&netlink)), "bond0: failover eth1 -> none (seen by netlink, failover #5)");
        let mut veto = line(&AgentEvent::Veto {
            bond_ifindex: 7,
            what: "member added via sysfs",
            detail: "dum0".into(),
            errno: 19,
            pid: 42,
            comm: "bash".into(),
        });
        assert_eq!(sentence(&veto), "bond #7: VETO member added via sysfs refused (dum0, errno 19) for pid 42 (bash)");
        veto["bond"] = "bond0".into();
        assert!(sentence(&veto).starts_with("bond0: VETO"), "{}", sentence(&veto));
        let link = AgentEvent::Link { bond: "b".into(), member: "m".into(), link: "down", link_failures: 2 };
        assert_eq!(sentence(&line(&link)), "b: member m link down (link failures 2)");
        let member = AgentEvent::Member { bond: "b".into(), member: "m".into(), change: "removed" };
        assert_eq!(sentence(&line(&member)), "b: member m removed");
        assert_eq!(sentence(&line(&AgentEvent::Manage { bond: "b".into() })), "b: now managed");
        assert_eq!(
            sentence(&line(&AgentEvent::Unmanage { bond: "b".into(), reason: "deleted" })),
            "b: no longer managed (deleted)"
        );
        assert_eq!(
            sentence(&line(&AgentEvent::Revert { bond: "b".into(), action: "released x".into() })),
            "b: detect-and-revert: released x"
        );
        let bypass = AgentEvent::Bypass {
            bond: "b".into(),
            kind: "member",
            detail: "dum0".into(),
            seen_by: "rtnetlink",
            outcome: "repaired".into(),
        };
        assert_eq!(sentence(&line(&bypass)), "b: BYPASS member dum0 found (seen by rtnetlink): repaired");
        let degraded = AgentEvent::Enforcement { state: "degraded", reasons: vec!["x".into(), "y".into()] };
        assert_eq!(sentence(&line(&degraded)), "enforcement degraded: x; y");
        let gone = AgentEvent::FailoverProbe { state: "detached", reason: "module gone".into() };
        assert_eq!(sentence(&line(&gone)), "failover probe detached: module gone");
        let back = AgentEvent::FailoverProbe { state: "attached", reason: String::new() };
        assert_eq!(sentence(&line(&back)), "failover probe attached");
        let pitfall =
            AgentEvent::MacPitfall { bond: "b".into(), mac: "02:00:00:00:00:01".into(), donor: "eth0".into() };
        assert!(sentence(&line(&pitfall))
            .contains("MAC pitfall: the bond's MAC 02:00:00:00:00:01 is the own address of eth0"));
        assert_eq!(
            sentence(&serde_json::json!({"event": "lagged", "missed": 3})),
            "(this watcher was too slow: 3 events missed)"
        );
        assert_eq!(
            sentence(&serde_json::json!({"event": "new_thing", "x": 1})),
            r#"new_thing: {"event":"new_thing","x":1}"#
        );
    }

    #[test]
    fn relay_ends() {
        let input = "{\"event\":\"manage\",\"bond\":\"b\"}\n\n{\"event\":\"shutdown\"}\n{\"event\":\"manage\",\"bond\":\"c\"}\n";
        let mut out = Vec::new();
        assert_eq!(relay(input.as_bytes(), &mut out, false, || "T".into()), End::Shutdown);
        assert_eq!(String::from_utf8(out).unwrap(), "T b: now managed\nT the agent is stopping\n");
        let mut out = Vec::new();
        assert_eq!(relay(&input.as_bytes()[..30], &mut out, true, || "T".into()), End::Closed);
        assert_eq!(String::from_utf8(out).unwrap(), "{\"event\":\"manage\",\"bond\":\"b\"}\n");
    }
}
