//! `exabond_changed` and `exabond_legacy_word` must stay a NULL check, a load and a compare: no call (so no
//! allocation, no lock, no syscall). Checked on the machine code of the optimised `libexabond.so`, the one
//! users get, whatever profile this test runs under: a debug build does not inline, so the library next to
//! a debug test executable would prove nothing. The test therefore builds it itself with
//! `cargo build --release -p exabond-reader-c --lib` (the workspace's own target directory, whose release
//! build later reuses it; cargo holds no lock on it while tests run). Needs `objdump` (binutils): without
//! it the test fails. `x86_64` only.

#![cfg(target_arch = "x86_64")]

use std::path::PathBuf;
use std::process::Command;

/// Build the release `libexabond.so` and return its path (from cargo's JSON artifact messages).
fn optimised_library() -> PathBuf {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = Command::new(&cargo)
        .args(["build", "--release", "--lib", "-p", "exabond-reader-c", "--message-format=json-render-diagnostics"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.to_string_lossy()));
    assert!(
        out.status.success(),
        "cargo build --release -p exabond-reader-c failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    stdout
        .lines()
        .rev()
        .filter(|l| l.contains(r#""reason":"compiler-artifact""#))
        .find_map(|l| {
            let files = l.split_once(r#""filenames":["#)?.1.split_once(']')?.0;
            files.split(',').map(|f| f.trim_matches('"')).find(|f| f.ends_with("/libexabond.so")).map(PathBuf::from)
        })
        .unwrap_or_else(|| panic!("no libexabond.so among cargo's artifacts:\n{stdout}"))
}

/// The instructions of `symbol` in `objdump -d` output.
fn instructions(disassembly: &str, symbol: &str) -> Vec<String> {
    let start = format!("<{symbol}>:");
    disassembly
        .lines()
        .skip_while(|l| !l.ends_with(&start))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split('\t').nth(1).map(|i| i.trim().to_owned()))
        .collect()
}

#[test]
fn hot_path_functions_make_no_calls() {
    let lib = optimised_library();
    let out = Command::new("objdump").args(["-d", "--no-show-raw-insn"]).arg(&lib).output().unwrap_or_else(|e| {
        panic!("objdump (binutils) is needed to inspect the machine code of {}: {e}", lib.display())
    });
    assert!(out.status.success(), "objdump -d {} failed: {}", lib.display(), String::from_utf8_lossy(&out.stderr));
    let asm = String::from_utf8_lossy(&out.stdout);
    for symbol in ["exabond_changed", "exabond_legacy_word"] {
        let code = instructions(&asm, symbol);
        assert!(!code.is_empty(), "{symbol} not found in {}", lib.display());
        // A call, a syscall, or a jump out of the function (tail call).
        let inside = format!("<{symbol}");
        let bad: Vec<_> = code
            .iter()
            .filter(|i| {
                i.starts_with("call") || i.starts_with("syscall") || (i.starts_with("jmp") && !i.contains(&inside))
            })
            .collect();
        assert!(bad.is_empty(), "{symbol} calls out: {bad:?}\n{code:#?}");
        println!("{symbol} in {}: {} instructions, no call", lib.display(), code.len());
    }
}
