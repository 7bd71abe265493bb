//! The staging folder shared with the guest (`<target dir>/vm`): the binaries, the C examples, the
//! stand-in kernel module and the scripts the guest runs.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{bail, Context as _};

use crate::cargo::{cargo, root, run_cmd, target_dir, Binaries};
use crate::setup::testbed_cmd;

/// The staging folder shared with the guest.
pub fn stage_dir() -> PathBuf {
    target_dir().join("vm")
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
    stage_c_examples(bins, &dir)?;
    stage_standin(&dir)?;
    write_scripts(&dir, only)?;
    Ok(dir)
}

/// The C examples, as a trading process would build them: one against libexabond, one against nothing but
/// the original 32-bit word.
fn stage_c_examples(bins: &Binaries, dir: &Path) -> anyhow::Result<()> {
    let src = root().join("exabond-reader-c");
    for (prog, with_lib) in [("trading_loop", true), ("legacy_reader", false)] {
        let mut cc = std::process::Command::new("cc");
        cc.args(["-std=c11", "-O2", "-Wall", "-Werror", "-I"]).arg(src.join("include")).arg("-o").arg(dir.join(prog));
        cc.arg(src.join(format!("examples/c/{prog}.c")));
        if with_lib {
            cc.arg(&bins.libexabond).args(["-lpthread", "-ldl", "-lm"]);
        }
        run_cmd(&mut cc)?;
    }
    Ok(())
}

/// The stand-in `ExaNIC` module (a test fixture) of each prepared kernel, as `standin/<release>/`.
fn stage_standin(dir: &Path) -> anyhow::Result<()> {
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
    Ok(())
}

/// The guest's scripts, one per mode of `exabond-e2e`, with the suite's settings exported.
fn write_scripts(dir: &Path, only: Option<&str>) -> anyhow::Result<()> {
    let exports = exports(only)?;
    for (name, mode) in [
        ("e2e-test.sh", "test"),
        ("e2e-nolsm.sh", "test-nolsm"),
        ("e2e-demo.sh", "demo"),
        ("e2e-bench.sh", "bench"),
        ("e2e-bench-smoke.sh", "bench --smoke"),
    ] {
        std::fs::write(
            dir.join(name),
            format!("#!/bin/sh\n# Written by cargo xtask; runs in the guest.\ncd \"$(dirname \"$0\")\"\n{exports}exec ./exabond-e2e {mode} --exabond \"$PWD/exabond\"\n"),
        )?;
    }
    Ok(())
}

/// The `export` lines of the guest's scripts: the suite's timeout scale (tests/src/lab.rs, from
/// `EXABOND_E2E_TIMEOUT_SCALE`) and the groups of `--only`.
fn exports(only: Option<&str>) -> anyhow::Result<String> {
    let scale = match std::env::var("EXABOND_E2E_TIMEOUT_SCALE") {
        Ok(v) => {
            let k: u32 = v
                .parse()
                .map_err(|_| anyhow::anyhow!("EXABOND_E2E_TIMEOUT_SCALE={v:?}: expected a whole number such as 3"))?;
            format!("export EXABOND_E2E_TIMEOUT_SCALE={k}\n")
        }
        Err(_) => String::new(),
    };
    Ok(match only {
        Some(o) if o.chars().all(|c| c.is_ascii_alphanumeric() || "-_,".contains(c)) => {
            format!("{scale}export EXABOND_E2E_ONLY={o}\n")
        }
        Some(o) => bail!("--only {o:?}: use group names such as pages or pages,smartnic"),
        None => scale,
    })
}

/// A second, different build of the agent (the debug profile), staged as `exabond-other`: the suite
/// restarts the agent from it to show that an upgrade adopts the pages in place.
pub fn stage_other_build(dir: &Path) -> anyhow::Result<()> {
    run_cmd(cargo().args(["build", "-p", "exabond-agent"]))?;
    let src = target_dir().join("debug/exabond");
    let dst = dir.join("exabond-other");
    let _ = std::fs::remove_file(&dst);
    std::fs::copy(&src, &dst).with_context(|| format!("staging {}", src.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_reaches_the_guest_when_it_is_group_names() {
        assert!(exports(Some("pages,smartnic")).unwrap().ends_with("export EXABOND_E2E_ONLY=pages,smartnic\n"));
        assert!(exports(Some("pages; reboot")).is_err());
        assert!(!exports(None).unwrap().contains("EXABOND_E2E_ONLY"));
    }
}
