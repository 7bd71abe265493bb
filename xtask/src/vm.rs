//! The VM test bed: stage the binaries in a host folder shared with the guest, boot a Debian kernel under
//! qemu (xtask/vm/testbed.sh), run a script inside, collect its result.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};

use crate::cargo::{build_all, root, Binaries};
use crate::setup::{kernels, testbed, testbed_cmd};

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

/// The outcome of one VM run.
pub struct VmRun {
    /// Kernel flavour.
    pub flavour: String,
    /// `uname -r` in the guest.
    pub kernel: String,
    /// The script's exit code (255 = the VM failed).
    pub rc: i32,
    /// The `e2e: N passed, M failed` counts, if printed.
    pub counts: Option<(u32, u32)>,
    /// The `E2E ...` lines.
    pub lines: Vec<String>,
}

impl VmRun {
    /// Passed: exit 0 and a summary with no failure and at least one pass.
    pub fn ok(&self) -> bool {
        self.rc == 0 && matches!(self.counts, Some((p, 0)) if p > 0)
    }
}

/// The staging folder shared with the guest.
pub fn stage_dir() -> PathBuf {
    crate::cargo::target_dir().join("vm")
}

/// Copy the binaries into the staging folder and write the scripts the guest runs.
pub fn stage(bins: &Binaries, only: Option<&str>) -> anyhow::Result<PathBuf> {
    let dir = stage_dir();
    std::fs::create_dir_all(&dir)?;
    for (src, name) in [(&bins.exabond, "exabond"), (&bins.e2e, "exabond-e2e")] {
        let dst = dir.join(name);
        let _ = std::fs::remove_file(&dst);
        std::fs::copy(src, &dst).with_context(|| format!("staging {}", src.display()))?;
    }
    // The C examples, as a trading process would build them: one against libexabond, one against nothing
    // but the original 32-bit word.
    let src = root().join("exabond-reader-c");
    for (prog, with_lib) in [("trading_loop", true), ("legacy_reader", false)] {
        let mut cc = std::process::Command::new("cc");
        cc.args(["-std=c11", "-O2", "-Wall", "-Werror", "-I"]).arg(src.join("include")).arg("-o").arg(dir.join(prog));
        cc.arg(src.join(format!("examples/c/{prog}.c")));
        if with_lib {
            cc.arg(&bins.libexabond).args(["-lpthread", "-ldl", "-lm"]);
        }
        crate::cargo::run_cmd(&mut cc)?;
    }
    // The stand-in ExaNIC module (a test fixture) of each prepared kernel, as standin/<release>/.
    for flavour in ["bpo", "stable"] {
        let query = |what: &str| {
            testbed_cmd().args([what, flavour]).stderr(Stdio::null()).output().ok().filter(|o| o.status.success())
        };
        let (Some(kver), Some(ko)) = (query("kver"), query("standin")) else { continue };
        let to = dir.join("standin").join(String::from_utf8_lossy(&kver.stdout).trim());
        std::fs::create_dir_all(&to)?;
        std::fs::copy(String::from_utf8_lossy(&ko.stdout).trim(), to.join("exanic_standin.ko"))
            .context("staging the stand-in module")?;
    }
    // The suite's timeout scale (tests/src/lab.rs) reaches the guest through its script.
    let scale = match std::env::var("EXABOND_E2E_TIMEOUT_SCALE") {
        Ok(v) => {
            let k: u32 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("EXABOND_E2E_TIMEOUT_SCALE={v:?}: expected a whole number such as 3"))?;
            format!("export EXABOND_E2E_TIMEOUT_SCALE={k}\n")
        }
        Err(_) => String::new(),
    };
    let scale = match only {
        Some(o) if o.chars().all(|c| c.is_ascii_alphanumeric() || "-_,".contains(c)) => {
            format!("{scale}export EXABOND_E2E_ONLY={o}\n")
        }
        Some(o) => bail!("--only {o:?}: use group names such as pages or pages,smartnic"),
        None => scale,
    };
    for (name, mode) in [
        ("e2e-test.sh", "test"),
        ("e2e-nolsm.sh", "test-nolsm"),
        ("e2e-demo.sh", "demo"),
        ("e2e-bench.sh", "bench"),
        ("e2e-bench-smoke.sh", "bench --smoke"),
    ] {
        std::fs::write(
            dir.join(name),
            format!("#!/bin/sh\n# Written by cargo xtask; runs in the guest.\ncd \"$(dirname \"$0\")\"\n{scale}exec ./exabond-e2e {mode} --exabond \"$PWD/exabond\"\n"),
        )?;
    }
    Ok(dir)
}

/// A second, different build of the agent (the debug profile), staged as `exabond-other`: the suite
/// restarts the agent from it to show that an upgrade adopts the pages in place.
fn stage_other_build(dir: &Path) -> anyhow::Result<()> {
    crate::cargo::run_cmd(crate::cargo::cargo().args(["build", "-p", "exabond-agent"]))?;
    let src = crate::cargo::target_dir().join("debug/exabond");
    let dst = dir.join("exabond-other");
    let _ = std::fs::remove_file(&dst);
    std::fs::copy(&src, &dst).with_context(|| format!("staging {}", src.display()))?;
    Ok(())
}

/// Kernel command line of the boots without the BPF LSM (Debian's list minus `bpf`).
pub const NO_BPF_LSM: &str = "lsm=lockdown,capability,landlock,yama,apparmor";

/// Boot `flavour` (with extra kernel command line `append`), run `script` (relative to `dir`), echo the
/// console with a prefix, collect the result.
pub fn run_script(flavour: &str, append: &str, dir: &Path, script: &str, quiet: bool) -> anyhow::Result<VmRun> {
    run_script_env(flavour, append, dir, script, quiet, &[])
}

/// [`run_script`] with extra environment for the test bed (its knobs, e.g. `TB_SMP`).
pub fn run_script_env(
    flavour: &str,
    append: &str,
    dir: &Path,
    script: &str,
    quiet: bool,
    env: &[(&str, &str)],
) -> anyhow::Result<VmRun> {
    let label = if append.is_empty() { flavour.to_owned() } else { format!("{flavour}-nolsm") };
    let mut child = testbed_cmd()
        .envs(env.iter().copied())
        .env("TB_APPEND", append)
        .args(["run", flavour])
        .arg(dir)
        .arg(script)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .context("cannot start the VM test bed")?;
    let out = child.stdout.take().context("VM stdout")?;
    let flavour = label.as_str();
    let mut run = VmRun { flavour: flavour.into(), kernel: String::new(), rc: 255, counts: None, lines: Vec::new() };
    for line in BufReader::new(out).lines() {
        let line = line?;
        let line = line.trim_end_matches('\r').to_owned();
        if !quiet || line.starts_with("E2E") || line.starts_with("e2e:") || line.contains("TESTBED") {
            println!("[vm {flavour}] {line}");
        }
        if let Some(k) = line.strip_prefix("TESTBED-START ") {
            k.trim().clone_into(&mut run.kernel);
        }
        if let Some(rest) = line.strip_prefix("e2e: ") {
            run.counts = parse_counts(rest);
        }
        if line.starts_with("E2E") || is_kernel_crash(&line) {
            run.lines.push(line);
        }
    }
    let st = child.wait()?;
    run.rc = st.code().unwrap_or(255);
    Ok(run)
}

/// A guest console line that says the kernel crashed (kept for the final report).
pub fn is_kernel_crash(line: &str) -> bool {
    ["Oops:", "Kernel panic", "BUG:", "RIP: 0010:", "watchdog: BUG"].iter().any(|k| line.contains(k))
}

/// `N passed, M failed`.
fn parse_counts(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(',').map(str::trim);
    let p = it.next()?.strip_suffix(" passed")?.parse().ok()?;
    let f = it.next()?.strip_suffix(" failed")?.parse().ok()?;
    Some((p, f))
}

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

/// Run `cargo xtask vm ...`.
pub fn run(args: &VmArgs) -> anyhow::Result<()> {
    match &args.cmd {
        VmCmd::Test { kernel, only } => {
            let runs = e2e(kernel, only.as_deref())?;
            crate::test::report(&runs);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts() {
        assert_eq!(parse_counts("9 passed, 0 failed"), Some((9, 0)));
        assert_eq!(parse_counts("3 passed, 2 failed"), Some((3, 2)));
        assert_eq!(parse_counts("garbage"), None);
        let run = |rc, counts| VmRun { flavour: String::new(), kernel: String::new(), rc, counts, lines: vec![] };
        assert!(run(0, Some((9, 0))).ok());
        assert!(!run(0, Some((0, 0))).ok(), "a run with no test is not a pass");
        assert!(!run(0, None).ok(), "no summary (VM died) is not a pass");
        assert!(!run(255, Some((9, 0))).ok());
        assert!(!run(0, Some((8, 1))).ok());
    }
}
