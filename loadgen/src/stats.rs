//! Figures shared by every task of a run: one clock, live counters that the
//! progress line reads, and the latency histograms.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use tokio::time::Instant;

use crate::check::Published;

/// Longest latency the histograms resolve; anything longer is recorded as
/// this, and a run that long has already failed its stall checks.
const LATENCY_CEILING: Duration = Duration::from_secs(3600);

/// Significant decimal digits kept per latency: 0.1% resolution.
const LATENCY_DIGITS: u8 = 3;

/// The run's shared epoch: message stamps are nanoseconds since it, so a
/// receiver can time a message sent by any other task of the process.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch: Instant,
}

impl Clock {
    /// Starts the clock; every stamp of the run is relative to this moment.
    pub fn start() -> Clock {
        Clock {
            epoch: Instant::now(),
        }
    }

    /// Nanoseconds since the epoch.
    pub fn now_ns(&self) -> u64 {
        self.ns_at(Instant::now())
    }

    /// Nanoseconds from the epoch to `at`.
    pub fn ns_at(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX)
    }
}

/// Counters every task bumps as it goes; relaxed atomics, since they are
/// only summed and read for display or once the tasks have finished.
#[derive(Debug)]
pub struct Live {
    pub clock: Clock,
    /// Messages written to a socket.
    pub sent: AtomicU64,
    /// Replies received to those messages.
    pub acked: AtomicU64,
    /// Owed deliveries received for the first time, at all receivers.
    pub fresh: AtomicU64,
    /// Violations seen so far, for the progress line only.
    pub violations: AtomicU64,
    /// When the last reply to a message and the last owed delivery arrived.
    pub last_ack_ns: AtomicU64,
    pub last_delivery_ns: AtomicU64,
    /// Publishers that have stopped sending for good.
    pub writers_stopped: AtomicUsize,
    /// Publishers that have stopped sending and have every reply they will
    /// get.
    pub publishers_done: AtomicUsize,
    /// Messages each publisher has sent, final once it has stopped.
    pub sent_by_publisher: Vec<AtomicU64>,
    /// Messages of each publisher the server has acknowledged.
    pub acked_by_publisher: Vec<AtomicU64>,
    pub latencies: Latencies,
}

impl Live {
    /// Counters for a run with `publishers` publishers.
    pub fn new(clock: Clock, publishers: usize) -> anyhow::Result<Live> {
        Ok(Live {
            clock,
            sent: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            fresh: AtomicU64::new(0),
            violations: AtomicU64::new(0),
            last_ack_ns: AtomicU64::new(0),
            last_delivery_ns: AtomicU64::new(0),
            writers_stopped: AtomicUsize::new(0),
            publishers_done: AtomicUsize::new(0),
            sent_by_publisher: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            acked_by_publisher: (0..publishers).map(|_| AtomicU64::new(0)).collect(),
            latencies: Latencies::new()?,
        })
    }

    /// What each publisher sent and had acknowledged so far.
    pub fn published(&self) -> Published {
        let load =
            |counts: &[AtomicU64]| counts.iter().map(|n| n.load(Ordering::Relaxed)).collect();
        Published {
            acked: load(&self.acked_by_publisher),
            sent: load(&self.sent_by_publisher),
        }
    }

    /// Marks `n` messages as sent by `publisher`, acknowledged as well, for a
    /// phase that checks messages published in an earlier one.
    pub fn already_published(&self, publisher: usize, n: u64) {
        for counts in [&self.sent_by_publisher, &self.acked_by_publisher] {
            if let Some(slot) = counts.get(publisher) {
                slot.store(n, Ordering::Relaxed);
            }
        }
    }
}

/// Latency histograms in nanoseconds, sharded so that receivers on
/// different threads rarely wait on one lock.
#[derive(Debug)]
pub struct Latencies {
    shards: Vec<Mutex<Histogram<u64>>>,
}

impl Latencies {
    fn new() -> anyhow::Result<Latencies> {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shards = (0..threads * 4)
            .map(|_| Ok(Mutex::new(empty_histogram()?)))
            .collect::<anyhow::Result<_>>()?;
        Ok(Latencies { shards })
    }

    /// Records a batch of samples into the shard picked by `key`.
    pub fn record(&self, key: usize, samples: &[u64]) {
        if samples.is_empty() {
            return;
        }
        let mut shard = self.shards[key % self.shards.len()]
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for &ns in samples {
            shard.saturating_record(ns);
        }
    }

    /// All shards added together.
    pub fn merged(&self) -> anyhow::Result<Histogram<u64>> {
        let mut all = empty_histogram()?;
        for shard in &self.shards {
            all.add(&*shard.lock().unwrap_or_else(PoisonError::into_inner))?;
        }
        Ok(all)
    }
}

/// CPU time this process has used so far, user and system together: what
/// loadgen itself costs, to tell whether it or the server is the bottleneck.
pub fn cpu_time() -> Option<Duration> {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: the pointer is to a whole `rusage`, which getrusage fills in.
    let status = unsafe { libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) };
    if status != 0 {
        return None;
    }
    // SAFETY: an all-zero `rusage` is valid, and getrusage has filled it.
    let usage = unsafe { usage.assume_init() };
    let seconds = |t: libc::timeval| {
        Duration::from_secs(u64::try_from(t.tv_sec).ok()?)
            .checked_add(Duration::from_micros(u64::try_from(t.tv_usec).ok()?))
    };
    seconds(usage.ru_utime)?.checked_add(seconds(usage.ru_stime)?)
}

/// CPU time process `pid` has used so far, user and system together, from
/// /proc (Linux only): the server's, to set loadgen's own cost beside it,
/// since on a shared machine whatever loadgen spends is taken from it.
pub fn process_cpu_time(pid: u32) -> anyhow::Result<Duration> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name, in parentheses, may hold spaces; fields count from
    // after it, where the state is field 3 and utime and stime 14 and 15.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .with_context(|| format!("no command name in {path}"))?;
    let mut fields = after_name.split_whitespace().skip(11);
    let mut ticks = || -> anyhow::Result<u64> {
        let field = fields
            .next()
            .with_context(|| format!("too few fields in {path}"))?;
        Ok(field.parse()?)
    };
    let ticks = ticks()? + ticks()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let per_second = u64::try_from(per_second)
        .ok()
        .filter(|&n| n > 0)
        .unwrap_or(100);
    Ok(Duration::from_nanos(ticks * 1_000_000_000 / per_second))
}

/// A histogram covering 1 ns to [`LATENCY_CEILING`].
pub fn empty_histogram() -> anyhow::Result<Histogram<u64>> {
    let ceiling = u64::try_from(LATENCY_CEILING.as_nanos())?;
    Ok(Histogram::new_with_bounds(1, ceiling, LATENCY_DIGITS)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_process_cpu_time_as_getrusage_does() {
        let spin = std::time::Instant::now();
        let mut x = 0u64;
        while spin.elapsed() < Duration::from_millis(50) {
            x = std::hint::black_box(x.wrapping_add(1));
        }
        let ours = cpu_time().unwrap();
        let from_proc = process_cpu_time(std::process::id()).unwrap();
        // /proc counts in clock ticks (10 ms), getrusage in microseconds.
        let tick = Duration::from_millis(20);
        assert!(from_proc <= ours + tick && ours <= from_proc + tick + tick);
        assert!(from_proc > Duration::ZERO);
        assert!(process_cpu_time(u32::MAX).is_err());
    }
}
