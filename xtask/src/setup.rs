//! `cargo xtask setup`: make a fresh machine of this kind able to build, test and demo exabond.
//!
//! Steps, each skipped when already done: rust-src for the stable toolchain; bpf-linker 0.13 built
//! against rustc's own libLLVM (no system LLVM needed); the VM test bed (host packages qemu, debootstrap
//! & co from apt, the Debian 6.12-backports and 6.1 kernels, a Debian root fs image, an initramfs), cached
//! under `~/.cache/exabond`.

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context as _};

use crate::cargo::{root, run_cmd};

/// bpf-linker version known to work with rustc 1.95 (LLVM 22).
const BPF_LINKER_VERSION: &str = "0.13.0";

/// Arguments of `cargo xtask setup`.
#[derive(clap::Args, Default)]
pub struct SetupArgs {
    /// Which kernels to prepare: bpo (6.12), stable (6.1), or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Only the build tools (no VM test bed).
    #[arg(long)]
    pub tools_only: bool,
}

/// The cache directory (`$EXABOND_CACHE`, else `$XDG_CACHE_HOME/exabond`, else `~/.cache/exabond`).
pub fn cache_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("EXABOND_CACHE") {
        return d.into();
    }
    let base = std::env::var_os("XDG_CACHE_HOME").map_or_else(
        || PathBuf::from(std::env::var_os("HOME").unwrap_or_else(|| "/root".into())).join(".cache"),
        PathBuf::from,
    );
    base.join("exabond")
}

/// Kernel flavours named by `--kernel`.
pub fn kernels(arg: &str) -> anyhow::Result<Vec<&'static str>> {
    Ok(match arg {
        "all" => vec!["bpo", "stable"],
        "bpo" | "6.12" => vec!["bpo"],
        "stable" | "6.1" => vec!["stable"],
        other => bail!("unknown kernel {other:?}: use bpo (Debian 6.12 backports), stable (Debian 6.1) or all"),
    })
}

fn step(msg: &str) {
    eprintln!("[setup] {msg}");
}

/// Run the set-up.
pub fn run(args: &SetupArgs) -> anyhow::Result<()> {
    tools()?;
    if !args.tools_only {
        testbed(&kernels(&args.kernel)?)?;
    }
    step("done");
    Ok(())
}

/// rust-src and bpf-linker.
pub fn tools() -> anyhow::Result<()> {
    let sysroot = output(Command::new("rustc").args(["+stable", "--print", "sysroot"]))?;
    let src = PathBuf::from(sysroot.trim()).join("lib/rustlib/src/rust/library/core");
    if src.exists() {
        step("rust-src: present");
    } else {
        step("rust-src: installing (rustup component add rust-src)");
        run_cmd(Command::new("rustup").args(["component", "add", "rust-src", "--toolchain", "stable"]))?;
    }
    bpf_linker(&PathBuf::from(sysroot.trim()))
}

fn output(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("cannot run {}", crate::cargo::show(cmd)))?;
    if !out.status.success() {
        bail!("`{}` failed: {}", crate::cargo::show(cmd), String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn bpf_linker(sysroot: &std::path::Path) -> anyhow::Result<()> {
    if let Ok(v) = output(Command::new("bpf-linker").arg("--version")) {
        if v.contains(BPF_LINKER_VERSION) {
            step(&format!("bpf-linker: {} present", v.trim()));
            return Ok(());
        }
    }
    // rustc's LLVM major version picks bpf-linker's llvm-NN feature.
    let vv = output(Command::new("rustc").args(["+stable", "--version", "--verbose"]))?;
    let major = vv
        .lines()
        .find_map(|l| l.strip_prefix("LLVM version: "))
        .and_then(|v| v.split('.').next())
        .context("rustc --version --verbose has no LLVM version")?
        .to_owned();
    // A copy of rustc's libLLVM in our own prefix (survives toolchain updates), plus the libLLVM.so name
    // bpf-linker's build links against.
    let lib = std::fs::read_dir(sysroot.join("lib"))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| {
            let n = p.file_name().unwrap_or_default().to_string_lossy();
            n.starts_with("libLLVM") && n.contains(".so") && !p.is_symlink()
        })
        .context("rustc's sysroot has no libLLVM shared library")?;
    let prefix = cache_dir().join(format!("llvm-{major}"));
    let libdir = prefix.join("lib");
    std::fs::create_dir_all(&libdir)?;
    let fname = lib.file_name().context("libLLVM name")?;
    std::fs::copy(&lib, libdir.join(fname)).context("copying rustc's libLLVM")?;
    let link = libdir.join("libLLVM.so");
    let _ = std::fs::remove_file(&link);
    std::os::unix::fs::symlink(fname, &link)?;
    step(&format!("bpf-linker: building {BPF_LINKER_VERSION} against rustc's LLVM {major} (about 2 minutes)"));
    run_cmd(
        Command::new("cargo")
            .args([
                "+stable",
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
                "--no-default-features",
            ])
            .args(["--features", &format!("llvm-{major}")])
            .env("LLVM_PREFIX", &prefix),
    )?;
    let v = output(Command::new("bpf-linker").arg("--version"))
        .context("bpf-linker was installed but is not on PATH: add ~/.cargo/bin to PATH")?;
    step(&format!("bpf-linker: {} installed", v.trim()));
    Ok(())
}

/// The testbed script shipped in the repo.
pub fn testbed_script() -> PathBuf {
    root().join("xtask/vm/testbed.sh")
}

/// A command running the testbed script (through sudo when not root).
pub fn testbed_cmd() -> Command {
    let root_user = effective_uid() == 0;
    let mut c = if root_user {
        Command::new("bash")
    } else {
        let mut c = Command::new("sudo");
        c.args(["-E", "bash"]);
        c
    };
    c.arg(testbed_script());
    c.env("EXABOND_CACHE", cache_dir());
    c
}

/// The effective uid, read from /proc (keeps xtask free of libc).
fn effective_uid() -> u32 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("Uid:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(2).and_then(|v| v.parse().ok()))
        .unwrap_or(u32::MAX)
}

/// The VM test bed for `kernels`.
pub fn testbed(kernels: &[&str]) -> anyhow::Result<()> {
    step(&format!("VM test bed: kernels {kernels:?} in {}", cache_dir().display()));
    run_cmd(testbed_cmd().arg("setup").args(kernels))
}
