//! The veto overhead: system calls on a tmpfs file with the BPF LSM programs attached or not, with and
//! without the agent, and how the overhead splits into the BPF LSM's fixed cost and the program's body.

use serde_json::{json, Value};

use super::report::Row;
use super::stats::median;

/// The veto rows of `kernel` from the VM's results `v`.
pub(super) fn veto_rows(kernel: &str, v: &Value, rows: &mut Vec<Row>) {
    let states = |state: &str, k: &str| {
        v["states"][state][k]
            .as_array()
            .map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    for (k, label) in [
        ("write_ns", "write(2) of 8 bytes to a tmpfs file"),
        ("read_ns", "pread(2) of 8 bytes (hook returns at once: the fixed cost)"),
        ("open_close_ns", "open(2)+close(2) of a tmpfs file"),
    ] {
        let name = k.trim_end_matches("_ns");
        // (id suffix, label, numerator state, denominator state, goal?)
        let pairs = [
            ("", "LSM programs attached / not, agent stopped", "pins", "none", true),
            (".agent", "agent with LSM / agent with --no-lsm", "agent", "agent_nolsm", true),
            (".agent_total", "agent with LSM / no exabond at all", "agent", "none", false),
        ];
        for (suffix, what, num, den, with_goal) in pairs {
            let (a, b) = (states(num, k), states(den, k));
            if a.is_empty() || b.is_empty() {
                continue;
            }
            let (ma, mb) = (median(&a), median(&b));
            let r = ma / mb;
            let mut row = Row::new(
                &format!("{kernel}.veto.{name}{suffix}"),
                &format!("veto overhead: {label}, {what}"),
                format!("{r:.3}  ({ma:.0} ns vs {mb:.0} ns per call, medians of {} + {} batches)", a.len(), b.len()),
            )
            .data(json!({
                "ratio": r,
                "numerator": { "state": num, "ns": ma, "batches": a.len() },
                "denominator": { "state": den, "ns": mb, "batches": b.len() },
            }));
            // The goal is on write(2) and open/close; the read loop only splits the cost.
            if with_goal && k != "read_ns" {
                row = row.goal("≤ 1.03", r <= 1.03);
            }
            rows.push(row);
        }
    }
    // What the write hook's program body costs beyond the BPF LSM's fixed cost per call.
    let over = |k: &str| median(&states("pins", k)) - median(&states("none", k));
    let (w, r) = (over("write_ns"), over("read_ns"));
    if w.is_finite() && r.is_finite() {
        rows.push(
            Row::new(
                &format!("{kernel}.veto.decomposition"),
                "veto overhead per write(2): BPF LSM fixed cost (read) + the program's body (write − read)",
                format!("{w:.0} ns = {r:.0} ns fixed + {:.0} ns body", w - r),
            )
            .data(json!({ "write_overhead_ns": w, "fixed_ns": r, "body_ns": w - r })),
        );
    }
}
