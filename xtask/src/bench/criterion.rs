//! The reader hot path on the host: the criterion benches of `exabond-common` (`benches/reader.rs`), and
//! the figures from their estimates.

use std::path::PathBuf;

use anyhow::Context as _;
use serde_json::{json, Value};

use super::report::Row;
use crate::cargo::{cargo, run_cmd, target_dir};

/// Criterion's output: `<target dir>/criterion` (its default), or under the smoke results for a smoke
/// run, which must not replace the full run's estimates.
fn criterion_dir(smoke: bool) -> PathBuf {
    if smoke {
        super::out_dir(true).join("criterion")
    } else {
        target_dir().join("criterion")
    }
}

/// Run the reader benches (short ones for a smoke run).
pub(super) fn criterion(smoke: bool) -> anyhow::Result<()> {
    let mut c = cargo();
    c.args(["bench", "-p", "exabond-common", "--bench", "reader", "--"]);
    if smoke {
        c.args(["--warm-up-time", "0.2", "--measurement-time", "0.5", "--sample-size", "10"]);
        c.env("EXABOND_CONTENDED_CALLS", "1000000");
    }
    // Old estimates must not pass for new ones.
    let dir = criterion_dir(smoke);
    let _ = std::fs::remove_dir_all(&dir);
    run_cmd(c.env("CRITERION_HOME", &dir))
}

/// The reader benches' figures from criterion's estimates.
pub(super) fn reader_rows(smoke: bool, rows: &mut Vec<Row>) -> anyhow::Result<()> {
    let dir = criterion_dir(smoke);
    let est = |p: &str| -> anyhow::Result<f64> {
        let f = dir.join(p).join("new/estimates.json");
        let v: Value = serde_json::from_slice(&std::fs::read(&f).with_context(|| format!("reading {}", f.display()))?)?;
        v["median"]["point_estimate"].as_f64().with_context(|| format!("no median in {}", f.display()))
    };
    let changed = est("legacy_word/changed")?;
    let atomic = est("legacy_word/atomic_load_acquire")?;
    let snap = est("snapshot/uncontended")?;
    let into = est("snapshot/into_buffer")?;
    let contended = est("snapshot/writer_full_rate")?;
    let r = changed / atomic;
    rows.push(
        Row::new(
            "host.reader.changed_over_atomic",
            "reader: changed() / bare atomic load of the word",
            format!("{r:.2}  ({changed:.2} ns vs {atomic:.2} ns)"),
        )
        .goal("≤ 1.2", r <= 1.2)
        .data(json!({ "ratio": r, "changed_ns": changed, "atomic_ns": atomic })),
    );
    rows.push(
        Row::new("host.reader.snapshot", "reader: snapshot() uncontended", format!("{snap:.1} ns"))
            .goal("≤ 50 ns", snap <= 50.0)
            .data(json!({ "ns": snap })),
    );
    rows.push(
        Row::new(
            "host.reader.snapshot_into",
            "reader: snapshot_into() (caller's buffer) uncontended",
            format!("{into:.1} ns"),
        )
        .data(json!({ "ns": into })),
    );
    rows.push(
        Row::new(
            "host.reader.snapshot_writer",
            "reader: snapshot() with a writer at full rate on another core",
            format!("{contended:.1} ns"),
        )
        .goal("≤ 50 ns", contended <= 50.0)
        .data(json!({ "ns": contended })),
    );
    if let Ok(v) = std::fs::read(dir.join("contention.json")).map_err(anyhow::Error::from).and_then(|b| {
        let v: Value = serde_json::from_slice(&b)?;
        Ok(v)
    }) {
        let rate = v["publications"].as_f64().unwrap_or(0.0) / v["seconds"].as_f64().unwrap_or(f64::NAN) / 1e6;
        let (calls, failed) = (v["fixed_calls"].as_u64().unwrap_or(0), v["fixed_inconsistent"].as_u64().unwrap_or(0));
        let mut row = Row::new(
            "host.reader.snapshot_writer_gave_up",
            "reader: snapshot() calls that gave up (ReadError::Inconsistent) against that writer",
            format!(
                "{failed} of {calls}, {:.1} ns per call  (writer at {rate:.1} M publications/s)",
                v["fixed_ns"].as_f64().unwrap_or(f64::NAN)
            ),
        );
        if !smoke {
            row = row.goal("0 in 10⁸", failed == 0 && calls >= 100_000_000);
        }
        rows.push(row.data(v));
    }
    Ok(())
}
