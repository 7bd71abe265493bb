//! Statistics of the samples: percentiles, distributions, and how figures are shown.

use serde_json::{json, Value};

/// A count as a float, for shares and plot coordinates.
#[expect(clippy::cast_precision_loss, reason = "exact up to 2^53, far beyond any count here")]
pub(super) fn count(n: usize) -> f64 {
    n as f64
}

/// Nanoseconds from `from` to `to` (0 when `to` is earlier), as a float.
#[expect(clippy::cast_precision_loss, reason = "exact up to 2^53 ns (104 days), far beyond any span here")]
pub(super) fn span_ns(from: u64, to: u64) -> f64 {
    to.saturating_sub(from) as f64
}

/// Nearest-rank percentile of a sorted slice (NaN when empty).
pub(super) fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a whole rank after ceil(); the saturating cast and the clamp keep it in 1..=len"
    )]
    let rank = ((p / 100.0) * count(sorted.len())).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// The median of an unsorted sample (NaN when empty).
pub(super) fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    pct(&s, 50.0)
}

/// p50 / p99 / max of a sample (µs), sorted.
pub(super) struct Dist {
    /// The sample, in ascending order.
    pub(super) sorted: Vec<f64>,
}

impl Dist {
    /// The distribution of `v`.
    pub(super) fn new(mut v: Vec<f64>) -> Self {
        v.sort_by(f64::total_cmp);
        Self { sorted: v }
    }

    /// Percentile `p` (nearest rank).
    pub(super) fn p(&self, p: f64) -> f64 {
        pct(&self.sorted, p)
    }

    /// The largest value (NaN when empty).
    pub(super) fn max(&self) -> f64 {
        self.sorted.last().copied().unwrap_or(f64::NAN)
    }

    /// As shown in the table.
    pub(super) fn shown(&self) -> String {
        format!(
            "p50 {} / p99 {} / max {}  (n={})",
            us(self.p(50.0)),
            us(self.p(99.0)),
            us(self.max()),
            self.sorted.len()
        )
    }

    /// As written in bench.json.
    pub(super) fn json(&self) -> Value {
        json!({ "n": self.sorted.len(), "p50_us": self.p(50.0), "p99_us": self.p(99.0), "max_us": self.max() })
    }
}

/// A time in µs as shown: `n/a`, whole µs, or ms from 10 ms up.
pub(super) fn us(v: f64) -> String {
    if v.is_nan() {
        "n/a".into()
    } else if v >= 10_000.0 {
        format!("{:.1} ms", v / 1000.0)
    } else {
        format!("{v:.0} µs")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[expect(clippy::float_cmp, reason = "the expected values are members of the sample, exactly")]
    fn percentiles_by_nearest_rank() {
        let d = Dist::new(vec![3.0, 1.0, 2.0]);
        assert_eq!((d.p(50.0), d.p(99.0), d.max()), (2.0, 3.0, 3.0));
        assert_eq!(d.p(0.0), 1.0, "rank 0 is clamped to the first");
        assert!(Dist::new(vec![]).p(50.0).is_nan());
        assert_eq!(median(&[5.0, 1.0, 9.0, 3.0]), 3.0);
        assert_eq!((us(f64::NAN), us(12.4), us(25_000.0)), ("n/a".into(), "12 µs".into(), "25.0 ms".into()));
    }
}
