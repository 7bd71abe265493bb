//! The report: one row per figure, the table printed and kept as `bench.txt`, and `bench.json`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::bail;
use serde_json::{json, Value};

/// One line of the report.
pub(super) struct Row {
    /// Stable id in bench.json, e.g. `bpo.failover.default.page_first`.
    pub(super) id: String,
    /// What the figure is, as the table shows it.
    pub(super) label: String,
    /// The value as the table shows it.
    pub(super) shown: String,
    /// The goal, as shown (empty: none).
    pub(super) goal: String,
    /// Whether the goal is met (`None`: no goal).
    pub(super) met: Option<bool>,
    /// The figure's data in bench.json.
    pub(super) json: Value,
}

impl Row {
    /// A row without goal or data.
    pub(super) fn new(id: &str, label: &str, shown: String) -> Self {
        Self { id: id.into(), label: label.into(), shown, goal: String::new(), met: None, json: Value::Null }
    }

    /// With a goal, and whether it is met.
    pub(super) fn goal(mut self, goal: &str, met: bool) -> Self {
        goal.clone_into(&mut self.goal);
        self.met = Some(met);
        self
    }

    /// With its data for bench.json.
    pub(super) fn data(mut self, v: Value) -> Self {
        self.json = v;
        self
    }
}

/// What a run gathers: figures, the kernels run, the plots written, what went wrong.
#[derive(Default)]
pub(super) struct Report {
    /// The figures, in table order.
    pub(super) rows: Vec<Row>,
    /// Every bench that produced no result; the run fails when there is one.
    pub(super) problems: Vec<String>,
    /// The kernels the VM ran (flavour, release, vCPUs).
    pub(super) kernels: Vec<Value>,
    /// The SVG plots written.
    pub(super) svgs: Vec<PathBuf>,
}

impl Report {
    /// Print the table, write `bench.json` and `bench.txt` into `out`; an error when a bench produced no
    /// result.
    pub(super) fn finish(&self, out: &Path, smoke: bool, host_load: &str) -> anyhow::Result<()> {
        let table =
            format!("host load average at start: {host_load} ({} host CPUs)\n{}", host_cpus(), table(&self.rows));
        println!(
            "\n== exabond bench{} ==\n{table}",
            if smoke { " (smoke: too few samples for real figures)" } else { "" }
        );
        let doc = json!({
            "smoke": smoke,
            "kernels": self.kernels,
            "note": "VM under qemu TCG: absolute times are inflated; compare ratios",
            "host_loadavg_at_start": host_load,
            "figures": self.rows.iter().map(|r| json!({ "id": r.id, "label": r.label, "shown": r.shown, "goal": r.goal, "met": r.met, "data": r.json })).collect::<Vec<_>>(),
            "problems": self.problems,
        });
        let path = out.join("bench.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&doc)?)?;
        std::fs::write(out.join("bench.txt"), &table)?;
        println!("written: {}", path.display());
        for s in &self.svgs {
            println!("written: {}", s.display());
        }
        if !self.problems.is_empty() {
            bail!("bench incomplete:\n  {}", self.problems.join("\n  "));
        }
        Ok(())
    }
}

/// The rows as a table: figure, goal, met, value.
fn table(rows: &[Row]) -> String {
    let w = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(10);
    let mut s = String::new();
    let _ = writeln!(s, "{:<w$}  {:<8} {:<5} value", "figure", "goal", "met");
    for r in rows {
        let met = match r.met {
            Some(true) => "yes",
            Some(false) => "NO",
            None => "",
        };
        let _ = writeln!(s, "{:<w$}  {:<8} {:<5} {}", r.label, r.goal, met, r.shown);
    }
    s
}

/// The host's load average (1 min) now.
pub(super) fn host_load() -> String {
    let host_load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    host_load.split_whitespace().next().unwrap_or("?").to_owned()
}

/// CPUs of the host.
fn host_cpus() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZero::get)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_marks_goals() {
        let rows = [Row::new("a", "first figure", "1".into()).goal("≤ 2", true), Row::new("b", "second", "3".into())];
        let t = table(&rows);
        assert_eq!(t.lines().count(), 3);
        assert!(t.lines().nth(1).unwrap().contains("≤ 2      yes   1"), "{t}");
        assert!(t.lines().nth(2).unwrap().ends_with("              3"), "{t}");
    }
}
