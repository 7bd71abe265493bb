//! Re-run the eBPF build when bpf-linker changes (it is the linker of the bpfel target).
use which::which;

fn main() {
    if let Ok(bpf_linker) = which("bpf-linker") {
        println!("cargo:rerun-if-changed={}", bpf_linker.display());
    }
}
