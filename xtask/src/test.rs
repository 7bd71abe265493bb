//! `cargo xtask test`: host unit tests, then the end-to-end suite on both VM kernels. Any failure, and a VM
//! that cannot boot, fails the whole run.

use anyhow::bail;

use crate::cargo::{cargo, run_cmd};
use crate::e2e::{e2e, report};
use crate::vm_run::VmRun;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// VM kernels: bpo (6.12), stable (6.1) or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Run only the end-to-end groups whose name contains PATTERN, or one of a comma-separated list
    /// (scenario, monitor, enforce, operate, pages, smartnic, hostile; the boots without the BPF LSM run enforce and
    /// pages), and skip the host tests and the bench smoke: one group on one kernel in a few minutes, for
    /// development. CI runs everything.
    #[arg(long, value_name = "PATTERN")]
    pub only: Option<String>,
}

/// Run everything.
pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    crate::setup::run(&crate::setup::SetupArgs { kernel: args.kernel.clone(), tools_only: false })?;
    // Default members: the eBPF crate is built for its own target by the agent's build.rs, not for the host.
    if let Some(only) = &args.only {
        let runs = e2e(&args.kernel, Some(only))?;
        report(&runs);
        if !runs.iter().all(VmRun::ok) {
            bail!("the end-to-end suite failed on at least one kernel (--only {only})");
        }
        return Ok(());
    }
    run_cmd(cargo().arg("test"))?;
    let runs = e2e(&args.kernel, None)?;
    let (p, f) = runs.iter().fold((0, 0), |(p, f), r| {
        let (rp, rf) = r.counts.unwrap_or((0, 1));
        (p + rp, f + rf + u32::from(r.rc != 0 && rf == 0))
    });
    // The benches must keep working (one more VM boot, bpo): a smoke run that has to write its JSON;
    // timing goals are never asserted.
    let smoke = crate::bench::smoke();
    // The verdicts come last, so the tail of a long CI log names what failed.
    report(&runs);
    println!("vm: {p} passed, {f} failed");
    match &smoke {
        Ok(p) => println!("bench smoke: ok ({})", p.display()),
        Err(e) => println!("bench smoke: FAILED: {e:#}"),
    }
    if !runs.iter().all(VmRun::ok) {
        bail!("the end-to-end suite failed on at least one kernel");
    }
    if smoke.is_err() {
        bail!("the bench smoke run failed (see above)");
    }
    Ok(())
}
