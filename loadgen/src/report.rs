//! The results of a run: a short table for a person, and one JSON object
//! per run for collecting into `results/`.

use std::fmt::Write as _;
use std::fs::OpenOptions;
use std::io::Write as _;
use std::path::Path;
use std::process::Command;
use std::time::SystemTime;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use crate::check::Violations;
use crate::cli::Args;

/// Everything a run found, as written to `--json`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub scenario: &'static str,
    /// When the run ended, RFC 3339, UTC.
    pub timestamp: String,
    /// `git rev-parse HEAD` of the working directory, when it is a checkout.
    pub git_revision: Option<String>,
    pub server: String,
    pub proto: &'static str,
    pub params: Params,
    /// Length of the measured phase, in seconds.
    pub elapsed_s: f64,
    /// Messages sent, and replies to them.
    pub published: u64,
    pub acked: u64,
    /// Owed deliveries received (first arrivals only), and how many were
    /// owed.
    pub deliveries: u64,
    pub owed: u64,
    /// Replies per second while publishing, and owed deliveries per second
    /// until the last one arrived.
    pub publish_rate: f64,
    pub delivery_rate: f64,
    pub latency: Option<Latency>,
    /// CPU seconds loadgen itself used in the measured phase, in all and per
    /// owed delivery received: evidence that the tool is not the bottleneck.
    pub loadgen_cpu_s: Option<f64>,
    pub loadgen_cpu_s_per_delivery: Option<f64>,
    /// The same for the server, with `--server-pid`: loadgen shares the
    /// machine with it, so loadgen's figure should stay below this one.
    pub server_cpu_s: Option<f64>,
    pub server_cpu_s_per_delivery: Option<f64>,
    /// All violations together; any makes the exit status non-zero.
    pub violations: u64,
    pub correctness: Violations,
    /// Connections that failed during the run, and the first few reasons.
    pub connection_errors: u64,
    pub errors: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay: Option<ReplayFigures>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub conns: Option<ConnsFigures>,
}

/// The settings the run was made with.
#[derive(Debug, Serialize)]
pub struct Params {
    pub clients: usize,
    pub publishers: usize,
    pub topic: String,
    /// `closed` (window-limited) or `open` (fixed rate).
    pub load: &'static str,
    pub window: u32,
    pub rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub messages: Option<u64>,
    pub size: usize,
    pub timeout_s: f64,
    /// Whether every connection spoke TLS (`--tls-ca`), which costs the
    /// server a cipher per byte and a handshake per connection.
    pub tls: bool,
    /// pairs: how many other clients each client sends to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peers: Option<usize>,
    /// replay: the cache size the suffixes were computed for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_size: Option<u64>,
}

impl Params {
    /// The parameters as given; scenarios adjust what they interpret
    /// differently.
    pub fn new(args: &Args, topic: &str) -> Params {
        Params {
            clients: args.clients,
            publishers: args.publishers,
            topic: topic.to_string(),
            load: if args.rate.is_some() {
                "open"
            } else {
                "closed"
            },
            window: args.window,
            rate: args.rate,
            duration_s: args.publish_for().map(|d| d.as_secs_f64()),
            messages: args.messages,
            size: args.size,
            timeout_s: args.timeout.as_secs_f64(),
            tls: args.tls_ca.is_some(),
            peers: None,
            cache_size: None,
        }
    }
}

/// Latency percentiles in microseconds.
#[derive(Debug, Serialize)]
pub struct Latency {
    /// What was timed: `end_to_end` (scheduled or actual send to receipt),
    /// `replay_complete` (subscribe to last replayed message) or
    /// `subscribe` (connect and subscribe).
    pub measures: &'static str,
    pub samples: u64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl Latency {
    /// Percentiles of a nanosecond histogram; `None` when it is empty.
    pub fn of(measures: &'static str, h: &Histogram<u64>) -> Option<Latency> {
        if h.is_empty() {
            return None;
        }
        let us = |q: f64| h.value_at_quantile(q) as f64 / 1000.0;
        Some(Latency {
            measures,
            samples: h.len(),
            p50_us: us(0.5),
            p90_us: us(0.9),
            p99_us: us(0.99),
            p999_us: us(0.999),
            max_us: h.max() as f64 / 1000.0,
        })
    }
}

/// How evenly `queue` spread the messages over its workers.
#[derive(Debug, Serialize)]
pub struct QueueFigures {
    /// Messages each worker got, in subscription order.
    pub per_worker: Vec<u64>,
    /// The smallest and largest share as a fraction of an even share (1.0
    /// is perfectly fair).
    pub min_share: f64,
    pub max_share: f64,
}

/// How fast `replay` served the cache.
#[derive(Debug, Serialize)]
pub struct ReplayFigures {
    /// Messages published before the subscribers came.
    pub published: u64,
    /// Replayed messages received per second, over all subscribers, from
    /// the first subscribe to the last replayed message.
    pub replay_rate: f64,
}

/// What holding idle connections showed.
#[derive(Debug, Serialize)]
pub struct ConnsFigures {
    pub connections: u64,
    /// Connections opened and subscribed per second.
    pub connect_rate: f64,
    pub hold_s: f64,
    /// Connections that answered after the hold.
    pub answered: u64,
    /// The server's resident memory before connecting and while holding,
    /// when `--server-pid` was given.
    pub server_rss_before: Option<u64>,
    pub server_rss_holding: Option<u64>,
    pub bytes_per_connection: Option<f64>,
}

impl Report {
    /// Whether the run found nothing wrong.
    pub fn is_clean(&self) -> bool {
        self.violations == 0 && self.connection_errors == 0 && self.errors.is_empty()
    }

    /// Appends this report as one line of JSON.
    pub fn append_json(&self, path: &Path) -> anyhow::Result<()> {
        let mut line = serde_json::to_string(self)?;
        line.push('\n');
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut file| file.write_all(line.as_bytes()))
            .with_context(|| format!("writing {}", path.display()))
    }

    /// The human summary.
    pub fn table(&self) -> String {
        let p = &self.params;
        let mut out = String::new();
        let mut line = |text: String| {
            out.push_str(&text);
            out.push('\n');
        };
        let load = match p.rate {
            Some(r) => format!("open loop at {}/s", rate(r)),
            None => format!("closed loop, window {}", p.window),
        };
        let plural = |n: usize, what: &str| format!("{n} {what}{}", if n == 1 { "" } else { "s" });
        let shape = match self.scenario {
            "pairs" => format!(
                "{}, each sending to {}",
                plural(p.clients, "client"),
                plural(p.peers.unwrap_or(0), "other")
            ),
            "queue" => format!(
                "{}, {}",
                plural(p.clients, "worker"),
                plural(p.publishers, "publisher")
            ),
            "replay" => format!(
                "{} after {} (cache {})",
                plural(p.clients, "subscriber"),
                plural(p.messages.unwrap_or(0) as usize, "message"),
                p.cache_size.unwrap_or(0)
            ),
            "conns" => plural(p.clients, "idle connection"),
            _ => format!(
                "{}, {}",
                plural(p.clients, "subscriber"),
                plural(p.publishers, "publisher")
            ),
        };
        let sending = if self.scenario == "conns" {
            String::new()
        } else {
            format!(", {load}, {}-byte messages", p.size)
        };
        line(format!(
            "loadgen {} against {} ({}{}): {shape}{sending}, topic {:?}",
            self.scenario,
            self.server,
            self.proto,
            if p.tls { " over TLS" } else { "" },
            p.topic
        ));
        if self.published > 0 {
            line(format!(
                "  published  {:>14} msgs  {:>10}/s  ({} acked)",
                count(self.published),
                rate(self.publish_rate),
                count(self.acked)
            ));
        }
        if self.owed > 0 || self.deliveries > 0 {
            line(format!(
                "  delivered  {:>14} msgs  {:>10}/s  (of {} owed)",
                count(self.deliveries),
                rate(self.delivery_rate),
                count(self.owed)
            ));
        }
        if let Some(q) = &self.queue {
            line(format!(
                "  shares     min {:.3}  max {:.3} of an even share over {} workers",
                q.min_share,
                q.max_share,
                q.per_worker.len()
            ));
        }
        if let Some(r) = &self.replay {
            line(format!(
                "  replayed   {:>10}/s  over all subscribers",
                rate(r.replay_rate)
            ));
        }
        if let Some(c) = &self.conns {
            line(format!(
                "  connected  {:>14}  {:>10}/s  held {:.0}s, {} answered after",
                count(c.connections),
                rate(c.connect_rate),
                c.hold_s,
                count(c.answered)
            ));
            if let (Some(before), Some(holding), Some(per)) = (
                c.server_rss_before,
                c.server_rss_holding,
                c.bytes_per_connection,
            ) {
                line(format!(
                    "  server RSS {} MiB -> {} MiB: {:.1} KiB per connection",
                    before >> 20,
                    holding >> 20,
                    per / 1024.0
                ));
            }
        }
        if let Some(l) = &self.latency {
            line(format!(
                "  latency    p50 {}  p90 {}  p99 {}  p99.9 {}  max {}  ({}, {} samples)",
                micros(l.p50_us),
                micros(l.p90_us),
                micros(l.p99_us),
                micros(l.p999_us),
                micros(l.max_us),
                l.measures.replace('_', " "),
                count(l.samples)
            ));
        }
        if let (Some(cpu), Some(per)) = (self.loadgen_cpu_s, self.loadgen_cpu_s_per_delivery) {
            line(format!(
                "  loadgen    {cpu:.2} CPU-s, {} per delivery",
                micros(per * 1e6)
            ));
        }
        if let (Some(cpu), Some(per)) = (self.server_cpu_s, self.server_cpu_s_per_delivery) {
            line(format!(
                "  server     {cpu:.2} CPU-s, {} per delivery",
                micros(per * 1e6)
            ));
        }
        if self.is_clean() {
            line(format!(
                "  correct    yes: no violation, no connection error ({:.1}s)",
                self.elapsed_s
            ));
        } else {
            let mut kinds = String::new();
            for (name, n) in self.correctness.counts() {
                if n > 0 {
                    let _ = write!(kinds, ", {name} {}", count(n));
                }
            }
            if self.connection_errors > 0 {
                let _ = write!(
                    kinds,
                    ", connection errors {}",
                    count(self.connection_errors)
                );
            }
            line(format!(
                "  FAILED     {} violation(s){kinds}",
                count(self.violations)
            ));
            for example in self.correctness.first.iter().chain(&self.errors) {
                line(format!("    - {example}"));
            }
        }
        out
    }
}

/// A rate for display: 950, 12.3k, 1.23M.
pub fn rate(per_second: f64) -> String {
    if per_second >= 1e6 {
        format!("{:.2}M", per_second / 1e6)
    } else if per_second >= 1e4 {
        format!("{:.1}k", per_second / 1e3)
    } else {
        format!("{per_second:.0}")
    }
}

/// A count with thousands separators.
fn count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A duration in microseconds for display, in the unit that reads best.
fn micros(us: f64) -> String {
    if us >= 1e6 {
        format!("{:.2}s", us / 1e6)
    } else if us >= 1e3 {
        format!("{:.2}ms", us / 1e3)
    } else if us >= 10.0 {
        format!("{us:.0}µs")
    } else {
        format!("{us:.2}µs")
    }
}

/// The time now, RFC 3339 in UTC.
pub fn timestamp() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The current directory's git revision, when git and a checkout are there.
pub fn git_revision() -> Option<String> {
    let out = Command::new("git")
        .args(["rev-parse", "HEAD"])
        .output()
        .ok()?;
    let rev = String::from_utf8(out.stdout).ok()?.trim().to_string();
    (out.status.success() && !rev.is_empty()).then_some(rev)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(count(0), "0");
        assert_eq!(count(1234567), "1,234,567");
        assert_eq!(count(123), "123");
        assert_eq!(rate(950.0), "950");
        assert_eq!(rate(12_345.0), "12.3k");
        assert_eq!(rate(1_234_567.0), "1.23M");
        assert_eq!(micros(12.0), "12µs");
        assert_eq!(micros(0.78), "0.78µs");
        assert_eq!(micros(1500.0), "1.50ms");
    }
}
