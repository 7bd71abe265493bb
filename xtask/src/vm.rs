//! `cargo xtask vm`: the VM test bed by hand — the end-to-end suite, a script, or a shell in the guest.

use std::path::PathBuf;

use anyhow::bail;

use crate::cargo::build_all;
use crate::e2e::{e2e, report};
use crate::setup::{kernels, testbed, testbed_cmd};
use crate::stage::stage;
use crate::vm_run::{run_script, VmRun};

/// Arguments of `cargo xtask vm`.
#[derive(clap::Args)]
pub struct VmArgs {
    #[command(subcommand)]
    cmd: VmCmd,
}

#[derive(clap::Subcommand)]
enum VmCmd {
    /// Run the end-to-end suite in the VM.
    Test {
        /// bpo (6.12), stable (6.1) or all.
        #[arg(long, default_value = "all")]
        kernel: String,
        /// Only the groups whose name contains PATTERN (see `cargo xtask test --help`).
        #[arg(long, value_name = "PATTERN")]
        only: Option<String>,
    },
    /// Run a shell script (path relative to the staged folder, <target dir>/vm) in the VM.
    Exec {
        /// bpo (6.12) or stable (6.1).
        #[arg(long, default_value = "bpo")]
        kernel: String,
        /// The script.
        script: PathBuf,
    },
    /// An interactive shell in the VM (serial console; `exit` powers off).
    Shell {
        /// bpo (6.12) or stable (6.1).
        #[arg(long, default_value = "bpo")]
        kernel: String,
    },
}

/// Run `cargo xtask vm ...`.
pub fn run(args: &VmArgs) -> anyhow::Result<()> {
    match &args.cmd {
        VmCmd::Test { kernel, only } => {
            let runs = e2e(kernel, only.as_deref())?;
            report(&runs);
            if runs.iter().all(VmRun::ok) {
                Ok(())
            } else {
                bail!("end-to-end suite failed (see above)")
            }
        }
        VmCmd::Exec { kernel, script } => {
            let ks = kernels(kernel)?;
            testbed(&ks)?;
            let dir = stage(&build_all(true)?, None)?;
            let r = run_script(ks[0], "", &dir, &script.to_string_lossy(), false)?;
            if r.rc != 0 {
                bail!("script exited {} in the VM", r.rc);
            }
            Ok(())
        }
        VmCmd::Shell { kernel } => {
            let ks = kernels(kernel)?;
            testbed(&ks)?;
            let dir = stage(&build_all(true)?, None)?;
            let st = testbed_cmd().args(["shell", ks[0]]).arg(&dir).status()?;
            if !st.success() {
                bail!("VM shell exited {st}");
            }
            Ok(())
        }
    }
}
