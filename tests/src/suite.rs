//! Test bookkeeping: one PASS/FAIL line per test, one SETUP line per set-up step, measured figures, and the
//! closing count line.

/// Results of the run.
#[derive(Default)]
pub struct Suite {
    passed: u32,
    failed: u32,
}

impl Suite {
    /// Run one named check; a failure is reported with its cause and counted, never aborts the run.
    pub fn check<T>(&mut self, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> Option<T> {
        match f() {
            Ok(v) => {
                self.passed += 1;
                println!("E2E PASS {name}");
                Some(v)
            }
            Err(e) => {
                self.fail(name, &format!("{e:#}"));
                None
            }
        }
    }

    /// Run one set-up step (creating devices, starting an agent): its success is not a passed test (it
    /// prints `E2E SETUP <name>` and is not counted), its failure is a failure like that of a check.
    pub fn setup<T>(&mut self, name: &str, f: impl FnOnce() -> anyhow::Result<T>) -> Option<T> {
        match f() {
            Ok(v) => {
                println!("E2E SETUP {name}");
                Some(v)
            }
            Err(e) => {
                self.fail(&format!("setup: {name}"), &format!("{e:#}"));
                None
            }
        }
    }

    /// Run a check that needs what an earlier check or set-up step returned: with `needs` absent (that
    /// step failed) it is not run and counts as a failure, so a missing prerequisite never turns into a
    /// silent pass nor into a misleading failure of its own.
    pub fn check_after<D, T>(
        &mut self,
        needs: Option<D>,
        name: &str,
        f: impl FnOnce(D) -> anyhow::Result<T>,
    ) -> Option<T> {
        if let Some(d) = needs {
            self.check(name, || f(d))
        } else {
            self.fail(name, "not run: an earlier step it needs failed (see above)");
            None
        }
    }

    fn fail(&mut self, name: &str, why: &str) {
        self.failed += 1;
        println!("E2E FAIL {name}: {why}");
    }

    /// Whether everything passed.
    pub const fn ok(&self) -> bool {
        self.failed == 0 && self.passed > 0
    }

    /// The closing line.
    pub fn summary(&self) -> String {
        format!("e2e: {} passed, {} failed", self.passed, self.failed)
    }
}
