//! exabond's real-kernel end-to-end suite and demo. Runs as root inside the VM test bed:
//!
//! `exabond-e2e test [--exabond PATH]` runs the suite and ends with `e2e: N passed, M failed`;
//! `exabond-e2e demo [--exabond PATH]` narrates the same scenario for a person.

mod lab;
mod scenario;
mod suite;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_default();
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
    match mode.as_str() {
        "test" => scenario::run(&exabond, false),
        "demo" => scenario::run(&exabond, true),
        _ => {
            eprintln!("usage: exabond-e2e test|demo [--exabond PATH]");
            ExitCode::from(2)
        }
    }
}
