//! `cargo xtask run -- <exabond args>`: build and run the agent on this host, as root.

use std::process::Command;

use anyhow::bail;

use crate::cargo::{build_all, run_cmd};

/// Arguments of `cargo xtask run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// Arguments for `exabond` (default: `agent --help`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

/// Build, then exec the agent (through sudo when not root).
pub fn run(args: &RunArgs) -> anyhow::Result<()> {
    let wants_agent = args.args.first().is_some_and(|a| a == "agent");
    if wants_agent && !std::path::Path::new("/sys/module/bonding").exists() {
        let probe = Command::new("modprobe").args(["-n", "bonding"]).output();
        if !probe.is_ok_and(|o| o.status.success()) {
            bail!("this host has no bonding driver (modprobe bonding fails): try `cargo xtask demo`, which runs it in a VM");
        }
    }
    let bins = build_all(true)?;
    let root = std::fs::read_to_string("/proc/self/status")
        .is_ok_and(|s| s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(2) == Some("0")));
    let mut c = if root {
        Command::new(&bins.exabond)
    } else {
        let mut c = Command::new("sudo");
        c.arg(&bins.exabond);
        c
    };
    if args.args.is_empty() {
        c.args(["agent", "--help"]);
    } else {
        c.args(&args.args);
    }
    run_cmd(&mut c)
}
