//! The benches in the VM: the boots of a run (`exabond-e2e bench` with its arguments and vCPUs), their
//! results merged, and the VM's host priority.

use std::path::Path;

use serde_json::Value;

use super::BenchArgs;
use crate::vm_run::run_script_env;

/// One VM boot of the bench: what it runs, on how many vCPUs, in which TCG mode.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Boot {
    /// What the report calls it.
    pub label: &'static str,
    /// The arguments of `exabond-e2e bench`.
    pub args: String,
    /// vCPUs.
    pub smp: u32,
    /// `TB_TCG_THREAD`: `multi` only for what needs vCPUs that really run in parallel (a reader spinning
    /// on its own CPU); `single` for everything that attaches or detaches programs again and again
    /// (patching kernel text under multi-threaded TCG can leave a vCPU executing a stale `int3`: a guest
    /// panic, see `TB_TCG_THREAD` in xtask/vm/testbed.sh).
    pub tcg: &'static str,
}

/// The VM boots of a run. Full run: the failover latencies (the default configuration and the previous
/// single waiter) in a multi-threaded boot of `--smp` vCPUs, `--busy-poll` in one with an extra vCPU, and
/// the phases that attach and detach programs over and over (veto overhead, footprint with the baseline
/// agent beside this one) in a single-threaded boot. The smoke run (part of `cargo xtask test`) is one
/// single-threaded boot that only proves the harness works.
pub(super) fn boots(args: &BenchArgs, baseline: Option<&str>) -> Vec<Boot> {
    let failovers = args.failovers.map(|n| format!(" --failovers {n} --default-failovers {n}")).unwrap_or_default();
    if args.smoke {
        return vec![Boot { label: "smoke", args: format!(" --smoke{failovers}"), smp: args.smp, tcg: "single" }];
    }
    let main_configs = if args.busy_smp == 0 { "single_waiter,default,busy_poll" } else { "single_waiter,default" };
    let mut v = vec![Boot {
        label: "failover",
        args: format!("{failovers} --phases failover --configs {main_configs}"),
        smp: args.smp,
        tcg: "multi",
    }];
    if args.busy_smp != 0 {
        v.push(Boot {
            label: "failover busy_poll",
            args: format!("{failovers} --phases failover --configs busy_poll"),
            smp: args.busy_smp,
            tcg: "multi",
        });
    }
    if !args.failover_only {
        let base = baseline.map(|b| format!(" --baseline ./{b}")).unwrap_or_default();
        v.push(Boot {
            label: "veto + footprint",
            args: format!(" --phases veto,footprint{base}"),
            smp: args.smp,
            tcg: "single",
        });
    }
    v
}

/// The phase a boot was in when it stopped: the last `E2E BENCH PHASE <name> START` with no `END`.
pub(super) fn dead_phase(lines: &[String]) -> Option<String> {
    let mut open: Option<String> = None;
    for l in lines {
        if let Some(rest) = l.strip_prefix("E2E BENCH PHASE ") {
            if let Some(name) = rest.strip_suffix(" START") {
                open = Some(name.to_owned());
            } else if rest.ends_with(" END") {
                open = None;
            }
        }
    }
    open
}

/// Run `boots` on kernel `k` with the binaries staged in `dir`; the results of all boots merged (each
/// phase's figures come from the boot that ran it). A boot that dies is reported by the phase it was in
/// and its kernel log, and the others still give their figures. `None` when no boot produced results.
pub(super) fn run_boots(
    k: &str,
    args: &BenchArgs,
    dir: &Path,
    boots: &[Boot],
    problems: &mut Vec<String>,
) -> anyhow::Result<Option<Value>> {
    let mut merged: Option<Value> = None;
    for (n, boot) in boots.iter().enumerate() {
        let script = format!("e2e-bench-run-{n}.sh");
        std::fs::write(
            dir.join(&script),
            format!(
                "#!/bin/sh\n# Written by cargo xtask bench; runs in the guest.\ncd \"$(dirname \"$0\")\"\nexec ./exabond-e2e bench{} --exabond \"$PWD/exabond\"\n",
                boot.args
            ),
        )?;
        let res = dir.join("bench-out");
        let _ = std::fs::remove_dir_all(&res);
        println!("== bench boot {} ({k}): {} vCPUs, {}-threaded TCG", boot.label, boot.smp, boot.tcg);
        let env = [
            ("TB_SMP", boot.smp.to_string()),
            ("TB_TIMEOUT", "3000".to_owned()),
            ("TB_TCG_THREAD", boot.tcg.to_owned()),
        ];
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let run = run_script_env(k, &args.append, dir, &script, false, &env)?;
        if !run.ok() {
            let crash: Vec<&String> = run.lines.iter().filter(|l| crate::vm_run::is_kernel_crash(l)).collect();
            let failed: Vec<&String> = run.lines.iter().filter(|l| l.starts_with("E2E FAIL")).collect();
            let what = match dead_phase(&run.lines) {
                Some(p) => format!("phase {p} died"),
                None => "a phase failed".to_owned(),
            };
            problems.push(format!(
                "{k}, boot {}: {what} (exit {}); failures {failed:?}; kernel log {crash:?}",
                boot.label, run.rc
            ));
        }
        let raw = res.join("vm.json");
        let Some(v) = std::fs::read(&raw).ok().and_then(|b| serde_json::from_slice::<Value>(&b).ok()) else {
            problems.push(format!("{k}, boot {}: no results ({} absent)", boot.label, raw.display()));
            continue;
        };
        match merged.as_mut() {
            None => merged = Some(v),
            Some(m) => merge(m, &v),
        }
    }
    Ok(merged)
}

/// Fold the results of one boot into the merged ones: its failover configurations, and the veto and
/// footprint figures if it has them.
pub(super) fn merge(m: &mut Value, v: &Value) {
    if let (Some(dst), Some(src)) = (m["failover"].as_object_mut(), v["failover"].as_object()) {
        dst.extend(src.clone());
    }
    for key in ["veto", "footprint"] {
        if !v[key].is_null() {
            m[key] = v[key].clone();
        }
    }
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
    fn program_patching_phases_run_single_threaded() {
        let smoke = boots(&args(true, 3, None), None);
        assert_eq!(smoke.len(), 1);
        assert_eq!((smoke[0].args.as_str(), smoke[0].tcg), (" --smoke", "single"));
        let full = boots(&args(false, 3, None), Some("exabond-baseline"));
        assert_eq!(
            full.iter().map(|b| (b.label, b.smp, b.tcg)).collect::<Vec<_>>(),
            [("failover", 2, "multi"), ("failover busy_poll", 3, "multi"), ("veto + footprint", 2, "single"),]
        );
        assert!(full[2].args.contains("--phases veto,footprint --baseline ./exabond-baseline"));
        let one = boots(&args(false, 0, Some(5)), None);
        assert_eq!(
            one[0].args,
            " --failovers 5 --default-failovers 5 --phases failover --configs single_waiter,default,busy_poll"
        );
        assert_eq!(one.len(), 2);
    }

    #[test]
    fn a_dead_boot_names_its_phase() {
        let l = |s: &str| s.to_owned();
        let lines =
            [l("E2E BENCH PHASE veto START"), l("E2E BENCH PHASE veto END"), l("E2E BENCH PHASE footprint START")];
        assert_eq!(dead_phase(&lines).as_deref(), Some("footprint"));
        assert_eq!(dead_phase(&lines[..2]), None);
        let mut m = serde_json::json!({ "failover": { "default": 1 }, "veto": null, "footprint": null });
        merge(&mut m, &serde_json::json!({ "failover": { "busy_poll": 2 }, "veto": { "x": 1 }, "footprint": null }));
        assert_eq!(m["failover"], serde_json::json!({ "default": 1, "busy_poll": 2 }));
        assert_eq!(m["veto"]["x"], 1);
        assert!(m["footprint"].is_null());
    }
}
