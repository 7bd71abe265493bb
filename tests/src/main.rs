//! exabond's real-kernel end-to-end suite and demo. Runs as root inside the VM test bed:
//!
//! `exabond-e2e test [--exabond PATH]` runs the suite and ends with `e2e: N passed, M failed`;
//! `exabond-e2e test-nolsm` runs the detect-and-revert suite (kernel booted without the BPF LSM);
//! `exabond-e2e demo [--exabond PATH]` narrates the failover scenario for a person.
//! `exabond-e2e bench [--smoke] ...` runs the in-VM benchmarks of `cargo xtask bench` (see bench.rs).

mod bench;
mod bpf_map;
mod enforce;
mod enforce_repair;
mod fast;
mod hostile;
mod hostile_io;
mod hostile_ioctl;
mod hostile_ns;
mod hostile_rtnl;
mod hostile_sysfs;
mod lab;
mod monitor;
mod operate;
mod pages;
mod reload;
mod rtnl_raw;
mod scenario;
mod smartnic;
mod suite;
mod syscalls;

use std::path::PathBuf;
use std::process::ExitCode;

/// One group of the suite: runs its checks into the suite.
type Group<'a> = dyn Fn(&mut suite::Suite) + 'a;

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
        if let ("--exabond", Some(p)) = (a.as_str(), args.next()) {
            exabond = PathBuf::from(p);
        } else {
            eprintln!("usage: exabond-e2e test|demo [--exabond PATH]");
            return ExitCode::from(2);
        }
    }
    if !std::path::Path::new("/sys/module/bonding").exists() && lab::sh("modprobe bonding max_bonds=0").is_err() {
        eprintln!("exabond-e2e: no bonding driver here: run it in the VM test bed (cargo xtask test)");
        return ExitCode::FAILURE;
    }
    let kernel = lab::sh("uname -r").unwrap_or_default();
    println!("E2E KERNEL {kernel}");
    let mut s = suite::Suite::default();
    // `cargo xtask test --only PATTERN[,PATTERN]`: the groups whose name contains one of them.
    let only = std::env::var("EXABOND_E2E_ONLY").unwrap_or_default();
    let on = |group: &str| only.split(',').any(|p| group.contains(p));
    match mode.as_str() {
        "test" => {
            // `reload` last: it unloads the bonding module.
            let groups: [(&str, &Group); 9] = [
                ("scenario", &|s| scenario::run(&exabond, false, s)),
                ("monitor", &|s| monitor::run(&exabond, s)),
                ("enforce", &|s| enforce::run(&exabond, s)),
                ("operate", &|s| operate::run(&exabond, s)),
                ("pages", &|s| pages::run(&exabond, s)),
                ("fast", &|s| fast::run(&exabond, s)),
                ("smartnic", &|s| smartnic::run(&exabond, s)),
                ("hostile", &|s| hostile::run(&exabond, s)),
                ("reload", &|s| reload::run(&exabond, s)),
            ];
            for (name, group) in groups {
                if on(name) {
                    group(&mut s);
                }
            }
        }
        "test-nolsm" => {
            if on("enforce") {
                enforce::run_nolsm(&exabond, &mut s);
            }
            if on("pages") {
                pages::run_nolsm(&exabond, &mut s);
            }
        }
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
