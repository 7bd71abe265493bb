//! `exabond`: the agent and its command line.

mod active_check;
mod agent_events;
mod bond_view;
mod bpf_obj;
mod btf_offsets;
mod bypass;
mod cli;
mod config;
mod control;
mod counters;
mod ebpf_loader;
mod enforcement;
mod event_loop;
mod exanic;
mod exit_code;
mod failover_probes;
mod fast_words;
mod ifname;
mod mac_pitfall;
mod manage;
mod metrics;
mod netlink;
mod page_state;
mod page_watch;
mod pi_mutex;
mod pin_layout;
mod policy;
mod publisher;
mod reader_socket;
mod report;
mod self_check;
mod shared;
mod smartnic;
mod snapshot_json;
mod sysinfo;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    init_tracing();
    let result = match &cli.command {
        cli::Command::Agent(a) => cli::agent::run(a),
        cli::Command::Read(r) => cli::read::run(r),
        cli::Command::Manage { bond, ctl } => return cli::control::run(ctl, &format!("+{bond}")),
        cli::Command::Unmanage { bond, ctl } => return cli::control::run(ctl, &format!("-{bond}")),
        cli::Command::List { ctl } => return cli::control::run(ctl, "list"),
        cli::Command::Member { device, ctl } => return cli::control::run(ctl, &format!("?{device}")),
        cli::Command::Status(a) => return cli::status::run(a),
        cli::Command::Watch(a) => return cli::watch::run(a),
        cli::Command::Completions(a) => cli::completions::completions(a),
        cli::Command::Manpage(a) => cli::completions::manpage(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("exabond: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr (journald-friendly: no colours when not a terminal); `RUST_LOG` filters. aya-log
/// records from the eBPF side arrive through the `log` bridge.
fn init_tracing() {
    use std::io::IsTerminal as _;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
