//! One VM run: boot a Debian kernel under qemu (xtask/vm/testbed.sh), run a script from the staged folder
//! inside, echo the console and collect the result.

use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;

use anyhow::Context as _;

use crate::setup::testbed_cmd;

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
    let echo = |line: &str| !quiet || line.starts_with("E2E") || line.starts_with("e2e:") || line.contains("TESTBED");
    run_boot(&Boot { label: &label, flavour, append, env }, dir, script, &echo)
}

/// One VM boot: its kernel flavour, the label its console lines are echoed with (boots that run at the
/// same time need different labels), extra kernel command line and test bed knobs.
pub struct Boot<'a> {
    /// Label of the console lines, and the run's `flavour`.
    pub label: &'a str,
    /// Kernel flavour (bpo, stable).
    pub flavour: &'a str,
    /// Extra kernel command line.
    pub append: &'a str,
    /// Extra environment for the test bed (its knobs, e.g. `TB_TIMEOUT`).
    pub env: &'a [(&'a str, &'a str)],
}

/// Boot as `boot` says, run `script` (relative to `dir`), echo the console lines `echo` accepts with the
/// boot's label, collect the result.
pub fn run_boot(boot: &Boot, dir: &Path, script: &str, echo: &dyn Fn(&str) -> bool) -> anyhow::Result<VmRun> {
    let Boot { label, flavour, append, env } = *boot;
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
    let mut run = VmRun { flavour: label.into(), kernel: String::new(), rc: 255, counts: None, lines: Vec::new() };
    for line in BufReader::new(out).lines() {
        let line = line?;
        let line = line.trim_end_matches('\r').to_owned();
        if echo(&line) {
            println!("[vm {label}] {line}");
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
    ["Oops:", "Kernel panic", "BUG:", "RIP: 0010:", "watchdog: BUG", "Call Trace:", "general protection fault"]
        .iter()
        .any(|k| line.contains(k))
}

/// `N passed, M failed`.
fn parse_counts(s: &str) -> Option<(u32, u32)> {
    let mut it = s.split(',').map(str::trim);
    let p = it.next()?.strip_suffix(" passed")?.parse().ok()?;
    let f = it.next()?.strip_suffix(" failed")?.parse().ok()?;
    Some((p, f))
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
