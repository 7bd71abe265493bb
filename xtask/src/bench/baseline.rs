//! The baseline agent: the agent as it was before this round of performance work, built from its git
//! revision so that the footprint phase measures it beside this one, on the same guest, in the same boot.
//!
//! The source comes from `git archive <rev>` of this repository (a clean clone of main has the history),
//! unpacked under `<target dir>/bench/baseline/<rev>/src` and built there with
//! `cargo build --release -p exabond-agent` into `<target dir>/bench/baseline/target`; the binary is kept
//! per revision, so a second run reuses it.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{bail, Context as _};

use crate::cargo::{root, run_cmd, target_dir};

/// The last commit before the round-2 performance work (issue 13): what "today's agent" means in the
/// footprint comparison.
pub(super) const DEFAULT_REV: &str = "0b7fb87b1d74b797c584df10fbe6487144341d99";

/// Build (or reuse) the agent of revision `rev`; the path of its binary.
pub(super) fn build(rev: &str) -> anyhow::Result<PathBuf> {
    anyhow::ensure!(
        !rev.is_empty() && rev.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')),
        "--baseline {rev:?}: not a git revision"
    );
    let full = git(&["rev-parse", "--verify", &format!("{rev}^{{commit}}")]).with_context(|| {
        format!("--baseline {rev}: no such commit in {} (a clone without history?)", root().display())
    })?;
    let base = target_dir().join("bench/baseline");
    let bin = base.join(&full).join("exabond");
    if bin.exists() {
        return Ok(bin);
    }
    let src = base.join(&full).join("src");
    let _ = std::fs::remove_dir_all(&src);
    std::fs::create_dir_all(&src)?;
    eprintln!("[bench] building the baseline agent of {full} (a few minutes, once)");
    let archive = Command::new("git")
        .current_dir(root())
        .args(["archive", "--format=tar", &full])
        .stdout(Stdio::piped())
        .spawn()
        .context("git archive")?;
    let st = Command::new("tar")
        .arg("-x")
        .arg("-C")
        .arg(&src)
        .stdin(archive.stdout.context("git archive output")?)
        .status()
        .context("tar -x")?;
    if !st.success() {
        bail!("unpacking {full} failed ({st})");
    }
    run_cmd(
        Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .current_dir(&src)
            .env("CARGO_TARGET_DIR", base.join("target"))
            .args(["build", "--release", "--locked", "-p", "exabond-agent"]),
    )?;
    std::fs::copy(base.join("target/release/exabond"), &bin).context("keeping the baseline binary")?;
    let _ = std::fs::remove_dir_all(&src);
    Ok(bin)
}

fn git(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("git").current_dir(root()).args(args).output().context("git")?;
    if !out.status.success() {
        bail!("git {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}
