//! The selftests' report: per kernel a table of every test program in both runs, the agent's checks and the
//! guest's kernel warnings; last, the verdicts that differ (the tail of a CI log names them).

use std::time::Duration;

use super::verdicts::Row;
use super::{KernelRun, ModeRun};

fn mmss(d: Duration) -> String {
    let s = d.as_secs();
    format!("{}m{:02}s", s / 60, s % 60)
}

fn verdict(r: &ModeRun, test: &str) -> String {
    r.results.tests.get(test).map_or_else(|| "did not run".to_owned(), |t| format!("{} ({}s)", t.outcome, t.secs))
}

fn rows(title: &str, rows: &[Row]) {
    if rows.is_empty() {
        return;
    }
    println!("  {title}:");
    println!("    {:<34} {:<58} {:<16} agent live", "test", "subtest", "baseline");
    for r in rows {
        println!(
            "    {:<34} {:<58} {:<16} {}",
            r.test,
            r.subtest.as_deref().unwrap_or("(exit code)"),
            r.baseline,
            r.agent
        );
    }
}

/// Print the report of `runs`.
pub fn report(runs: &[KernelRun]) {
    println!("\n== the kernel's bonding selftests: baseline vs agent live ==");
    for k in runs {
        let kernel = [&k.baseline, &k.agent].iter().map(|r| r.vm.kernel.as_str()).find(|v| !v.is_empty());
        println!(
            "\n{} ({}): wall clock {} for both boots (baseline {}, agent live {})",
            k.flavour,
            kernel.unwrap_or("did not boot"),
            mmss(k.wall),
            mmss(k.baseline.wall),
            mmss(k.agent.wall)
        );
        println!("  {:<34} {:<24} {:<24}", "test program", "baseline", "agent live");
        for t in &k.tests {
            let (b, a) = (verdict(&k.baseline, t), verdict(&k.agent, t));
            let mark = if k.comparison.differences.iter().chain(&k.comparison.missing).any(|r| &r.test == t) {
                "  <- DIFFERS"
            } else {
                ""
            };
            println!("  {t:<34} {b:<24} {a:<24}{mark}");
        }
        for (name, r) in [("baseline", &k.baseline), ("agent live", &k.agent)] {
            if let Some(e) = &r.results.error {
                println!("  {name}: HARNESS ERROR: {e}");
            }
            for l in &r.results.dmesg_alerts {
                println!("  {name} dmesg: {l}");
            }
        }
        for n in &k.agent.results.agent_notes {
            println!("  agent check: {n}");
        }
        match k.agent.results.agent_final.as_deref() {
            Some("ok") => println!("  agent at the end: alive, exabondst0 managed, vetoes in force"),
            other => println!("  agent at the end: NOT OK ({})", other.unwrap_or("no final check: see the log above")),
        }
        rows("failing in both runs (not a difference)", &k.comparison.both_failing);
    }
    println!("\n== selftest verdicts that differ with the agent live ==");
    let mut any = false;
    for k in runs {
        let diffs: Vec<Row> = k.comparison.missing.iter().chain(&k.comparison.differences).cloned().collect();
        if !diffs.is_empty() {
            any = true;
            println!("{}:", k.flavour);
            rows("differences", &diffs);
        }
    }
    if !any {
        println!("none");
    }
    for k in runs {
        let problems = k.problems();
        println!(
            "selftests {}: {} test program(s), {} verdict(s) differ, {} missing, {}",
            k.flavour,
            k.tests.len(),
            k.comparison.differences.len(),
            k.comparison.missing.len(),
            if problems.is_empty() { "ok".to_owned() } else { format!("FAILED: {}", problems.join("; ")) }
        );
    }
}
