//! `cargo xtask bench`: exabond against its baselines, side by side in the same run.
//!
//! - Reader hot path (host, criterion): `PageReader::changed()` against a bare atomic load of the same
//!   word, `snapshot()` uncontended and with a writer at full rate on another core.
//! - In the VM (`exabond-e2e bench`): failover → visible (spinning page reader, the agent's publication,
//!   a plain rtnetlink listener, a 10 ms sysfs poller) for the agent's default configuration and with
//!   `--busy-poll`; veto overhead (LSM attached vs not); footprint and scale (64 bonds).
//! - The 1 s poll of libvma/XLIO is computed (uniform phase), not measured.
//!
//! Prints one table, writes `<target dir>/bench/bench.json` (every figure), `vm-<kernel>.json` (raw
//! samples) and `failover-cdf-<kernel>.svg`. The VM is emulated (TCG): absolute microseconds are inflated,
//! ratios are what count. Nothing here fails on a missed goal; a bench that produces no result fails.
//!
//! Files: `criterion.rs` (the host benches), `vm.rs` (the VM boots), `failover.rs`, `veto.rs` and
//! `footprint.rs` (the figures of the VM's results), `stats.rs` (percentiles), `plot.rs` (the SVG),
//! `report.rs` (the table and bench.json); this file runs them in order.

mod baseline;
mod criterion;
mod failover;
mod footprint;
mod plot;
mod report;
mod stats;
mod veto;
mod vm;

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use self::report::Report;
use crate::cargo::{build_all, target_dir};
use crate::setup::{kernels, testbed};
use crate::stage::{stage, stage_dir};

/// Arguments of `cargo xtask bench`.
#[derive(clap::Args)]
#[expect(clippy::struct_excessive_bools, reason = "command-line flags")]
pub struct BenchArgs {
    /// VM kernels: bpo (6.12), stable (6.1) or all.
    #[arg(long, default_value = "bpo")]
    pub kernel: String,
    /// A quick run that only proves the benches work (12 failovers, 8 bonds, 3 s idle, short criterion).
    #[arg(long)]
    pub smoke: bool,
    /// Skip the criterion reader benches (host).
    #[arg(long)]
    pub no_criterion: bool,
    /// vCPUs of the main VM boot (the test bed's TB_SMP): the page reader's own CPU and one for everything
    /// else. Every vCPU is a host thread: more spinning vCPUs than host cores distort the figures.
    #[arg(long, default_value_t = 2)]
    #[expect(clippy::doc_markdown, reason = "the doc comment is the --help text, kept as it is")]
    pub smp: u32,
    /// vCPUs of the extra VM boot that measures `--busy-poll` (a core of its own for the spinning agent
    /// thread); 0 = measure it in the main boot. Ignored with --smoke (one boot).
    #[arg(long, default_value_t = 3)]
    pub busy_smp: u32,
    /// Failovers per agent configuration (default: 210, or 12 with --smoke).
    #[arg(long)]
    pub failovers: Option<u32>,
    /// Only the failover bench in the VM (development).
    #[arg(long, hide = true)]
    pub failover_only: bool,
    /// Extra kernel command line for the VM (experiments, e.g. `preempt=full`).
    #[arg(long, hide = true, default_value = "")]
    pub append: String,
    /// Make the report again from the raw results of the last run (`vm-<kernel>.json`), without running.
    #[arg(long)]
    pub report_only: bool,
    /// The git revision of the baseline agent the footprint phase measures beside this one (built once,
    /// kept under `<target dir>/bench/baseline`). Default: the last commit before this round's work.
    #[arg(long, value_name = "REV", default_value = baseline::DEFAULT_REV)]
    pub baseline: String,
    /// No baseline agent in the footprint phase.
    #[arg(long)]
    pub no_baseline: bool,
}

impl BenchArgs {
    /// The smoke run's arguments.
    fn smoke_args() -> Self {
        Self {
            kernel: "bpo".into(),
            smoke: true,
            no_criterion: false,
            smp: 2,
            busy_smp: 3,
            failovers: None,
            failover_only: false,
            report_only: false,
            append: String::new(),
            baseline: baseline::DEFAULT_REV.to_owned(),
            no_baseline: true,
        }
    }
}

/// Run the benches; `Ok` when every bench produced its figures (goals are reported, never enforced).
pub fn run(args: &BenchArgs) -> anyhow::Result<()> {
    let ks = kernels(&args.kernel)?;
    if !args.report_only {
        crate::setup::tools()?;
        testbed(&ks)?;
    }
    let out = out_dir(args.smoke);
    std::fs::create_dir_all(&out)?;
    let mut report = Report::default();
    let reader = match (args.report_only, args.no_criterion) {
        (true, _) => criterion::reader_rows(args.smoke, &mut report.rows),
        (false, false) => {
            criterion::criterion(args.smoke).and_then(|()| criterion::reader_rows(args.smoke, &mut report.rows))
        }
        (false, true) => Ok(()),
    };
    if let Err(e) = reader {
        report.problems.push(format!("reader benches: {e:#}"));
    }
    let dir = if args.report_only { stage_dir() } else { stage(&build_all(true)?, None)? };
    // The baseline agent beside this one in the footprint phase (full runs only).
    let base = if args.report_only || args.smoke || args.no_baseline || args.failover_only {
        None
    } else {
        match baseline::build(&args.baseline) {
            Ok(bin) => {
                std::fs::copy(&bin, dir.join("exabond-baseline")).context("staging the baseline agent")?;
                Some("exabond-baseline")
            }
            Err(e) => {
                report.problems.push(format!("baseline agent: {e:#} (the footprint phase measures this agent alone)"));
                None
            }
        }
    };
    let boots = vm::boots(args, base);
    // The emulated CPUs are host threads: other work on the host shows up as guest latency. The VM inherits
    // a higher priority from this process for the bench (best effort; needs root).
    let boosted = !args.report_only && vm::renice(vm::VM_NICE);
    let host_load = if args.report_only { "n/a (report only)".to_owned() } else { report::host_load() };
    for k in &ks {
        let kept = out.join(format!("vm-{k}.json"));
        let bytes = if args.report_only {
            std::fs::read(&kept).with_context(|| format!("--report-only: reading {}", kept.display()))?
        } else {
            let Some(m) = vm::run_boots(k, args, &dir, &boots, &mut report.problems)? else { continue };
            let bytes = serde_json::to_vec_pretty(&m)?;
            std::fs::write(&kept, &bytes)?;
            bytes
        };
        let v: Value = serde_json::from_slice(&bytes).with_context(|| format!("parsing {}", kept.display()))?;
        kernel_figures(k, &v, &out, &mut report);
    }
    if boosted {
        vm::renice(0);
    }
    report.finish(&out, args.smoke, &host_load)
}

/// The figures of kernel `k` from its VM results `v`, and its plot in `out`.
fn kernel_figures(k: &str, v: &Value, out: &Path, report: &mut Report) {
    let kernel = v["kernel"].as_str().unwrap_or(k).to_owned();
    report.kernels.push(json!({ "flavour": k, "release": kernel, "cpus": v["cpus"] }));
    let mut series = Vec::new();
    if let Some(cfgs) = v["failover"].as_object() {
        // The default configuration first, then the others in the order the VM ran them.
        let mut names: Vec<&String> = cfgs.keys().collect();
        names.sort_by_key(|n| (n.as_str() != "default", n.starts_with("busy")));
        for name in names {
            let mut cfg = cfgs[name].clone();
            if cfg["cpus"].is_null() {
                cfg["cpus"] = v["cpus"].clone();
            }
            failover::failover_rows(k, name, &cfg, &mut report.rows, &mut series);
        }
    }
    if series.is_empty() {
        report.problems.push(format!("{k}: no failover results"));
    }
    report.rows.push(failover::vma_row(k));
    if v["veto"].is_null() {
        report.problems.push(format!("{k}: no veto results"));
    } else {
        veto::veto_rows(k, &v["veto"], &mut report.rows);
    }
    if v["footprint"].is_null() {
        report.problems.push(format!("{k}: no footprint results"));
    } else {
        footprint::footprint_rows(k, &v["footprint"], &mut report.rows);
    }
    if !series.is_empty() {
        let svg = out.join(format!("failover-cdf-{k}.svg"));
        let title = format!("exabond: failover → seen, Debian {kernel} under qemu TCG (ratios count, not µs)");
        match plot::plot(&svg, &title, &series) {
            Ok(()) => report.svgs.push(svg),
            Err(e) => report.problems.push(format!("{e:#}")),
        }
    }
}

/// Where the results go: `<target dir>/bench`, or `<target dir>/bench/smoke` for a smoke run (so that
/// `cargo xtask test` leaves the last full run's figures alone).
fn out_dir(smoke: bool) -> PathBuf {
    let d = target_dir().join("bench");
    if smoke {
        d.join("smoke")
    } else {
        d
    }
}

/// The smoke run `cargo xtask test` includes: the benches must run and write their JSON and SVG (timing
/// goals are never asserted).
pub fn smoke() -> anyhow::Result<PathBuf> {
    let out = out_dir(true);
    let _ = std::fs::remove_dir_all(&out);
    run(&BenchArgs::smoke_args())?;
    let p = out.join("bench.json");
    if !p.exists() || !out.join("failover-cdf-bpo.svg").exists() {
        bail!("the smoke bench did not write {} and its SVG", p.display());
    }
    Ok(p)
}
