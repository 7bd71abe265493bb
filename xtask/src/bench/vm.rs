//! The benches in the VM: the boots of a run (`exabond-e2e bench` with its arguments and vCPUs), their
//! results merged, and the VM's host priority.

use std::path::Path;

use serde_json::Value;

use super::BenchArgs;
use crate::vm_run::run_script_env;

/// One VM boot: the arguments of `exabond-e2e bench` and the vCPUs.
pub(super) type Boot = (String, u32);

/// The VM boots of a run: the main one (`--smp` vCPUs: the reader's CPU and a housekeeping CPU), and for
/// the full run one with an extra vCPU for the busy-polling configuration, which needs a core of its own.
pub(super) fn boots(args: &BenchArgs) -> Vec<Boot> {
    let smoke = if args.smoke { " --smoke" } else { "" };
    let failovers = args.failovers.map(|n| format!(" --failovers {n}")).unwrap_or_default();
    let extra = format!("{smoke}{failovers}");
    let fo = if args.failover_only { " --failover-only" } else { "" };
    if args.smoke || args.busy_smp == 0 {
        vec![(format!("{extra}{fo}"), args.smp)]
    } else {
        vec![
            (format!("{extra} --configs single_waiter,default{fo}"), args.smp),
            (format!("{extra} --configs busy_poll --failover-only"), args.busy_smp),
        ]
    }
}

/// Run `boots` on kernel `k` with the binaries staged in `dir`; the failover results of the later boots
/// are merged into the first's. `None` when no boot produced results; what went wrong goes to `problems`.
pub(super) fn run_boots(
    k: &str,
    args: &BenchArgs,
    dir: &Path,
    boots: &[Boot],
    problems: &mut Vec<String>,
) -> anyhow::Result<Option<Value>> {
    let mut merged: Option<Value> = None;
    for (n, (bench_args, smp)) in boots.iter().enumerate() {
        let script = format!("e2e-bench-run-{n}.sh");
        std::fs::write(
            dir.join(&script),
            format!(
                "#!/bin/sh\n# Written by cargo xtask bench; runs in the guest.\ncd \"$(dirname \"$0\")\"\nexec ./exabond-e2e bench{bench_args} --exabond \"$PWD/exabond\"\n"
            ),
        )?;
        let res = dir.join("bench-out");
        let _ = std::fs::remove_dir_all(&res);
        // Multi-threaded TCG: the figures need vCPUs that run in parallel (a reader spinning on its own
        // CPU); see TB_TCG_THREAD in xtask/vm/testbed.sh for what that risks. The smoke run (part of
        // `cargo xtask test`) only proves the harness works: the coherent single-threaded mode.
        let tcg_thread = if args.smoke { "single" } else { "multi" };
        let env =
            [("TB_SMP", smp.to_string()), ("TB_TIMEOUT", "3000".to_owned()), ("TB_TCG_THREAD", tcg_thread.to_owned())];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = run_script_env(k, &args.append, dir, &script, false, &env)?;
        let raw = res.join("vm.json");
        let Some(v) = std::fs::read(&raw).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            problems.push(format!("{k}: the VM produced no {} (exit {})", raw.display(), run.rc));
            continue;
        };
        if !run.ok() {
            let failed: Vec<&String> = run.lines.iter().filter(|l| l.starts_with("E2E FAIL")).collect();
            problems.push(format!("{k}: a VM bench failed (exit {}): {failed:?}", run.rc));
        }
        match merged.as_mut() {
            None => merged = Some(v),
            Some(m) => {
                if let (Some(dst), Some(src)) = (m["failover"].as_object_mut(), v["failover"].as_object()) {
                    dst.extend(src.clone());
                }
            }
        }
    }
    Ok(merged)
}

/// Host nice value of the VM during the bench.
pub(super) const VM_NICE: i32 = -10;

/// Set this process's nice value (inherited by the VM it starts); whether it worked.
pub(super) fn renice(n: i32) -> bool {
    let pid = std::process::id().to_string();
    let ok = std::process::Command::new("renice")
        .args(["-n", &n.to_string(), "-p", &pid])
        .stdout(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok && n != 0 {
        eprintln!("(could not raise the VM's host priority: other load on the host will show in the figures)");
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(smoke: bool, busy_smp: u32, failovers: Option<u32>) -> BenchArgs {
        BenchArgs { smoke, busy_smp, failovers, ..BenchArgs::smoke_args() }
    }

    #[test]
    fn busy_poll_gets_a_boot_of_its_own_in_full_runs() {
        assert_eq!(boots(&args(true, 3, None)), [(" --smoke".to_owned(), 2)]);
        assert_eq!(boots(&args(false, 0, Some(5))), [(" --failovers 5".to_owned(), 2)]);
        assert_eq!(
            boots(&args(false, 3, None)),
            [
                (" --configs single_waiter,default".to_owned(), 2),
                (" --configs busy_poll --failover-only".to_owned(), 3)
            ]
        );
    }
}
