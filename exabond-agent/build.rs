//! Builds the eBPF programs (exabond-ebpf) for bpfel-unknown-none with aya-build; the object lands in
//! `OUT_DIR` and is embedded by `include_bytes_aligned!`.
use anyhow::{anyhow, Context as _};

fn main() -> anyhow::Result<()> {
    let cargo_metadata::Metadata { packages, .. } =
        cargo_metadata::MetadataCommand::new().no_deps().exec().context("cargo metadata")?;
    let ebpf = packages
        .into_iter()
        .find(|p| p.name.as_str() == "exabond-ebpf")
        .ok_or_else(|| anyhow!("exabond-ebpf package not found in the workspace"))?;
    let root_dir =
        ebpf.manifest_path.parent().ok_or_else(|| anyhow!("exabond-ebpf manifest has no parent directory"))?;
    // bpfel-unknown-none is a tier-3 target: `core` is built from rust-src with `-Z build-std`, which a
    // stable rustc accepts under RUSTC_BOOTSTRAP=1. Set here, it reaches only the nested eBPF build that
    // aya-build spawns, so a plain `cargo build` of the workspace works on stable.
    // AYA_EBPF_TOOLCHAIN picks another rustup toolchain (e.g. nightly).
    println!("cargo:rerun-if-env-changed=AYA_EBPF_TOOLCHAIN");
    let toolchain = std::env::var("AYA_EBPF_TOOLCHAIN").unwrap_or_else(|_| "stable".to_owned());
    if std::env::var_os("RUSTC_BOOTSTRAP").is_none() {
        std::env::set_var("RUSTC_BOOTSTRAP", "1");
    }
    if which_bpf_linker().is_none() {
        anyhow::bail!(
            "bpf-linker is not on PATH: run `cargo xtask setup` (it builds bpf-linker against rustc's own LLVM)"
        );
    }
    aya_build::build_ebpf(
        [aya_build::Package { name: ebpf.name.as_str(), root_dir: root_dir.as_str(), ..Default::default() }],
        aya_build::Toolchain::Custom(&toolchain),
    )
}

fn which_bpf_linker() -> Option<std::path::PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).map(|d| d.join("bpf-linker")).find(|p| p.is_file())
}
