//! `cargo xtask`: everything that is not a plain cargo build — machine set-up, the VM test bed, the test
//! suite across host and real kernels, the demo, running the agent.

// Dependencies go one way, from the commands down:
// - the commands: `bench`, `demo`, `run`, `selftests`, `setup`, `test` and `vm` (`test` also runs the bench
//   smoke and the selftests);
// - the VM test bed they share: `e2e` (the suite on each kernel, its report) → `stage` (the folder shared
//   with the guest) and `vm_run` (one boot running one script);
// - under everything: `setup` (tools, kernels, the test bed script) and `cargo` (commands, paths).
mod bench;
mod cargo;
mod demo;
mod e2e;
mod run;
mod selftests;
mod setup;
mod stage;
mod test;
mod vm;
mod vm_run;

use clap::{Parser, Subcommand};

/// exabond project tasks.
#[derive(Parser)]
#[command(name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Install what this machine lacks (rust-src, bpf-linker, qemu & co, the Debian kernels and root fs).
    /// Idempotent; a second run takes seconds.
    Setup(setup::SetupArgs),
    /// Build the agent (with its eBPF object) and the end-to-end test binary.
    Build {
        /// Release profile.
        #[arg(long)]
        release: bool,
    },
    /// Unit tests on the host, then the end-to-end suite in the VM on both Debian kernels.
    Test(test::TestArgs),
    /// The VM test bed: run the end-to-end suite, a script, or a shell.
    Vm(vm::VmArgs),
    /// Boot the VM, create a bond, run the agent, trigger failovers and show what a reader sees.
    Demo(demo::DemoArgs),
    /// Build and run the agent on this host (as root): `cargo xtask run -- agent --bond bond0`.
    Run(run::RunArgs),
    /// Benchmarks against the baselines (reader hot path on the host; failover latency vs rtnetlink and
    /// polling, veto overhead, footprint in the VM): a table, `<target dir>/bench/bench.json` and an SVG.
    Bench(bench::BenchArgs),
    /// The kernel's own bonding selftests on each kernel, in two VMs at once: a baseline and one with the
    /// agent live managing a bond; any verdict that differs fails (part of `cargo xtask test`).
    Selftests(selftests::SelftestsArgs),
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let r = match cli.command {
        Command::Setup(a) => setup::run(&a),
        Command::Build { release } => cargo::build_all(release).map(|_| ()),
        Command::Test(a) => test::run(&a),
        Command::Vm(a) => vm::run(&a),
        Command::Demo(a) => demo::run(&a),
        Command::Run(a) => run::run(&a),
        Command::Bench(a) => bench::run(&a),
        Command::Selftests(a) => selftests::run(&a),
    };
    match r {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
