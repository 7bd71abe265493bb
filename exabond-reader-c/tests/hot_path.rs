//! `exabond_changed` and `exabond_legacy_word` must stay a NULL check, a load and a compare: no call (so no
//! allocation, no lock, no syscall). Checked on the machine code of the optimised `libexabond.so`
//! (`cargo test --release -p exabond-reader-c --test hot_path`); a debug build does not inline, so there
//! the test only says so. Skipped if `objdump` (binutils) is missing; x86_64 only.

#![cfg(target_arch = "x86_64")]

use std::path::PathBuf;
use std::process::Command;

/// `libexabond.so` from the directory of this test executable (see tests/c_programs.rs).
fn shared_library() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let deps = exe.parent().unwrap();
    [deps.join("libexabond.so"), deps.parent().unwrap().join("libexabond.so")]
        .into_iter()
        .find(|p| p.is_file())
        .expect("libexabond.so is built with the crate by `cargo test -p exabond-reader-c`")
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
    if cfg!(debug_assertions) {
        println!("debug build: not inlined, nothing to check (run with --release)");
        return;
    }
    let lib = shared_library();
    let out = match Command::new("objdump").args(["-d", "--no-show-raw-insn"]).arg(&lib).output() {
        Ok(o) if o.status.success() => o,
        _ => {
            println!("objdump not available: skipped");
            return;
        }
    };
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
        println!("{symbol}: {} instructions, no call", code.len());
    }
}
