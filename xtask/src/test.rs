//! `cargo xtask test`: host unit tests, then the end-to-end suite on both VM kernels, then the kernel's own
//! bonding selftests with and without the agent. Any failure, and a VM that cannot boot, fails the whole run.

use anyhow::bail;

use crate::cargo::{cargo, run_cmd};
use crate::e2e::{e2e, report};
use crate::selftests::{self, selftests};
use crate::vm_run::VmRun;

/// Arguments of `cargo xtask test`.
#[derive(clap::Args)]
pub struct TestArgs {
    /// VM kernels: bpo (6.12), stable (6.1) or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Run only the end-to-end groups whose name contains PATTERN, or one of a comma-separated list
    /// (scenario, monitor, enforce, operate, pages, smartnic, hostile, reload; the boots without the BPF LSM run
    /// enforce and pages; `selftests`: the kernel's bonding selftests, see `cargo xtask selftests`), and skip
    /// the host tests and the bench smoke: one group on one kernel in a few minutes, for development. CI runs
    /// everything.
    #[arg(long, value_name = "PATTERN")]
    pub only: Option<String>,
}

/// Run everything.
pub fn run(args: &TestArgs) -> anyhow::Result<()> {
    crate::setup::run(&crate::setup::SetupArgs { kernel: args.kernel.clone(), tools_only: false })?;
    // Default members: the eBPF crate is built for its own target by the agent's build.rs, not for the host.
    if let Some(only) = &args.only {
        let (groups, with_selftests) = split_only(only);
        let runs = if groups.is_empty() { Vec::new() } else { e2e(&args.kernel, Some(&groups))? };
        let st = if with_selftests { selftests(&args.kernel, None, selftests::Mode::Agent)? } else { Vec::new() };
        if !runs.is_empty() {
            report(&runs);
        }
        if with_selftests {
            selftests::report(&st);
        }
        if !runs.iter().all(VmRun::ok) {
            bail!("the end-to-end suite failed on at least one kernel (--only {only})");
        }
        return selftests::verdict(&st);
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
    // The kernel's own bonding selftests, with and without the agent (about 12 minutes), but for what
    // only the full run (`cargo xtask selftests`, ~28 minutes) takes.
    let st = selftests::selftests_but(&args.kernel, None, selftests::Mode::Agent, selftests::LEFT_TO_FULL_RUN);
    // The verdicts come last, so the tail of a long CI log names what failed.
    report(&runs);
    println!("vm: {p} passed, {f} failed");
    match &smoke {
        Ok(p) => println!("bench smoke: ok ({})", p.display()),
        Err(e) => println!("bench smoke: FAILED: {e:#}"),
    }
    match &st {
        Ok(st) => selftests::report(st),
        Err(e) => println!("selftests: FAILED: {e:#}"),
    }
    if !runs.iter().all(VmRun::ok) {
        bail!("the end-to-end suite failed on at least one kernel");
    }
    if smoke.is_err() {
        bail!("the bench smoke run failed (see above)");
    }
    selftests::verdict(&st?)
}

/// `--only`'s list without `selftests`, and whether `selftests` was in it.
fn split_only(only: &str) -> (String, bool) {
    let (st, groups): (Vec<&str>, Vec<&str>) = only.split(',').partition(|g| *g == "selftests");
    (groups.join(","), !st.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_selftests_is_split_from_the_groups() {
        assert_eq!(split_only("selftests"), (String::new(), true));
        assert_eq!(split_only("pages,selftests,enforce"), ("pages,enforce".to_owned(), true));
        assert_eq!(split_only("pages"), ("pages".to_owned(), false));
    }
}
