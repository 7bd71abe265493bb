//! `exabond-e2e bench`: the in-VM half of `cargo xtask bench`. Runs, as its `--phases` say, the failover
//! latency bench for each agent configuration (default: event waiters blocked in poll(2); the previous
//! single waiter; `--busy-poll`), the veto overhead and the footprint/scale bench (the agent, and beside it
//! a baseline build given by `--baseline`), and writes every raw sample to `OUT/vm.json` (the host
//! computes the figures) after each phase, so a boot that dies later keeps what it measured. Each phase
//! is framed by `E2E BENCH PHASE <name> START` / `END` lines: the host names the phase a dead boot was in.
//! Benchmarks, not tests: nothing here asserts a timing goal; a sub-bench that cannot run is a failure.
//!
//! `exabond-e2e bench [--exabond PATH] [--out DIR] [--smoke] [--failovers N] [--default-failovers N]
//! [--bonds N] [--idle-s S] [--configs single_waiter,default,busy_poll] [--phases failover,veto,footprint]
//! [--baseline PATH]` (`exabond-e2e bench-reader` is the spinning reader process the failover bench starts).

mod failover;
mod footprint;
mod netlink;
mod veto;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use serde_json::{json, Value};

use crate::suite::Suite;

/// Page directory of the bench agents.
const PAGE_DIR: &str = "/run/exabond";

/// An agent configuration of the failover bench: name, agent arguments, environment variable.
type Config<'a> = (&'a str, Vec<&'a str>, Option<(&'a str, &'a str)>);

/// Options of the bench run.
struct Opts {
    exabond: PathBuf,
    out: PathBuf,
    failovers: usize,
    /// Failovers of the default configuration (its fast-word goal is graded on at least 1000).
    default_failovers: usize,
    bonds: usize,
    idle: Duration,
    veto: veto::Sizes,
    smoke: bool,
    /// Phases to run: `failover`, `veto`, `footprint` (all when empty).
    phases: Vec<String>,
    /// Agent configurations of the failover bench to run (all when empty).
    only: Vec<String>,
    /// A baseline agent measured beside this one in the footprint phase.
    baseline: Option<PathBuf>,
}

impl Opts {
    fn phase(&self, name: &str) -> bool {
        self.phases.is_empty() || self.phases.iter().any(|p| p == name)
    }
}

fn parse(args: Vec<String>) -> Result<Opts, String> {
    let mut o = Opts {
        exabond: std::env::current_exe()
            .ok()
            .and_then(|p| p.parent().map(|d| d.join("exabond")))
            .unwrap_or_else(|| PathBuf::from("exabond")),
        out: PathBuf::from("bench-out"),
        failovers: 210,
        default_failovers: 1000,
        bonds: 64,
        idle: Duration::from_secs(60),
        veto: veto::Sizes { rounds: 4, batches: 15, ops: 20_000 },
        smoke: false,
        phases: Vec::new(),
        only: Vec::new(),
        baseline: None,
    };
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        let mut val = || it.next().ok_or_else(|| format!("{a} needs a value"));
        match a.as_str() {
            "--smoke" => {
                o.smoke = true;
                o.failovers = 12;
                o.default_failovers = 12;
                o.bonds = 8;
                o.idle = Duration::from_secs(3);
                o.veto = veto::Sizes { rounds: 1, batches: 3, ops: 5_000 };
            }
            "--failover-only" => o.phases = vec!["failover".into()],
            "--phases" => o.phases = val()?.split(',').map(str::to_owned).collect(),
            "--configs" => o.only = val()?.split(',').map(str::to_owned).collect(),
            "--baseline" => o.baseline = Some(PathBuf::from(val()?)),
            "--default-failovers" => {
                o.default_failovers = val()?.parse().map_err(|e| format!("--default-failovers: {e}"))?;
            }
            "--exabond" => o.exabond = PathBuf::from(val()?),
            "--out" => o.out = PathBuf::from(val()?),
            "--failovers" => o.failovers = val()?.parse().map_err(|e| format!("--failovers: {e}"))?,
            "--bonds" => o.bonds = val()?.parse().map_err(|e| format!("--bonds: {e}"))?,
            "--idle-s" => o.idle = Duration::from_secs(val()?.parse().map_err(|e| format!("--idle-s: {e}"))?),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    Ok(o)
}

/// The `p`-th percentile (nearest rank) of `v` (sorted in place); NaN when empty.
#[expect(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "nearest rank: a sample count far below 2^52, a rank rounded up then clamped into 1..=len"
)]
pub fn percentile(v: &mut [f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    v[rank.clamp(1, v.len()) - 1]
}

/// Pin the calling thread to `cpu` (best effort).
pub fn pin_to(cpu: usize) {
    set_affinity(&[cpu]);
}

/// Restrict the calling thread (and threads and processes it starts later) to `cpus` (best effort).
pub fn set_affinity(cpus: &[usize]) {
    // SAFETY: cpu_set_t is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &cpu in cpus.iter().filter(|&&c| c < libc::CPU_SETSIZE as usize) {
        // SAFETY: `set` is a valid cpu_set_t and `cpu` < CPU_SETSIZE.
        unsafe { libc::CPU_SET(cpu, &mut set) };
    }
    // SAFETY: pid 0 is the calling thread; `set` is a valid cpu_set_t of the size passed.
    let rc = unsafe { libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &raw const set) };
    if rc != 0 {
        eprintln!("(could not set the CPU affinity to {cpus:?}: {})", std::io::Error::last_os_error());
    }
}

/// Online CPUs (not the calling thread's affinity, which the failover bench narrows).
fn cpus() -> usize {
    // SAFETY: sysconf has no memory-safety preconditions.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Remove pins a previous agent may have left (the veto bench needs a known state).
fn clear_pins() {
    let dir = Path::new(exabond_common::policy_maps::PIN_DIR);
    if dir.exists() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

/// Run the bench (`mode` "bench"), or the spinning page reader process it starts ("bench-reader");
/// `args` are the arguments after the mode.
pub fn main(mode: &str, args: Vec<String>) -> ExitCode {
    if mode == "bench-reader" {
        return failover::reader_process(&args);
    }
    let o = match parse(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("exabond-e2e bench: {e}");
            return ExitCode::from(2);
        }
    };
    if crate::lab::sh("modprobe bonding max_bonds=0").is_err() && !Path::new("/sys/module/bonding").exists() {
        eprintln!("exabond-e2e: no bonding driver here: run it in the VM test bed (cargo xtask bench)");
        return ExitCode::FAILURE;
    }
    let kernel = crate::lab::sh("uname -r").unwrap_or_default();
    println!("E2E KERNEL {kernel}");
    clear_pins();
    let mut s = Suite::default();
    let last_cpu = cpus().saturating_sub(1).to_string();
    let configs: [Config<'_>; 3] = [
        ("single_waiter", vec![], Some(("EXABOND_EVENT_WAIT", "single"))),
        ("default", vec![], None),
        ("busy_poll", vec!["--busy-poll", last_cpu.as_str()], None),
    ];
    let mut doc = json!({
        "kernel": kernel,
        "cpus": cpus(),
        "smoke": o.smoke,
        "failover": {},
        "veto": null,
        "footprint": null,
    });
    let path = o.out.join("vm.json");
    let save = |doc: &Value| {
        std::fs::create_dir_all(&o.out)
            .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(doc).unwrap_or_default()))
    };
    if o.phase("failover") {
        for (name, args, env) in configs.iter().filter(|c| o.only.is_empty() || o.only.iter().any(|n| n == c.0)) {
            let n = if *name == "default" { o.default_failovers } else { o.failovers };
            println!("E2E BENCH PHASE failover-{name} START");
            println!("E2E BENCH failover latency, agent {name} {args:?} {env:?}: {n} failovers");
            let label = format!("bench: {n} failovers, agent {name}");
            if let Some((k, v)) = env {
                std::env::set_var(k, v);
            }
            let own_cpu = name.starts_with("busy");
            let r = s.check(&label, || failover::run(&o.exabond, args, own_cpu, n));
            if let Some((k, _)) = env {
                std::env::remove_var(k);
            }
            if let Some(v) = r {
                doc["failover"][*name] = json!({ "agent_args": args, "cpus": cpus(), "failovers": v });
            }
            let _ = save(&doc);
            println!("E2E BENCH PHASE failover-{name} END");
        }
    }
    if o.phase("veto") {
        clear_pins();
        println!("E2E BENCH PHASE veto START");
        println!("E2E BENCH veto overhead");
        let veto = s.check("bench: veto overhead (write(2), open+close; LSM attached vs not)", || {
            veto::run(&o.exabond, o.veto)
        });
        doc["veto"] = veto.unwrap_or(Value::Null);
        let _ = save(&doc);
        println!("E2E BENCH PHASE veto END");
    }
    if o.phase("footprint") {
        clear_pins();
        println!("E2E BENCH PHASE footprint START");
        println!("E2E BENCH footprint: {} bonds, {} s idle", o.bonds, o.idle.as_secs());
        let footprint = s.check(&format!("bench: footprint and scale, {} bonds", o.bonds), || {
            footprint::run(&o.exabond, o.baseline.as_deref(), o.bonds, o.idle)
        });
        doc["footprint"] = footprint.unwrap_or(Value::Null);
        let _ = save(&doc);
        println!("E2E BENCH PHASE footprint END");
    }
    let written = save(&doc);
    s.check(&format!("bench: results written to {}", path.display()), || written.map_err(anyhow::Error::from));
    println!("{}", s.summary());
    if s.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::float_cmp, reason = "a percentile is one of the samples, returned exactly")]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        assert_eq!(percentile(&mut v, 50.0), 50.0);
        assert_eq!(percentile(&mut v, 99.0), 99.0);
        assert_eq!(percentile(&mut v, 100.0), 100.0);
        assert!(percentile(&mut [], 50.0).is_nan());
    }

    #[test]
    fn options() {
        let o = parse(vec!["--smoke".into(), "--configs".into(), "default,busy_poll".into()]).unwrap();
        assert!(o.smoke && o.failovers == 12 && o.default_failovers == 12 && o.bonds == 8);
        assert_eq!(o.only, ["default", "busy_poll"]);
        assert!(o.phase("veto") && o.phase("failover"), "every phase by default");
        let o = parse(vec!["--phases".into(), "veto,footprint".into(), "--baseline".into(), "/x".into()]).unwrap();
        assert!(o.phase("veto") && o.phase("footprint") && !o.phase("failover"));
        assert_eq!(o.baseline.as_deref(), Some(Path::new("/x")));
        assert_eq!(o.default_failovers, 1000);
        assert!(parse(vec!["--bogus".into()]).is_err());
    }
}
