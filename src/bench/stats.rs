//! Latency samples and their percentiles.

use std::time::Duration;

/// Latencies in microseconds. Each task keeps its own and they are merged at the end, so
/// recording costs a push.
#[derive(Debug, Default, Clone)]
pub struct Latencies(Vec<u32>);

/// Percentiles of one kind of call, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Summary {
    pub count: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Latencies {
    pub fn record(&mut self, latency: Duration) {
        self.0
            .push(u32::try_from(latency.as_micros()).unwrap_or(u32::MAX));
    }

    pub fn merge(&mut self, other: Latencies) {
        self.0.extend(other.0);
    }

    pub fn summary(mut self) -> Option<Summary> {
        if self.0.is_empty() {
            return None;
        }
        self.0.sort_unstable();
        let ms = |micros: u32| f64::from(micros) / 1000.0;
        Some(Summary {
            count: self.0.len(),
            p50_ms: ms(percentile(&self.0, 0.50)),
            p99_ms: ms(percentile(&self.0, 0.99)),
            max_ms: ms(*self.0.last().expect("not empty")),
        })
    }
}

/// The nearest-rank percentile of sorted, non-empty samples.
fn percentile(sorted: &[u32], fraction: f64) -> u32 {
    let rank = (fraction * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut latencies = Latencies::default();
        for millis in 1..=100 {
            latencies.record(Duration::from_millis(millis));
        }
        let summary = latencies.summary().expect("samples");
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50_ms, 50.0);
        assert_eq!(summary.p99_ms, 99.0);
        assert_eq!(summary.max_ms, 100.0);
        assert_eq!(Latencies::default().summary(), None);
    }
}
