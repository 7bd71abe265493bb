//! Generates the C header `exabond.h` into `OUT_DIR` with cbindgen, from every `.rs` file in `src/`
//! (parsed directly: no `cargo metadata`, so it is fast and works offline). `tests/header.rs` compares it
//! with the committed `include/exabond.h`, which is what C programs include.

use std::path::PathBuf;

fn main() {
    let crate_dir = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR")).join("exabond.h");
    let config = cbindgen::Config::from_file(crate_dir.join("cbindgen.toml")).expect("cbindgen.toml");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    println!("cargo:rerun-if-changed=src");

    let mut sources: Vec<PathBuf> = std::fs::read_dir(crate_dir.join("src"))
        .expect("src/")
        .map(|e| e.expect("src/ entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "rs"))
        .collect();
    sources.sort(); // deterministic header
    let mut builder = cbindgen::Builder::new().with_config(config);
    for src in &sources {
        builder = builder.with_src(src);
    }
    builder.generate().expect("cbindgen could not generate exabond.h").write_to_file(&out);
}
