//! `exabond status`: per managed bond, the kernel's view and the page, with the agent's enforcement state.

use std::path::Path;
use std::process::ExitCode;

use exabond_common::reader::PageReader;
use serde_json::{json, Value};

use crate::cli::control::ControlArgs;
use crate::control::{self, Reply};
use crate::snapshot_json::SnapshotJson;
use crate::sysinfo;

/// The agent's line, then, loudly, whether enforcement is degraded and why.
fn print_header(out: &Value) {
    println!(
        "agent pid {}  enforcement {}  member drivers {}",
        out["agent_pid"],
        out["enforcement"].as_str().unwrap_or("?"),
        out["member_drivers"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(","))
            .unwrap_or_default()
    );
    if out["degraded"] == true {
        let reasons: Vec<&str> = out["degraded_reasons"]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        println!("ENFORCEMENT DEGRADED: {}", reasons.join("; "));
    }
    if out["failover_probe"] == "detached" {
        println!("FAILOVER PROBE DETACHED: {}", out["failover_probe_reason"].as_str().unwrap_or("?"));
    }
}

/// Arguments of `exabond status`.
#[derive(clap::Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// A heartbeat older than this (ms) makes a page stale.
    #[arg(long, value_name = "MS", default_value_t = 1000)]
    pub max_age_ms: u64,
    /// Socket.
    #[command(flatten)]
    pub ctl: ControlArgs,
}

fn donors(b: &Value) -> String {
    b["mac_pitfall_donors"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

fn sysfs(bond: &str, opt: &str) -> String {
    std::fs::read_to_string(format!("/sys/class/net/{bond}/bonding/{opt}"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Collect and print.
#[must_use]
pub fn run(args: &StatusArgs) -> ExitCode {
    let agent: Value = match control::request(&args.ctl.socket, "status") {
        Ok(Reply::Ok(j)) => serde_json::from_str(&j).unwrap_or(Value::Null),
        Ok(Reply::Err(code, m)) | Err((code, m)) => {
            eprintln!("exabond: {m}");
            return ExitCode::from(code);
        }
    };
    // An agent without the request (older) answers `err 2`: no pitfall information then.
    let pitfalls: Vec<Value> = match control::request(&args.ctl.socket, "pitfalls") {
        Ok(Reply::Ok(j)) => serde_json::from_str(&j).unwrap_or_default(),
        _ => Vec::new(),
    };
    let page_dir = agent["page_dir"].as_str().unwrap_or(exabond_common::page::DEFAULT_PAGE_DIR).to_owned();
    let mut bonds = Vec::new();
    for b in agent["bonds"].as_array().cloned().unwrap_or_default() {
        let name = b["bond"].as_str().unwrap_or_default().to_owned();
        let page = PageReader::open_in(Path::new(&page_dir), &name)
            .and_then(|r| r.snapshot_with_seq())
            .map(|(seq, d)| serde_json::to_value(SnapshotJson::new(&d, seq, args.max_age_ms)).unwrap_or(Value::Null));
        let mut page = page.unwrap_or_else(|e| json!({ "error": e.to_string() }));
        if let Some(slaves) = page["slaves"].as_array_mut() {
            for s in slaves {
                let driver = sysinfo::driver_of(s["name"].as_str().unwrap_or_default());
                s["driver"] = json!(driver);
            }
        }
        let mine: Vec<&Value> = pitfalls.iter().filter(|p| p["bond"] == name.as_str()).collect();
        bonds.push(json!({
            "bond": name,
            "mode": sysfs(&name, "mode"),
            "miimon": sysfs(&name, "miimon"),
            "vetoes": b["vetoes"],
            "bypasses": b["bypasses"],
            "mac_pitfall": !mine.is_empty(),
            "mac_pitfall_donors": mine.iter().map(|p| p["donor"].clone()).collect::<Vec<_>>(),
            "mac_pitfall_mac": mine.first().map_or(Value::Null, |p| p["mac"].clone()),
            "page": page,
        }));
    }
    let out = json!({
        "agent_pid": agent["agent_pid"],
        "enforcement": agent["enforcement"],
        "degraded": agent["degraded"],
        "degraded_reasons": agent["degraded_reasons"],
        "failover_probe": agent["failover_probe"],
        "failover_probe_reason": agent["failover_probe_reason"],
        "failover_probe_reattaches": agent["failover_probe_reattaches"],
        "netlink_resyncs": agent["netlink_resyncs"],
        "member_drivers": agent["member_drivers"],
        "bonds": bonds,
    });
    if args.json {
        println!("{out}");
        return ExitCode::SUCCESS;
    }
    print_header(&out);
    for b in &bonds {
        let p = &b["page"];
        let age_ms = p["last_change_mono_ns"]
            .as_u64()
            .map(|t| exabond_common::clock::monotonic_ns().saturating_sub(t) / 1_000_000);
        println!(
            "\n{}  mode {}  miimon {}  active {}  failovers {}  last change {} ago by {}  vetoes {}  bypasses {}{}{}",
            b["bond"].as_str().unwrap_or("?"),
            b["mode"].as_str().unwrap_or("?"),
            b["miimon"].as_str().unwrap_or("?"),
            p["active_slave"].as_str().unwrap_or("none"),
            p["failover_count"],
            age_ms
                .map_or_else(|| "?".into(), |ms| format!("{:.1}s", std::time::Duration::from_millis(ms).as_secs_f64())),
            p["last_change_source"].as_str().unwrap_or("?"),
            b["vetoes"],
            b["bypasses"],
            if p["stale"] == true { "  [STALE]" } else { "" },
            if b["mac_pitfall"] == true { "  [MAC PITFALL]" } else { "" }
        );
        if b["mac_pitfall"] == true {
            println!(
                "  WARNING: MAC pitfall: the bond's MAC {} is the own address of {}, not a member: two devices \
                 share it; give the bond or {} another address",
                b["mac_pitfall_mac"].as_str().unwrap_or("?"),
                donors(b),
                donors(b)
            );
        }
        for s in p["slaves"].as_array().cloned().unwrap_or_default() {
            println!(
                "  {:<15} driver {:<12} link {:<5} {:<6} failures {}",
                s["name"].as_str().unwrap_or("?"),
                s["driver"].as_str().unwrap_or("?"),
                s["link"].as_str().unwrap_or("?"),
                s["role"].as_str().unwrap_or("?"),
                s["link_failures"]
            );
        }
    }
    ExitCode::SUCCESS
}
