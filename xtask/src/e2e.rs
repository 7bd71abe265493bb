//! The end-to-end suite in the VM: build, stage and run it on each kernel (with the BPF LSM, and without
//! it for the groups that need that), and the per-kernel report.

use crate::cargo::build_all;
use crate::setup::{kernels, testbed};
use crate::stage::{stage, stage_other_build};
use crate::vm_run::{is_kernel_crash, run_script, VmRun, NO_BPF_LSM};

/// Build, stage and run the end-to-end suite on each kernel.
pub fn e2e(kernel_arg: &str, only: Option<&str>) -> anyhow::Result<Vec<VmRun>> {
    let ks = kernels(kernel_arg)?;
    testbed(&ks)?;
    let dir = stage(&build_all(true)?, only)?;
    stage_other_build(&dir)?;
    let mut runs = Vec::new();
    for k in &ks {
        runs.push(run_script(k, "", &dir, "e2e-test.sh", false)?);
        if only.is_none_or(|o| o.split(',').any(|p| ["enforce", "pages"].iter().any(|g| g.contains(p)))) {
            runs.push(run_script(k, NO_BPF_LSM, &dir, "e2e-nolsm.sh", false)?);
        }
    }
    Ok(runs)
}

/// Print the per-kernel table.
pub fn report(runs: &[VmRun]) {
    println!("\n== end-to-end results ==");
    for r in runs {
        let kernel = if r.kernel.is_empty() { "(did not boot)" } else { &r.kernel };
        match r.counts {
            Some((p, f)) => println!("{:<13} {kernel:<24} {p} passed, {f} failed (exit {})", r.flavour, r.rc),
            None => {
                println!(
                    "{:<13} {kernel:<24} NO RESULT: the VM failed or the suite crashed (exit {})",
                    r.flavour, r.rc
                );
            }
        }
        for l in r.lines.iter().filter(|l| l.starts_with("E2E FAIL") || is_kernel_crash(l)) {
            println!("        {l}");
        }
    }
}
