//! `cargo xtask demo`: the main job, shown to a person — a VM with a real bond, the agent, failovers seen
//! by a reader process, with latencies.

use anyhow::bail;

use crate::cargo::build_all;
use crate::setup::{kernels, testbed};
use crate::stage::stage;
use crate::vm_run::run_script;

/// Arguments of `cargo xtask demo`.
#[derive(clap::Args)]
pub struct DemoArgs {
    /// bpo (Debian 6.12 backports) or stable (Debian 6.1).
    #[arg(long, default_value = "bpo")]
    pub kernel: String,
}

/// Run the demo.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    crate::setup::tools()?;
    let ks = kernels(&args.kernel)?;
    testbed(&ks)?;
    let dir = stage(&build_all(true)?, None)?;
    println!(
        "Booting Debian {} under qemu; inside: bond0 (active-backup, 2 veth), the exabond agent, reader processes.",
        ks[0]
    );
    let r = run_script(ks[0], "", &dir, "e2e-demo.sh", false)?;
    if !r.ok() {
        bail!("the demo did not complete (exit {})", r.rc);
    }
    Ok(())
}
