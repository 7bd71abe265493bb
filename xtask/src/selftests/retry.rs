//! The retry policy of the selftests: under TCG and a loaded host some subtests are timing-sensitive
//! (6.12's `bond_options.sh`: `prio` and `arp_validate` flip between runs, in both directions, with or
//! without the agent). A test program whose verdict or any subtest verdict differs between the two boots is
//! run once more **in both boots** (a second pair of boots for just those programs), and the second pair
//! decides for it: every difference the second pair shows counts, whether or not the first showed it (so a
//! systematic difference, which reproduces, still fails the step; a flip that does not come back does not).
//! A test missing from a run is not retried: the boot that lost it failed the step already.

use super::verdicts::{Comparison, Row};

/// A test program retried and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retried {
    /// The test program.
    pub test: String,
    /// The first pair's differences for it.
    pub why: Vec<Row>,
}

/// The test programs of `first` to run again, in the order of `tests`, with the differences that call for it.
pub fn to_retry(tests: &[String], first: &Comparison) -> Vec<Retried> {
    tests
        .iter()
        .filter_map(|t| {
            let why: Vec<Row> = first.differences.iter().filter(|r| &r.test == t).cloned().collect();
            (!why.is_empty()).then(|| Retried { test: t.clone(), why })
        })
        .collect()
}

/// The comparison that counts: `first` with the rows of the `retried` test programs replaced by those of
/// `second` (the comparison of the second pair of boots, which ran only them).
pub fn merge(first: &Comparison, retried: &[Retried], second: &Comparison) -> Comparison {
    let was_retried = |r: &Row| retried.iter().any(|x| x.test == r.test);
    let pick = |a: &[Row], b: &[Row]| -> Vec<Row> {
        a.iter().filter(|r| !was_retried(r)).chain(b.iter().filter(|r| was_retried(r))).cloned().collect()
    };
    Comparison {
        differences: pick(&first.differences, &second.differences),
        both_failing: pick(&first.both_failing, &second.both_failing),
        missing: pick(&first.missing, &second.missing),
    }
}

/// Whether a retried test's difference persisted: the second pair differs on it too, or lost it.
pub fn persisted(test: &str, second: &Comparison) -> bool {
    second.differences.iter().chain(&second.missing).any(|r| r.test == test)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::selftests::verdicts::compare;

    use crate::selftests::verdicts::test_support::{run, runs};

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| (*s).to_owned()).collect()
    }

    /// The first pair: `opts.sh`'s prio flipped (baseline failed it), `agent.sh` failed with the agent,
    /// `both.sh` failed in both, `ok.sh` passed in both.
    fn first() -> (Vec<String>, Comparison) {
        let tests = names(&["ok.sh", "opts.sh", "agent.sh", "both.sh"]);
        let b = runs(&[
            ("ok.sh", run(0, &[("x", "OK")])),
            ("opts.sh", run(1, &[("prio", "FAIL"), ("mode", "OK")])),
            ("agent.sh", run(0, &[("recovery", "OK")])),
            ("both.sh", run(1, &[("y", "FAIL")])),
        ]);
        let a = runs(&[
            ("ok.sh", run(0, &[("x", "OK")])),
            ("opts.sh", run(0, &[("prio", "OK"), ("mode", "OK")])),
            ("agent.sh", run(1, &[("recovery", "FAIL")])),
            ("both.sh", run(1, &[("y", "FAIL")])),
        ]);
        let c = compare(&tests, &b, &a);
        (tests, c)
    }

    #[test]
    fn only_tests_that_differ_are_retried_with_their_reasons() {
        let (tests, c) = first();
        let r = to_retry(&tests, &c);
        let got: Vec<(&str, usize)> = r.iter().map(|x| (x.test.as_str(), x.why.len())).collect();
        assert_eq!(got, [("opts.sh", 2), ("agent.sh", 2)], "exit code and one subtest each: {r:?}");
        assert_eq!(r[0].why[1].subtest.as_deref(), Some("prio"));
    }

    #[test]
    fn a_flip_that_does_not_come_back_is_dropped_and_a_systematic_difference_stays() {
        let (tests, c) = first();
        let retried = to_retry(&tests, &c);
        let again = names(&["opts.sh", "agent.sh"]);
        // Second pair: the flaky prio passes in both; the agent-caused failure reproduces.
        let b = runs(&[
            ("opts.sh", run(0, &[("prio", "OK"), ("mode", "OK")])),
            ("agent.sh", run(0, &[("recovery", "OK")])),
        ]);
        let a = runs(&[
            ("opts.sh", run(0, &[("prio", "OK"), ("mode", "OK")])),
            ("agent.sh", run(1, &[("recovery", "FAIL")])),
        ]);
        let second = compare(&again, &b, &a);
        let merged = merge(&c, &retried, &second);
        assert!(!persisted("opts.sh", &second));
        assert!(persisted("agent.sh", &second));
        let diffs: Vec<(&str, Option<&str>)> =
            merged.differences.iter().map(|r| (r.test.as_str(), r.subtest.as_deref())).collect();
        assert_eq!(diffs, [("agent.sh", None), ("agent.sh", Some("recovery"))]);
        // both.sh was not retried: its shared failure stays reported, not a difference.
        assert!(merged.both_failing.iter().all(|r| r.test == "both.sh"), "{:?}", merged.both_failing);
        assert_eq!(merged.both_failing.len(), 2);
    }

    #[test]
    fn a_retry_that_fails_in_both_boots_is_a_shared_failure_and_a_new_flip_counts() {
        let (tests, c) = first();
        let retried = to_retry(&tests, &c);
        let again = names(&["opts.sh", "agent.sh"]);
        // opts.sh: prio fails in both this time; agent.sh: the old subtest agrees but the exit code flips the
        // other way (a difference the second pair shows counts even if the first did not show that one).
        let b = runs(&[("opts.sh", run(1, &[("prio", "FAIL")])), ("agent.sh", run(1, &[("recovery", "OK")]))]);
        let a = runs(&[("opts.sh", run(1, &[("prio", "FAIL")])), ("agent.sh", run(0, &[("recovery", "OK")]))]);
        let second = compare(&again, &b, &a);
        let m = merge(&c, &retried, &second);
        assert!(!persisted("opts.sh", &second));
        assert!(m.differences.iter().all(|r| r.test == "agent.sh") && m.differences.len() == 1, "{m:?}");
        assert!(m.both_failing.iter().any(|r| r.test == "opts.sh" && r.subtest.as_deref() == Some("prio")));
    }

    #[test]
    fn a_test_lost_by_the_second_pair_is_missing() {
        let (tests, c) = first();
        let retried = to_retry(&tests, &c);
        let again = names(&["opts.sh", "agent.sh"]);
        let b = runs(&[("opts.sh", run(0, &[])), ("agent.sh", run(0, &[]))]);
        let a = runs(&[("agent.sh", run(0, &[]))]);
        let second = compare(&again, &b, &a);
        assert!(persisted("opts.sh", &second));
        let m = merge(&c, &retried, &second);
        assert_eq!(m.missing.len(), 1);
        assert!(m.differences.is_empty());
    }
}
