//! The live progress line: what phase the run is in and the current rates.

use std::cell::Cell;
use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use tokio::time::Instant;

use crate::report::rate;
use crate::stats::Live;

/// How often the rates on the line are recomputed; shorter makes them
/// jitter.
const REFRESH: Duration = Duration::from_millis(500);

/// A spinner line on standard error, hidden with `--quiet` (and by
/// indicatif when standard error is not a terminal).
#[derive(Debug)]
pub struct Progress {
    bar: ProgressBar,
    /// When the rates were last computed, and the counters then.
    last: Cell<(Instant, u64, u64)>,
}

impl Progress {
    /// A spinner, or nothing at all with `quiet`.
    pub fn new(quiet: bool) -> Progress {
        let bar = if quiet {
            ProgressBar::hidden()
        } else {
            let bar = ProgressBar::new_spinner();
            if let Ok(style) = ProgressStyle::with_template("{spinner} {elapsed:>4} {msg}") {
                bar.set_style(style);
            }
            bar.enable_steady_tick(Duration::from_millis(100));
            bar
        };
        Progress {
            bar,
            last: Cell::new((Instant::now(), 0, 0)),
        }
    }

    /// Shows what the run is doing now.
    pub fn phase(&self, text: impl Into<String>) {
        self.bar.set_message(text.into());
    }

    /// Shows the current send and delivery rates, at most every [`REFRESH`].
    pub fn rates(&self, label: &str, live: &Live) {
        let (then, acked_then, fresh_then) = self.last.get();
        let elapsed = then.elapsed();
        if elapsed < REFRESH {
            return;
        }
        let acked = live.acked.load(Ordering::Relaxed);
        let fresh = live.fresh.load(Ordering::Relaxed);
        let secs = elapsed.as_secs_f64();
        self.bar.set_message(format!(
            "{label}: sent {}/s, delivered {}/s, violations {}",
            rate((acked - acked_then) as f64 / secs),
            rate((fresh - fresh_then) as f64 / secs),
            live.violations.load(Ordering::Relaxed),
        ));
        self.last.set((Instant::now(), acked, fresh));
    }

    /// Removes the line before the results are printed.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
