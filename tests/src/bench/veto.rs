//! Veto overhead: what the exabond BPF LSM programs cost unrelated system calls. Loops of write(2) of 8
//! bytes to a tmpfs file (the `file_permission` hook runs for every write) and of open(2)+close(2), timed
//! in three states, rotated over several rounds so drift of the emulated machine hits all of them:
//! - `agent`: the agent running, managing a bond (programs attached, its poll and heartbeat running);
//! - `agent_nolsm`: the same agent started with `--no-lsm` (same poll, heartbeat and kprobes, no LSM
//!   program): `agent` / `agent_nolsm` is the LSM programs' cost with the agent's background activity on
//!   both sides (under TCG that activity alone slows the other vCPU: cross-CPU TLB flushes stop all vCPUs);
//! - `pins`: the agent stopped without `--release` (programs still attached through their pins, no agent
//!   process): the programs' own cost;
//! - `none`: pins removed (what `--release` does): no exabond program attached.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::path::Path;
use std::time::Duration;

use exabond_common::clock::monotonic_ns;
use serde_json::{json, Value};

use super::PAGE_DIR;
use crate::lab::{Agent, Bond};

const BOND: &str = "vebench";
const FILE: &str = "/tmp/exabond-veto-bench";

/// Loop sizes.
#[derive(Clone, Copy)]
pub struct Sizes {
    /// Rounds per state (with, without), alternated.
    pub rounds: usize,
    /// Batches per round and loop.
    pub batches: usize,
    /// System calls per batch.
    pub ops: usize,
}

/// ns per call of each batch of one state: write(2), pread(2), open(2)+close(2).
type Batches = (Vec<f64>, Vec<f64>, Vec<f64>);

/// ns per call of `op` in each of `s.batches` batches of `s.ops` calls; `reset` runs before each batch,
/// untimed.
#[expect(clippy::cast_precision_loss, reason = "a nanosecond span and a call count, far below 2^52")]
fn timed(s: Sizes, mut reset: impl FnMut(), mut op: impl FnMut()) -> Vec<f64> {
    (0..s.batches)
        .map(|_| {
            reset();
            let t = monotonic_ns();
            for _ in 0..s.ops {
                op();
            }
            (monotonic_ns() - t) as f64 / s.ops as f64
        })
        .collect()
}

/// `FILE` opened with `flags`, closed on drop.
struct Fd(i32);

impl Fd {
    fn open(flags: i32) -> anyhow::Result<Self> {
        let c = CString::new(FILE)?;
        // SAFETY: valid C string; plain open(2).
        let fd = unsafe { libc::open(c.as_ptr(), flags | libc::O_CREAT | libc::O_CLOEXEC, 0o600) };
        anyhow::ensure!(fd >= 0, "open {FILE}: {}", std::io::Error::last_os_error());
        Ok(Self(fd))
    }
}

impl Drop for Fd {
    fn drop(&mut self) {
        // SAFETY: our fd, closed once.
        unsafe { libc::close(self.0) };
    }
}

/// ns per write(2) of 8 bytes, each batch from an emptied file.
fn writes(s: Sizes) -> anyhow::Result<Vec<f64>> {
    let fd = Fd::open(libc::O_WRONLY | libc::O_TRUNC)?;
    let buf = [0x5au8; 8];
    let reset = || {
        // SAFETY: our fd; keeps the file small.
        unsafe {
            libc::ftruncate(fd.0, 0);
            libc::lseek(fd.0, 0, libc::SEEK_SET);
        }
    };
    let op = || {
        // SAFETY: valid buffer of 8 bytes, our fd.
        let n = unsafe { libc::write(fd.0, buf.as_ptr().cast(), buf.len()) };
        debug_assert_eq!(n, 8);
    };
    Ok(timed(s, reset, op))
}

/// ns per pread(2) of 8 bytes. The write hook's program returns at its first test for a read (`mask` has
/// no `MAY_WRITE`), so the overhead here is the BPF LSM's fixed cost per call (the trampoline), and write −
/// read is what the program's own body costs.
fn reads(s: Sizes) -> anyhow::Result<Vec<f64>> {
    let fd = Fd::open(libc::O_RDWR)?;
    let mut buf = [0x5au8; 8];
    // SAFETY: our fd and an 8-byte buffer: the file has something to read.
    let n = unsafe { libc::pwrite(fd.0, buf.as_ptr().cast(), buf.len(), 0) };
    anyhow::ensure!(n == 8, "pwrite {FILE}: {}", std::io::Error::last_os_error());
    let op = || {
        // SAFETY: valid buffer of 8 bytes, our fd.
        let n = unsafe { libc::pread(fd.0, buf.as_mut_ptr().cast(), buf.len(), 0) };
        debug_assert_eq!(n, 8);
    };
    Ok(timed(s, || {}, op))
}

/// ns per open(2)+close(2).
fn opens(s: Sizes) -> anyhow::Result<Vec<f64>> {
    let c = CString::new(FILE)?;
    let op = || {
        // SAFETY: valid C string; plain open(2) and close(2) of the fd it returns.
        unsafe { libc::close(libc::open(c.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC)) };
    };
    Ok(timed(s, || {}, op))
}

/// Whether the write hook's program is attached (its link is pinned; the maps are pinned in every state
/// but `none`).
fn lsm_attached() -> bool {
    Path::new(exabond_common::policy_maps::PIN_DIR).join("link-file_permission").exists()
}

/// The batches of each state, per loop.
pub fn run(exabond: &Path, s: Sizes) -> anyhow::Result<Value> {
    let lsm = crate::lab::read_sysfs("/sys/kernel/security/lsm").unwrap_or_default();
    anyhow::ensure!(lsm.split(',').any(|x| x == "bpf"), "the BPF LSM is not active ({lsm}): nothing to measure");
    let _bond = Bond::create(BOND, 2)?;
    let mut res: BTreeMap<&str, Batches> = BTreeMap::new();
    let mut measure = |state: &'static str| -> anyhow::Result<()> {
        std::thread::sleep(Duration::from_millis(300));
        let (w, r, o) = (writes(s)?, reads(s)?, opens(s)?);
        let entry = res.entry(state).or_default();
        entry.0.extend(w);
        entry.1.extend(r);
        entry.2.extend(o);
        Ok(())
    };
    for round in 0..s.rounds {
        let none_first = round % 2 == 0;
        if none_first {
            anyhow::ensure!(!lsm_attached(), "pins present before the `none` state");
            measure("none")?;
        }
        let mut plain = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &["--no-lsm"])?;
        anyhow::ensure!(!lsm_attached(), "an agent started with --no-lsm attached LSM programs");
        measure("agent_nolsm")?;
        let st = plain.terminate(Duration::from_secs(20))?;
        anyhow::ensure!(st.success(), "agent (--no-lsm) exit {st}");
        super::clear_pins();
        let mut agent = Agent::start(exabond, Path::new(PAGE_DIR), &[BOND], &[])?;
        anyhow::ensure!(lsm_attached(), "the agent attached no LSM program");
        measure("agent")?;
        let st = agent.terminate(Duration::from_secs(20))?;
        anyhow::ensure!(st.success(), "agent exit {st}");
        anyhow::ensure!(lsm_attached(), "pins gone after an exit without --release");
        measure("pins")?;
        super::clear_pins();
        anyhow::ensure!(!lsm_attached(), "pins still present after removal");
        if !none_first {
            measure("none")?;
        }
    }
    let _ = std::fs::remove_file(FILE);
    let med = |v: &[f64]| super::percentile(&mut v.to_vec(), 50.0);
    let mut doc = serde_json::Map::new();
    for (state, (w, r, o)) in &res {
        println!(
            "E2E BENCH   {state:<11}: write(2) {:.0} ns, pread(2) {:.0} ns, open+close {:.0} ns",
            med(w),
            med(r),
            med(o)
        );
        doc.insert((*state).to_owned(), json!({ "write_ns": w, "read_ns": r, "open_close_ns": o }));
    }
    Ok(json!({ "ops_per_batch": s.ops, "rounds": s.rounds, "states": doc }))
}
