//! exabond's real-kernel end-to-end suite and demo. Runs as root inside the VM test bed:
//!
//! `exabond-e2e test [--exabond PATH]` runs the suite and ends with `e2e: N passed, M failed`;
//! `exabond-e2e test-nolsm` runs the detect-and-revert suite (kernel booted without the BPF LSM);
//! `exabond-e2e demo [--exabond PATH]` narrates the failover scenario for a person.
//! `exabond-e2e bench [--smoke] ...` runs the in-VM benchmarks of `cargo xtask bench` (see bench.rs).

mod bench;
mod enforce;
mod lab;
mod monitor;
mod operate;
mod scenario;
mod suite;
mod syscalls;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
    if mode == "bench" || mode == "bench-reader" {
        return bench::main(&mode, args.collect());
    }
    let mut exabond = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("exabond")))
        .unwrap_or_else(|| PathBuf::from("exabond"));
    while let Some(a) = args.next() {
        match (a.as_str(), args.next()) {
            ("--exabond", Some(p)) => exabond = PathBuf::from(p),
            _ => {
                eprintln!("usage: exabond-e2e test|demo [--exabond PATH]");
                return ExitCode::from(2);
            }
        }
    }
    if !std::path::Path::new("/sys/module/bonding").exists() && lab::sh("modprobe bonding max_bonds=0").is_err() {
        eprintln!("exabond-e2e: no bonding driver here: run it in the VM test bed (cargo xtask test)");
        return ExitCode::FAILURE;
    }
    let kernel = lab::sh("uname -r").unwrap_or_default();
    println!("E2E KERNEL {kernel}");
    let mut s = suite::Suite::default();
    match mode.as_str() {
        "test" => {
            scenario::run(&exabond, false, &mut s);
            monitor::run(&exabond, &mut s);
            enforce::run(&exabond, &mut s);
            operate::run(&exabond, &mut s);
        }
        "test-nolsm" => enforce::run_nolsm(&exabond, &mut s),
        "demo" => scenario::run(&exabond, true, &mut s),
        _ => {
            eprintln!("usage: exabond-e2e test|test-nolsm|demo [--exabond PATH]");
            return ExitCode::from(2);
        }
    }
    println!("{}", s.summary());
    if s.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
