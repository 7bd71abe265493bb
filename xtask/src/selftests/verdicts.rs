//! The verdicts of the kernel's bonding selftests: the test programs a Makefile lists, what one test
//! printed and exited with, and the comparison of two runs of the same tests (baseline, agent live).

use std::collections::BTreeMap;
use std::fmt;

/// The programs of `TEST_PROGS` in a kselftest Makefile, in order (`:=`/`=`/`+=` lines and their `\`
/// continuations).
pub fn test_programs(makefile: &str) -> Vec<String> {
    let mut progs = Vec::new();
    let mut in_list = false;
    for line in makefile.lines() {
        let mut rest = line.trim();
        if !in_list {
            let Some(after) = rest.strip_prefix("TEST_PROGS") else { continue };
            let after = after.trim_start();
            let Some(value) = ["+=", ":=", "="].iter().find_map(|op| after.strip_prefix(op)) else { continue };
            rest = value.trim();
        }
        in_list = rest.ends_with('\\');
        progs.extend(rest.trim_end_matches('\\').split_whitespace().map(str::to_owned));
    }
    progs
}

/// How a test program ended, from its exit code (kselftest: 0 pass, 4 skip, anything else a failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Exit 0.
    Pass,
    /// Exit 4 (`ksft_skip`).
    Skip,
    /// Any other exit code (124/137: killed at the time limit).
    Fail(i32),
}

impl Outcome {
    /// From an exit code.
    pub fn of(rc: i32) -> Self {
        match rc {
            0 => Self::Pass,
            4 => Self::Skip,
            rc => Self::Fail(rc),
        }
    }

    /// Same verdict: two failures are the same verdict whatever their exit codes.
    pub fn same(self, other: Self) -> bool {
        matches!((self, other), (Self::Pass, Self::Pass) | (Self::Skip, Self::Skip) | (Self::Fail(_), Self::Fail(_)))
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Pass => f.write_str("pass"),
            Self::Skip => f.write_str("skip"),
            Self::Fail(124 | 137) => f.write_str("FAIL (time limit)"),
            Self::Fail(rc) => write!(f, "FAIL (exit {rc})"),
        }
    }
}

/// One test program's run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestRun {
    /// How it ended.
    pub outcome: Outcome,
    /// Wall-clock seconds in the guest.
    pub secs: u64,
    /// Its subtest verdicts, in the order printed: (subtest, verdict).
    pub subtests: Vec<(String, String)>,
}

impl TestRun {
    /// From the guest's `<test>.rc` ("<exit code> <seconds>") and `<test>.log`; `None` if the `.rc` is
    /// not of that form.
    pub fn parse(rc_file: &str, log: &str) -> Option<Self> {
        let mut it = rc_file.split_whitespace();
        let rc = it.next()?.parse().ok()?;
        let secs = it.next()?.parse().ok()?;
        Some(Self { outcome: Outcome::of(rc), secs, subtests: subtests(log) })
    }
}

/// The subtest verdicts a test printed: lib.sh's `TEST: <name>  [ OK ]` (or `[FAIL]`, `[SKIP]`,
/// `[XFAIL]`), and the `PASS`/`FAIL` result lines of the scripts that print one (named "result line": what
/// follows the word, e.g. "captured 2", is a measurement, not a name). A name printed again is numbered
/// (`name #2`), so repeated subtests are compared occurrence by occurrence.
pub fn subtests(log: &str) -> Vec<(String, String)> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for line in log.lines().map(str::trim_end) {
        let parsed = if let Some(rest) = line.strip_prefix("TEST: ") {
            rest.strip_suffix(']').and_then(|r| r.rsplit_once('[')).map(|(name, verdict)| {
                (name.split_whitespace().collect::<Vec<_>>().join(" "), verdict.trim().to_owned())
            })
        } else {
            ["PASS", "FAIL"]
                .into_iter()
                .find(|w| line == *w || line.strip_prefix(w).is_some_and(|r| r.starts_with([',', ' ', ':'])))
                .map(|w| ("result line".to_owned(), w.to_owned()))
        };
        let Some((name, verdict)) = parsed else { continue };
        let n = seen.entry(name.clone()).or_insert(0);
        *n += 1;
        let key = if *n == 1 { name } else { format!("{name} #{n}") };
        out.push((key, verdict));
    }
    out
}

/// A verdict seen in one run and not the other, or a failure seen in both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Row {
    /// The test program.
    pub test: String,
    /// The subtest, `None` for the program's own verdict.
    pub subtest: Option<String>,
    /// The baseline's verdict ("absent" when it has none).
    pub baseline: String,
    /// The agent-live run's verdict ("absent" when it has none).
    pub agent: String,
}

/// Baseline and agent-live runs of the same tests, compared.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Comparison {
    /// Verdicts that differ between the runs: each fails the step.
    pub differences: Vec<Row>,
    /// Tests or subtests that failed in both runs: reported, not a difference.
    pub both_failing: Vec<Row>,
    /// Tests that did not run in one run or both: each fails the step.
    pub missing: Vec<Row>,
}

const ABSENT: &str = "absent";

/// Compare the runs of `tests` (in this order).
pub fn compare(
    tests: &[String],
    baseline: &BTreeMap<String, TestRun>,
    agent: &BTreeMap<String, TestRun>,
) -> Comparison {
    let mut c = Comparison::default();
    let row = |test: &str, subtest: Option<&str>, b: String, a: String| Row {
        test: test.to_owned(),
        subtest: subtest.map(str::to_owned),
        baseline: b,
        agent: a,
    };
    for t in tests {
        let (b, a) = match (baseline.get(t), agent.get(t)) {
            (Some(b), Some(a)) => (b, a),
            (b, a) => {
                let show = |r: Option<&TestRun>| r.map_or_else(|| "did not run".to_owned(), |r| r.outcome.to_string());
                c.missing.push(row(t, None, show(b), show(a)));
                continue;
            }
        };
        let (bo, ao) = (b.outcome, a.outcome);
        if !bo.same(ao) {
            c.differences.push(row(t, None, bo.to_string(), ao.to_string()));
        } else if matches!(bo, Outcome::Fail(_)) {
            c.both_failing.push(row(t, None, bo.to_string(), ao.to_string()));
        }
        let bs: BTreeMap<&str, &str> = b.subtests.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let as_: BTreeMap<&str, &str> = a.subtests.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        // In the order printed: the baseline's subtests, then those only the agent-live run printed.
        let keys = b.subtests.iter().chain(a.subtests.iter().filter(|(k, _)| !bs.contains_key(k.as_str())));
        for (k, _) in keys {
            let (bv, av) =
                (bs.get(k.as_str()).copied().unwrap_or(ABSENT), as_.get(k.as_str()).copied().unwrap_or(ABSENT));
            if bv != av {
                c.differences.push(row(t, Some(k), bv.to_owned(), av.to_owned()));
            } else if bv != "OK" && bv != "PASS" && bv != "SKIP" {
                c.both_failing.push(row(t, Some(k), bv.to_owned(), av.to_owned()));
            }
        }
    }
    c
}

/// Builders of test runs for the unit tests here and in `retry`.
#[cfg(test)]
pub mod test_support {
    use super::{Outcome, TestRun};
    use std::collections::BTreeMap;

    /// A run of exit code `rc` with these (subtest, verdict) lines.
    pub fn run(rc: i32, subs: &[(&str, &str)]) -> TestRun {
        TestRun {
            outcome: Outcome::of(rc),
            secs: 1,
            subtests: subs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect(),
        }
    }

    /// Runs by test name.
    pub fn runs(r: &[(&str, TestRun)]) -> BTreeMap<String, TestRun> {
        r.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Comparison {
        fn same(&self) -> bool {
            self.differences.is_empty() && self.missing.is_empty()
        }
    }

    #[test]
    fn test_programs_of_both_makefiles() {
        let m61 = "# SPDX\nTEST_PROGS := \\\n\tbond-arp-interval-causes-panic.sh \\\n\tbond-break-lacpdu-tx.sh \\\n\tdev_addr_lists.sh\n\nTEST_FILES := \\\n\tlag_lib.sh \\\n\tnet_forwarding_lib.sh\n";
        assert_eq!(
            test_programs(m61),
            ["bond-arp-interval-causes-panic.sh", "bond-break-lacpdu-tx.sh", "dev_addr_lists.sh"]
        );
        let m = "TEST_PROGS := a.sh b.sh\nTEST_PROGS += c.sh \\\n  d.sh\nTEST_PROGS_EXTENDED := x.sh\n";
        assert_eq!(test_programs(m), ["a.sh", "b.sh", "c.sh", "d.sh"]);
        assert!(test_programs("TEST_FILES := a.sh\n").is_empty());
    }

    #[test]
    fn subtests_of_lib_sh_and_result_lines() {
        let log = "setup\nTEST: prio (active-backup ns_ip6_target primary_reselect 1)           [ OK ]\n\
                   TEST: bond_mode                                                 [FAIL]\n\
                   \tbond mode not changed\n\
                   TEST: prio (active-backup ns_ip6_target primary_reselect 1)           [ OK ]\n\
                   TEST: macvlan                                                    [SKIP]\n\
                   TEST: xfail thing                                                [XFAIL]\n\
                   PASS, captured 2\nFAILED to do x\nFAIL\nPASSIVE\n";
        assert_eq!(
            subtests(log),
            [
                ("prio (active-backup ns_ip6_target primary_reselect 1)".to_owned(), "OK".to_owned()),
                ("bond_mode".to_owned(), "FAIL".to_owned()),
                ("prio (active-backup ns_ip6_target primary_reselect 1) #2".to_owned(), "OK".to_owned()),
                ("macvlan".to_owned(), "SKIP".to_owned()),
                ("xfail thing".to_owned(), "XFAIL".to_owned()),
                ("result line".to_owned(), "PASS".to_owned()),
                ("result line #2".to_owned(), "FAIL".to_owned()),
            ]
        );
    }

    #[test]
    fn parse_rc_file() {
        let r = TestRun::parse("1 42\n", "TEST: x  [FAIL]\n").unwrap();
        assert_eq!(r.outcome, Outcome::Fail(1));
        assert_eq!(r.secs, 42);
        assert_eq!(r.subtests.len(), 1);
        assert_eq!(TestRun::parse("4 1", "").unwrap().outcome, Outcome::Skip);
        assert!(TestRun::parse("", "").is_none());
        assert!(TestRun::parse("x 1", "").is_none());
    }

    use super::test_support::{run, runs};

    #[test]
    fn identical_runs_compare_the_same() {
        let tests = vec!["a.sh".to_owned(), "b.sh".to_owned()];
        let b = runs(&[("a.sh", run(0, &[("x", "OK")])), ("b.sh", run(4, &[]))]);
        let c = compare(&tests, &b, &b.clone());
        assert!(c.same(), "{c:?}");
        assert!(c.both_failing.is_empty());
    }

    #[test]
    fn a_changed_verdict_is_a_difference_and_a_shared_failure_is_not() {
        let tests = vec!["a.sh".to_owned(), "b.sh".to_owned()];
        let b = runs(&[
            ("a.sh", run(0, &[("x", "OK"), ("y", "OK")])),
            ("b.sh", run(1, &[("z", "FAIL"), ("result line", "FAIL")])),
        ]);
        let a = runs(&[
            ("a.sh", run(1, &[("x", "FAIL"), ("y", "OK"), ("late", "OK")])),
            ("b.sh", run(124, &[("z", "FAIL"), ("result line", "FAIL")])),
        ]);
        let c = compare(&tests, &b, &a);
        assert!(!c.same());
        let d: Vec<(&str, Option<&str>, &str, &str)> = c
            .differences
            .iter()
            .map(|r| (r.test.as_str(), r.subtest.as_deref(), r.baseline.as_str(), r.agent.as_str()))
            .collect();
        assert_eq!(
            d,
            [
                ("a.sh", None, "pass", "FAIL (exit 1)"),
                ("a.sh", Some("x"), "OK", "FAIL"),
                ("a.sh", Some("late"), "absent", "OK"),
            ]
        );
        assert_eq!(c.both_failing.len(), 3, "{:?}", c.both_failing);
        assert_eq!(c.both_failing[0].agent, "FAIL (time limit)");
        assert!(c.missing.is_empty());
    }

    #[test]
    fn a_test_missing_from_a_run_is_reported() {
        let tests = vec!["a.sh".to_owned(), "b.sh".to_owned()];
        let b = runs(&[("a.sh", run(0, &[])), ("b.sh", run(0, &[]))]);
        let a = runs(&[("a.sh", run(0, &[]))]);
        let c = compare(&tests, &b, &a);
        assert!(!c.same());
        assert_eq!(c.missing.len(), 1);
        assert_eq!((c.missing[0].test.as_str(), c.missing[0].agent.as_str()), ("b.sh", "did not run"));
    }
}
