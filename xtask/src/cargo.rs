//! Running cargo and other commands from xtask.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context as _};

/// The workspace root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("xtask lives in the workspace").to_owned()
}

/// The cargo target directory (`$CARGO_TARGET_DIR`, else `target/` in the workspace).
pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root().join("target"), PathBuf::from)
}

/// `$CARGO` or `cargo`.
pub fn cargo() -> Command {
    let mut c = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    c.current_dir(root());
    c
}

/// Run a command, echoing it; error if it fails.
pub fn run_cmd(cmd: &mut Command) -> anyhow::Result<()> {
    eprintln!("+ {}", show(cmd));
    let st = cmd.status().with_context(|| format!("cannot run {}", show(cmd)))?;
    if !st.success() {
        bail!("`{}` failed ({st})", show(cmd));
    }
    Ok(())
}

/// A command as a shell-like string.
pub fn show(cmd: &Command) -> String {
    std::iter::once(cmd.get_program().to_string_lossy().into_owned())
        .chain(cmd.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Binaries produced by [`build_all`].
pub struct Binaries {
    /// The agent/CLI.
    pub exabond: PathBuf,
    /// The end-to-end suite.
    pub e2e: PathBuf,
    /// The C reader library (static).
    pub libexabond: PathBuf,
}

/// Build the agent (and its eBPF object) and the end-to-end binary.
pub fn build_all(release: bool) -> anyhow::Result<Binaries> {
    let mut c = cargo();
    c.args(["build", "-p", "exabond-agent", "-p", "exabond-tests", "-p", "exabond-reader-c"]);
    if release {
        c.arg("--release");
    }
    run_cmd(&mut c)?;
    let dir = target_dir().join(if release { "release" } else { "debug" });
    Ok(Binaries { exabond: dir.join("exabond"), e2e: dir.join("exabond-e2e"), libexabond: dir.join("libexabond.a") })
}
