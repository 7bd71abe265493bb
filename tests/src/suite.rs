//! Test bookkeeping: one PASS/FAIL line per test, measured figures, and the closing count line.

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
                self.failed += 1;
                println!("E2E FAIL {name}: {e:#}");
                None
            }
        }
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
