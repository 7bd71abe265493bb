//! The selftests' report: per kernel a table of every test program in both runs, the agent's checks and the
//! guest's kernel warnings; last, the verdicts that differ (the tail of a CI log names them).

use std::time::Duration;

use super::retry::persisted;
use super::verdicts::Row;
use super::{KernelRun, Mode, ModeRun, Pair};

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

/// The table of one pair's test programs, the harness errors, the guests' kernel warnings and the agent's
/// checks; `differs`: whether a program's verdicts differ in the comparison that counts.
fn pair_table(tests: &[String], p: &Pair, differs: &dyn Fn(&str) -> bool) {
    let second = if p.second == Mode::Baseline { "baseline 2 (--no-agent)" } else { "agent live" };
    println!("  {:<34} {:<24} {:<24}", "test program", "baseline", second);
    for t in tests {
        let (b, a) = (verdict(&p.baseline, t), verdict(&p.agent, t));
        let mark = if differs(t) { "  <- DIFFERS" } else { "" };
        println!("  {t:<34} {b:<24} {a:<24}{mark}");
    }
    for (name, r) in [("baseline", &p.baseline), ("agent live", &p.agent)] {
        if let Some(e) = &r.results.error {
            println!("  {name}: HARNESS ERROR: {e}");
        }
        for l in &r.results.dmesg_alerts {
            println!("  {name} dmesg: {l}");
        }
    }
    for n in &p.agent.results.agent_notes {
        println!("  agent check: {n}");
    }
    match p.agent.results.agent_final.as_deref() {
        _ if p.second == Mode::Baseline => println!("  agent: left out (--no-agent)"),
        Some("ok") => println!("  agent at the end: alive, exabondst0 managed, vetoes in force"),
        other => println!("  agent at the end: NOT OK ({})", other.unwrap_or("no final check: see the log above")),
    }
}

/// Print the report of `runs`.
pub fn report(runs: &[KernelRun]) {
    println!("\n== the kernel's bonding selftests: baseline vs agent live ==");
    for k in runs {
        let kernel = [&k.first.baseline, &k.first.agent].iter().map(|r| r.vm.kernel.as_str()).find(|v| !v.is_empty());
        println!(
            "\n{} ({}): wall clock {} for all boots; first pair {} (baseline {}, agent live {})",
            k.flavour,
            kernel.unwrap_or("did not boot"),
            mmss(k.wall),
            mmss(k.first.wall),
            mmss(k.first.baseline.wall),
            mmss(k.first.agent.wall)
        );
        let counts = |t: &str| k.comparison.differences.iter().chain(&k.comparison.missing).any(|r| r.test == t);
        let retried = |t: &str| k.retry.as_ref().is_some_and(|r| r.retried.iter().any(|x| x.test == t));
        // In the first pair's table a retried program is marked by its retry's outcome, not by its first run.
        pair_table(&k.tests, &k.first, &|t| counts(t) && !retried(t));
        if let Some(r) = &k.retry {
            println!(
                "  retried in both boots (a second pair, {}): the programs whose verdicts differed; the second pair decides",
                mmss(r.pair.wall)
            );
            for x in &r.retried {
                let outcome = if persisted(&x.test, &r.pair.comparison) {
                    "the difference PERSISTED: counts"
                } else {
                    "did not persist: the first pair's difference does not count"
                };
                println!("    {}: {outcome}; first pair:", x.test);
                for w in &x.why {
                    println!(
                        "      {:<58} baseline {:<16} agent live {}",
                        w.subtest.as_deref().unwrap_or("(exit code)"),
                        w.baseline,
                        w.agent
                    );
                }
            }
            let again: Vec<String> = r.retried.iter().map(|x| x.test.clone()).collect();
            pair_table(&again, &r.pair, &counts);
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
            "selftests {}: {} test program(s), {} retried, {} verdict(s) differ, {} missing, {}",
            k.flavour,
            k.tests.len(),
            k.retry.as_ref().map_or(0, |r| r.retried.len()),
            k.comparison.differences.len(),
            k.comparison.missing.len(),
            if problems.is_empty() { "ok".to_owned() } else { format!("FAILED: {}", problems.join("; ")) }
        );
    }
}
