//! `cargo xtask selftests`: the kernel's own bonding selftests (`tools/testing/selftests/drivers/net/bonding`
//! of the test kernel's Debian sources, unchanged) run twice on each kernel, in two VMs booted at the same
//! time — a baseline with nothing else loaded, and one with the agent live, managing a bond of its own with
//! the BPF LSM vetoes on — and every verdict compared. The test programs whose verdicts differ run again in a
//! second pair of boots, which decides for them (`retry`). A verdict that still differs, a test missing from
//! a run, a VM that does not boot or report, or an agent that stopped managing its bond fails the step.
//!
//! The guest side is `xtask/vm/selftests-guest.sh`; the sources are cached by the set-up
//! (`xtask/vm/testbed.sh`, `get_selftests`).

mod report;
pub mod retry;
mod stage;
pub mod verdicts;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};

use crate::cargo::build_all;
use crate::setup::{kernels, testbed};
use crate::vm_run::{is_kernel_crash, run_boot, Boot, VmRun};
pub use report::report;
use retry::{merge, to_retry, Retried};
use stage::{results, sources, stage, time_limit, time_scale, Results, BONDING};
use verdicts::{compare, test_programs, Comparison};

/// Arguments of `cargo xtask selftests`.
#[derive(clap::Args)]
pub struct SelftestsArgs {
    /// VM kernels: bpo (6.12), stable (6.1) or all.
    #[arg(long, default_value = "all")]
    pub kernel: String,
    /// Only the test programs whose name contains PATTERN, or one of a comma-separated list (e.g.
    /// `bond_options` or `mode-1,lladdr`): for development. CI runs them all.
    #[arg(long, value_name = "PATTERN")]
    pub only: Option<String>,
    /// Leave the agent out: the second boot runs the baseline too. For development — it measures the
    /// tests' own flakiness and exercises the comparison and the retry when the agent cannot run. Not a
    /// verdict on the agent (the step then says so and fails).
    #[arg(long)]
    pub no_agent: bool,
}

/// The two boots of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Nothing else loaded.
    Baseline,
    /// The agent live, managing a bond of its own.
    Agent,
}

impl Mode {
    /// As the guest script and the staging folder name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Baseline => "baseline",
            Self::Agent => "agent",
        }
    }

    /// The staging folder's name of the second boot of a pair running `self` (`--no-agent`: "baseline2").
    fn second_label(self) -> &'static str {
        match self {
            Self::Baseline => "baseline2",
            Self::Agent => "agent",
        }
    }
}

/// One boot: its VM run and what the guest left.
pub struct ModeRun {
    /// The VM run (exit code, kernel, crash lines).
    pub vm: VmRun,
    /// The guest's results.
    pub results: Results,
    /// Wall-clock time of the boot.
    pub wall: Duration,
}

/// One pair of boots (baseline and agent live) running the same test programs at the same time.
pub struct Pair {
    /// The baseline boot.
    pub baseline: ModeRun,
    /// The agent-live boot (`--no-agent`: a second baseline).
    pub agent: ModeRun,
    /// What the second boot ran: `Mode::Agent`, or `Mode::Baseline` with `--no-agent`.
    pub second: Mode,
    /// Their verdicts compared.
    pub comparison: Comparison,
    /// Wall-clock time of the two boots together.
    pub wall: Duration,
}

/// The second pair of boots, for the test programs whose verdicts differed in the first.
pub struct RetryRun {
    /// The test programs run again, and the first pair's differences that called for it.
    pub retried: Vec<Retried>,
    /// The second pair (only the retried programs).
    pub pair: Pair,
}

/// One kernel: both boots, the retry of what differed, and the comparison that counts.
pub struct KernelRun {
    /// Kernel flavour.
    pub flavour: String,
    /// The test programs, in the Makefile's order (after `--only`).
    pub tests: Vec<String>,
    /// The first pair of boots (every test program).
    pub first: Pair,
    /// The second pair, when a verdict differed in the first.
    pub retry: Option<RetryRun>,
    /// The comparison that counts: the first pair's, with the retried programs' rows from the second.
    pub comparison: Comparison,
    /// Wall-clock time of every boot of this kernel.
    pub wall: Duration,
}

impl Pair {
    /// What went wrong with the boots themselves (not the verdicts), each naming `who`.
    fn problems(&self, who: &str) -> Vec<String> {
        let mut p = Vec::new();
        for (m, r) in [(Mode::Baseline, &self.baseline), (Mode::Agent, &self.agent)] {
            let who = format!("{who} {}", m.name());
            if r.vm.kernel.is_empty() {
                p.push(format!("{who}: the VM did not boot (exit {})", r.vm.rc));
            } else if r.vm.rc != 0 {
                p.push(format!(
                    "{who}: the guest's run exited {} (255: no exit code, the VM died or timed out)",
                    r.vm.rc
                ));
            }
            if let Some(e) = &r.results.error {
                p.push(format!("{who}: {e}"));
            }
            if r.vm.lines.iter().any(|l| is_kernel_crash(l)) {
                p.push(format!("{who}: the guest kernel crashed"));
            }
        }
        if self.second == Mode::Agent && self.agent.results.agent_final.as_deref() != Some("ok") {
            p.push(format!(
                "{who} agent: the agent was not alive and managing its bond with the vetoes in force at the end"
            ));
        }
        p
    }
}

impl KernelRun {
    /// What failed the step on this kernel (empty: passed).
    pub fn problems(&self) -> Vec<String> {
        let mut p = self.first.problems(&self.flavour);
        if self.first.second == Mode::Baseline {
            p.push(format!("{}: --no-agent: both boots ran the baseline, the agent was not tested", self.flavour));
        }
        if let Some(r) = &self.retry {
            p.extend(r.pair.problems(&format!("{} (retry)", self.flavour)));
        }
        if self.tests.is_empty() {
            p.push(format!("{}: no test program selected", self.flavour));
        }
        if !self.comparison.missing.is_empty() {
            p.push(format!("{}: {} test(s) missing from a run", self.flavour, self.comparison.missing.len()));
        }
        if !self.comparison.differences.is_empty() {
            p.push(format!(
                "{}: {} verdict(s) differ between the baseline and the agent live",
                self.flavour,
                self.comparison.differences.len()
            ));
        }
        p
    }
}

/// Run `cargo xtask selftests`.
pub fn run(args: &SelftestsArgs) -> anyhow::Result<()> {
    crate::setup::run(&crate::setup::SetupArgs { kernel: args.kernel.clone(), tools_only: false })?;
    let second = if args.no_agent { Mode::Baseline } else { Mode::Agent };
    let runs = selftests(&args.kernel, args.only.as_deref(), second)?;
    report(&runs);
    verdict(&runs)
}

/// Error naming every problem of `runs`, if any.
pub fn verdict(runs: &[KernelRun]) -> anyhow::Result<()> {
    let problems: Vec<String> = runs.iter().flat_map(KernelRun::problems).collect();
    if problems.is_empty() {
        Ok(())
    } else {
        bail!("the kernel's bonding selftests failed:\n  {}", problems.join("\n  "))
    }
}

/// Build the agent and run the selftests on each kernel of `kernel_arg` (the test bed must be set up); the
/// second boot of each pair runs `second` (`Mode::Agent`, or `Mode::Baseline` for `--no-agent`).
pub fn selftests(kernel_arg: &str, only: Option<&str>, second: Mode) -> anyhow::Result<Vec<KernelRun>> {
    selftests_but(kernel_arg, only, second, &[])
}

/// What `cargo xtask test` (and so CI) leaves to `cargo xtask selftests`: 6.12's `bond_options.sh` alone
/// takes ~16 of the 6.12 pair's ~25 minutes under TCG (6.1's sources do not have it);
/// `cargo xtask selftests` runs everything.
pub const LEFT_TO_FULL_RUN: &[(&str, &str)] = &[("bpo", "bond_options.sh")];

/// [`selftests`] without the (kernel, test program) pairs in `skip`, each named in the output.
///
/// # Errors
/// A kernel that cannot be set up or booted, or sources that list no test.
pub fn selftests_but(
    kernel_arg: &str,
    only: Option<&str>,
    second: Mode,
    skip: &[(&str, &str)],
) -> anyhow::Result<Vec<KernelRun>> {
    let ks = kernels(kernel_arg)?;
    testbed(&ks)?;
    // The same build as the end-to-end suite's (the same packages, so cargo does not rebuild the agent).
    let exabond = build_all(true)?.exabond;
    ks.iter()
        .map(|k| {
            let skipped: Vec<&str> = skip.iter().filter(|(f, _)| f == k).map(|(_, t)| *t).collect();
            run_kernel(k, &exabond, only, second, &skipped)
        })
        .collect()
}

/// Both boots of kernel `flavour`, at the same time (each VM is one host thread: single-threaded TCG).
fn run_kernel(
    flavour: &str,
    exabond: &Path,
    only: Option<&str>,
    second: Mode,
    skipped: &[&str],
) -> anyhow::Result<KernelRun> {
    let src = sources(flavour)?;
    let makefile = src.join(BONDING).join("Makefile");
    let all =
        test_programs(&std::fs::read_to_string(&makefile).with_context(|| format!("reading {}", makefile.display()))?);
    if all.is_empty() {
        bail!("{} lists no TEST_PROGS", makefile.display());
    }
    let tests: Vec<String> = match only {
        Some(o) => all.iter().filter(|t| o.split(',').any(|p| !p.is_empty() && t.contains(p))).cloned().collect(),
        None => all.clone(),
    };
    let tests: Vec<String> = tests.into_iter().filter(|t| !skipped.contains(&t.as_str())).collect();
    for t in skipped {
        println!("selftests {flavour}: {t} left to `cargo xtask selftests` (the full run)");
    }
    if tests.is_empty() {
        bail!(
            "--only {}: no test program of kernel {flavour} matches; it has {}",
            only.unwrap_or_default(),
            all.join(", ")
        );
    }
    let limit = time_limit(&src) * time_scale()?;
    println!(
        "selftests {flavour}: {} test program(s) from {}, limit {limit}s each (kselftest's x EXABOND_E2E_TIMEOUT_SCALE); baseline and agent-live boots at once",
        tests.len(),
        src.display()
    );
    let start = Instant::now();
    let first = run_pair(flavour, "", exabond, &src, &tests, limit, second)?;
    let retried = to_retry(&tests, &first.comparison);
    let broken = first.problems(flavour);
    let (retry, comparison) = if retried.is_empty() {
        (None, first.comparison.clone())
    } else if !broken.is_empty() {
        // The step fails on the boots themselves: a retry would cost minutes and change nothing.
        println!(
            "selftests {flavour}: not retrying {} test program(s) whose verdicts differ: the first pair failed ({})",
            retried.len(),
            broken.join("; ")
        );
        (None, first.comparison.clone())
    } else {
        let again: Vec<String> = retried.iter().map(|r| r.test.clone()).collect();
        for r in &retried {
            let why: Vec<String> = r
                .why
                .iter()
                .map(|w| {
                    format!(
                        "{}: baseline {}, agent live {}",
                        w.subtest.as_deref().unwrap_or("exit code"),
                        w.baseline,
                        w.agent
                    )
                })
                .collect();
            println!(
                "selftests {flavour}: retrying {} in both boots: its verdicts differed ({})",
                r.test,
                why.join("; ")
            );
        }
        let pair = run_pair(flavour, "-retry", exabond, &src, &again, limit, second)?;
        let comparison = merge(&first.comparison, &retried, &pair.comparison);
        (Some(RetryRun { retried, pair }), comparison)
    };
    Ok(KernelRun { flavour: flavour.to_owned(), tests, first, retry, comparison, wall: start.elapsed() })
}

/// Both boots of kernel `flavour` running `tests`, at the same time (each VM is one host thread:
/// single-threaded TCG), staged in `<flavour>-<mode><suffix>`.
fn run_pair(
    flavour: &str,
    suffix: &str,
    exabond: &Path,
    src: &Path,
    tests: &[String],
    limit: u64,
    second: Mode,
) -> anyhow::Result<Pair> {
    // The VM's limit: every test at its kselftest limit, plus boot and set-up; a hung test is cut at its own.
    let vm_timeout = (limit + 15) * u64::try_from(tests.len()).unwrap_or(u64::MAX / 2) + 600;
    let vm_timeout = vm_timeout.to_string();
    let env = [("TB_TIMEOUT", vm_timeout.as_str())];
    let dirs: Vec<_> = [(Mode::Baseline, Mode::Baseline.name()), (second, second.second_label())]
        .into_iter()
        .map(|(m, label)| {
            stage(flavour, m, &format!("{label}{suffix}"), src, exabond, tests, limit).map(|d| (label, d))
        })
        .collect::<anyhow::Result<_>>()?;
    let echo = |l: &str| l.starts_with("SELFTEST") || l.contains("TESTBED") || is_kernel_crash(l);
    let start = Instant::now();
    let mut boots: BTreeMap<&str, anyhow::Result<ModeRun>> = std::thread::scope(|s| {
        let handles: Vec<_> = dirs
            .iter()
            .map(|(name, dir)| {
                let (env, echo) = (&env, &echo);
                s.spawn(move || {
                    let label = format!("{flavour}{suffix} {name}");
                    let t0 = Instant::now();
                    let boot = Boot { label: &label, flavour, append: "", env };
                    let vm = run_boot(&boot, dir, "run.sh", echo)?;
                    Ok(ModeRun { vm, results: results(dir, tests), wall: t0.elapsed() })
                })
            })
            .collect();
        dirs.iter()
            .zip(handles)
            .map(|((name, _), h)| (*name, h.join().unwrap_or_else(|_| Err(anyhow::anyhow!("the VM thread panicked")))))
            .collect()
    });
    let wall = start.elapsed();
    let mut take = |name: &str| {
        boots
            .remove(name)
            .unwrap_or_else(|| Err(anyhow::anyhow!("no run")))
            .with_context(|| format!("{flavour}{suffix} {name}"))
    };
    let (baseline, agent) = (take(Mode::Baseline.name())?, take(second.second_label())?);
    let comparison = compare(tests, &baseline.results.tests, &agent.results.tests);
    Ok(Pair { baseline, agent, second, comparison, wall })
}
