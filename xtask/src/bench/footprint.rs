//! Footprint and scale: the agent's memory and idle CPU with many bonds, and a simultaneous failover of
//! all of them; beside them, the same figures of the baseline agent (the one before this round's work)
//! measured in the same boot. Goals (64 bonds): RSS ≤ 20 MiB, idle CPU ≤ 0.5 % of a CPU.

use serde_json::{json, Value};

use super::report::Row;
use super::stats::{span_ns, Dist};

/// RSS goal with 64 bonds, MiB.
const RSS_GOAL_MIB: f64 = 20.0;
/// Idle CPU goal with 64 bonds, % of one CPU.
const CPU_GOAL_PERCENT: f64 = 0.5;

/// (RSS MiB, peak MiB, idle CPU % of one CPU) of one agent's results.
fn footprint_of(f: &Value) -> (f64, f64, f64) {
    let rss = f["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let hwm = f["hwm_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let cpu = 100.0 * f["cpu_s"].as_f64().unwrap_or(f64::NAN) / f["idle_s"].as_f64().unwrap_or(f64::NAN);
    (rss, hwm, cpu)
}

/// The footprint rows of `kernel` from the VM's results (`{"current", "baseline"}`, or one agent's alone
/// from runs before the baseline was measured).
pub(super) fn footprint_rows(kernel: &str, all: &Value, rows: &mut Vec<Row>) {
    let f = if all["current"].is_null() { all } else { &all["current"] };
    let base = &all["baseline"];
    let n = f["bonds"].as_u64().unwrap_or(0);
    let id = |s: &str| format!("{kernel}.footprint.{s}");
    let (rss, hwm, cpu) = footprint_of(f);
    let (b_rss, b_hwm, b_cpu) = footprint_of(base);
    let beside = |now: f64, before: f64, unit: &str| {
        if base.is_null() {
            String::new()
        } else {
            format!("; baseline agent {before:.2}{unit}, ratio {:.3}", now / before)
        }
    };
    let graded = n == 64;
    let mut row = Row::new(
        &id("rss"),
        &format!("agent RSS with {n} bonds"),
        format!("{rss:.1} MiB (peak {hwm:.1} MiB, {} threads){}", f["threads"], beside(rss, b_rss, " MiB")),
    )
    .data(json!({ "rss_mib": rss, "hwm_mib": hwm, "bonds": n, "baseline_rss_mib": b_rss, "baseline_hwm_mib": b_hwm,
                  "baseline_threads": base["threads"] }));
    if graded {
        row = row.goal("≤ 20 MiB", rss <= RSS_GOAL_MIB);
    }
    rows.push(row);
    let idle = f["idle_s"].as_f64().unwrap_or(f64::NAN);
    let mut row = Row::new(
        &id("cpu_idle"),
        &format!("agent CPU, {n} bonds idle ({idle:.0} s)"),
        format!("{cpu:.2} % of one CPU{}", beside(cpu, b_cpu, " %")),
    )
    .data(json!({ "percent_of_one_cpu": cpu, "idle_s": idle, "bonds": n, "baseline_percent_of_one_cpu": b_cpu }));
    if graded {
        row = row.goal("≤ 0.5 %", cpu <= CPU_GOAL_PERCENT);
    }
    rows.push(row);
    let t0 = f["t_start_ns"].as_u64().unwrap_or(0);
    let seen: Vec<u64> =
        f["seen_ns"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    let last = seen.iter().max().map_or(f64::NAN, |l| span_ns(t0, *l) / 1e6);
    let writes = f["t_written_ns"].as_u64().map_or(f64::NAN, |w| span_ns(t0, w) / 1e6);
    let per: Vec<f64> = f["per_bond"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| {
                    let k = b["kernel_ns"].as_u64().filter(|k| *k > 0)?;
                    Some(span_ns(k, b["page_ns"].as_u64()?) / 1e3)
                })
                .collect()
        })
        .unwrap_or_default();
    let d = Dist::new(per);
    rows.push(
        Row::new(
            &id("all_pages"),
            &format!("simultaneous failover of {n} bonds: all pages right"),
            format!(
                "{last:.1} ms after the first write (writes took {writes:.1} ms); kernel → publication per bond {}",
                d.shown()
            ),
        )
        .data(json!({ "all_pages_ms": last, "writes_ms": writes, "kernel_to_publish": d.json() })),
    );
}
