//! What every benchmark file shares: how long a group measures.

use std::time::Duration;

use criterion::BenchmarkGroup;

/// A benchmark group measured on the wall clock.
pub type Group<'a> = BenchmarkGroup<'a, criterion::measurement::WallTime>;

/// How long a file's groups warm up and measure, and how many samples they
/// take: each file sets its own from the cost of one iteration, so that the
/// whole `cargo bench` stays well under 10 minutes on 2 busy cores.
pub struct Timing {
    pub warm_up: Duration,
    pub measure: Duration,
    pub samples: usize,
}

impl Timing {
    pub fn apply(&self, group: &mut Group<'_>) {
        group
            .warm_up_time(self.warm_up)
            .measurement_time(self.measure)
            .sample_size(self.samples);
    }
}
