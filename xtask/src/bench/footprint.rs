//! Footprint and scale: the agent's memory and idle CPU with many bonds, and a simultaneous failover of
//! all of them.

use serde_json::{json, Value};

use super::report::Row;
use super::stats::{span_ns, Dist};

/// The footprint rows of `kernel` from the VM's results `f`.
pub(super) fn footprint_rows(kernel: &str, f: &Value, rows: &mut Vec<Row>) {
    let n = f["bonds"].as_u64().unwrap_or(0);
    let id = |s: &str| format!("{kernel}.footprint.{s}");
    let rss = f["rss_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    let hwm = f["hwm_kib"].as_f64().unwrap_or(f64::NAN) / 1024.0;
    rows.push(
        Row::new(
            &id("rss"),
            &format!("agent RSS with {n} bonds"),
            format!("{rss:.1} MiB (peak {hwm:.1} MiB, {} threads)", f["threads"]),
        )
        .data(json!({ "rss_mib": rss, "hwm_mib": hwm, "bonds": n })),
    );
    let idle = f["idle_s"].as_f64().unwrap_or(f64::NAN);
    let cpu = 100.0 * f["cpu_s"].as_f64().unwrap_or(f64::NAN) / idle;
    rows.push(
        Row::new(
            &id("cpu_idle"),
            &format!("agent CPU, {n} bonds idle ({idle:.0} s)"),
            format!("{cpu:.2} % of one CPU"),
        )
        .data(json!({ "percent_of_one_cpu": cpu, "idle_s": idle, "bonds": n })),
    );
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
