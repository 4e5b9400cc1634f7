//! The comparisons: mq-actix against Redis pub/sub and NATS core
//! under the same load generator, each with the rule that decides whether
//! its target is met.

use crate::data::{Server, Summary};
use crate::stats::Spread;
use crate::tables;

/// What a comparison measures, from a case's [`Summary`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Metric {
    /// Owed deliveries per second.
    DeliveryRate,
    /// 99th percentile end-to-end latency, µs.
    P99,
    /// Peak resident memory of the server during the run, bytes.
    PeakRss,
    /// Server memory per idle subscribed connection, bytes.
    BytesPerConnection,
}

impl Metric {
    /// The lowest, median and highest run.
    pub fn spread(self, s: &Summary) -> Option<Spread> {
        match self {
            Metric::DeliveryRate => s.delivery_rate,
            Metric::P99 => s.p99_us,
            Metric::PeakRss => s.peak_rss_bytes,
            Metric::BytesPerConnection => s.bytes_per_connection,
        }
    }

    pub fn lower_is_better(self) -> bool {
        !matches!(self, Metric::DeliveryRate)
    }

    /// A value for a table cell, with its unit.
    pub fn format(self, v: f64) -> String {
        match self {
            Metric::DeliveryRate => tables::rate(v),
            Metric::P99 => tables::micros(v),
            Metric::PeakRss | Metric::BytesPerConnection => tables::bytes(v),
        }
    }

    /// The axis of a chart: the quantity, its unit and the scale factor from
    /// the metric's own unit.
    pub fn axis(self) -> (&'static str, f64) {
        match self {
            Metric::DeliveryRate => ("deliveries per second", 1.0),
            Metric::P99 => ("p99 latency (ms)", 1e-3),
            Metric::PeakRss => ("peak resident memory (MB)", 1e-6),
            Metric::BytesPerConnection => ("server memory per connection (KB)", 1e-3),
        }
    }
}

/// One comparison, and the goal mq-actix is held to in it.
#[derive(Debug, Clone, Copy)]
pub struct Target {
    /// Names the chart: `results/compare-<id>.svg`.
    pub id: &'static str,
    /// What is compared, for the table and the chart title.
    pub what: &'static str,
    /// The case of `results/run.sh` whose runs it reads.
    pub case: &'static str,
    pub metric: Metric,
    /// The servers mq-actix must do better than.
    pub against: &'static [Server],
    /// By how much, for a rate: mq-actix's must be at least this many
    /// times theirs (1.0: any margin). Latency and memory need only be
    /// lower.
    pub by: f64,
    /// An absolute bound mq-actix must also stay within, in the metric's
    /// unit, with how the README states it.
    pub bound: Option<(f64, &'static str)>,
}

/// The comparisons, in the order the README's table lists them.
pub const TARGETS: [Target; 7] = [
    Target {
        id: "fanout-100",
        what: "fanout 1 → 100 subscribers, 64 B, deliveries/s",
        case: "fanout-100",
        metric: Metric::DeliveryRate,
        against: &[Server::Redis, Server::Nats],
        by: 1.4,
        bound: None,
    },
    Target {
        id: "fanout-1000",
        what: "fanout 1 → 1,000 subscribers, 64 B, deliveries/s",
        case: "fanout-1000",
        metric: Metric::DeliveryRate,
        against: &[Server::Redis, Server::Nats],
        by: 1.4,
        bound: None,
    },
    Target {
        id: "pairs",
        what: "pairs, 1,000 clients × 100 messages, msgs/s",
        case: "pairs",
        metric: Metric::DeliveryRate,
        against: &[Server::Redis, Server::Nats],
        by: 1.3,
        bound: None,
    },
    Target {
        id: "queue",
        what: "queue, 10 workers, 2 publishers, delivery one (NATS queue group), msgs/s",
        case: "queue",
        metric: Metric::DeliveryRate,
        against: &[Server::Nats],
        by: 1.3,
        bound: None,
    },
    Target {
        id: "latency-fanout-100",
        what: "p99 latency, fanout 100, window 64",
        case: "fanout-100",
        metric: Metric::P99,
        against: &[Server::Redis],
        by: 1.0,
        bound: None,
    },
    Target {
        id: "memory-fanout-1000",
        what: "peak server memory during fanout 1,000",
        case: "fanout-1000",
        metric: Metric::PeakRss,
        against: &[Server::Redis],
        by: 1.0,
        bound: Some((30e6, "≤ 30 MB")),
    },
    Target {
        id: "conns",
        what: "10,000 idle subscribed connections, server memory per connection",
        case: "conns",
        metric: Metric::BytesPerConnection,
        against: &[],
        by: 1.0,
        bound: Some((4e3, "≤ 4 KB")),
    },
];

/// Whether a target is met.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    Met,
    /// Not met, with what fell short.
    NotMet(Vec<String>),
    /// Some figure is missing, so it cannot be judged.
    NoData(Vec<String>),
}

impl Verdict {
    pub fn cell(&self) -> String {
        match self {
            Verdict::Met => "met".to_string(),
            Verdict::NotMet(why) => format!("**not met** ({})", why.join("; ")),
            Verdict::NoData(what) => format!("no data ({})", what.join(", ")),
        }
    }
}

/// A target's figures and verdict.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub target: Target,
    /// The median per server, in [`Server::ALL`] order.
    pub values: [Option<f64>; 3],
    /// The spread of the runs per server, in [`Server::ALL`] order.
    pub spreads: [Option<Spread>; 3],
    pub verdict: Verdict,
}

impl Outcome {
    pub fn value(&self, server: Server) -> Option<f64> {
        self.values[server as usize]
    }

    /// mq-actix's figure divided by `other`'s: above 1 is better for a rate,
    /// below 1 for latency and memory.
    pub fn ratio(&self, other: Server) -> Option<f64> {
        let (mine, theirs) = (self.value(Server::MqActix)?, self.value(other)?);
        (theirs > 0.0).then(|| mine / theirs)
    }
}

/// Judges `target` on the summaries.
pub fn evaluate(target: Target, summaries: &[Summary]) -> Outcome {
    let spreads = Server::ALL.map(|server| {
        summaries
            .iter()
            .find(|s| s.case == target.case && s.server == server)
            .and_then(|s| target.metric.spread(s))
    });
    let values = spreads.map(|s| s.map(|s| s.median));
    let Some(mine) = values[Server::MqActix as usize] else {
        return Outcome {
            target,
            values,
            spreads,
            verdict: Verdict::NoData(vec!["mq-actix".into()]),
        };
    };
    let better = |a: f64, b: f64| {
        if target.metric.lower_is_better() {
            a < b
        } else if target.by > 1.0 {
            a >= target.by * b
        } else {
            a > b
        }
    };
    let mut missing = Vec::new();
    let mut short = Vec::new();
    for &other in target.against {
        match values[other as usize] {
            None => missing.push(other.label().to_string()),
            Some(theirs) if !better(mine, theirs) => short.push(format!(
                "{} vs {} for {}{}",
                target.metric.format(mine),
                target.metric.format(theirs),
                other.label(),
                match target.by > 1.0 && theirs > 0.0 {
                    true => format!(": {}", tables::ratio(mine / theirs)),
                    false => String::new(),
                }
            )),
            Some(_) => {}
        }
    }
    if let Some((bound, text)) = target.bound {
        if mine > bound {
            short.push(format!("{} is not {text}", target.metric.format(mine)));
        }
    }
    let verdict = if !short.is_empty() {
        Verdict::NotMet(short)
    } else if !missing.is_empty() {
        Verdict::NoData(missing)
    } else {
        Verdict::Met
    };
    Outcome {
        target,
        values,
        spreads,
        verdict,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::summarize;
    use crate::data::tests::{report_json, run};

    fn summaries(rates: [Option<f64>; 3]) -> Vec<Summary> {
        let runs: Vec<_> = Server::ALL
            .iter()
            .zip(rates)
            .filter_map(|(&server, rate)| {
                let rate = rate?;
                let json = report_json("fanout", 100, rate, rate / 1000.0);
                Some(run("fanout-100", server, 1, &json, Some(20_000)))
            })
            .collect();
        summarize(&runs)
    }

    #[test]
    fn beating_both_is_met() {
        let outcome = evaluate(TARGETS[0], &summaries([Some(3e6), Some(1e6), Some(2e6)]));
        assert_eq!(outcome.verdict, Verdict::Met);
        assert_eq!(outcome.ratio(Server::Redis), Some(3.0));
        assert_eq!(outcome.ratio(Server::Nats), Some(1.5));
    }

    #[test]
    fn losing_to_one_is_not_met_and_says_why() {
        let outcome = evaluate(TARGETS[0], &summaries([Some(2e6), Some(1e6), Some(4e6)]));
        assert_eq!(
            outcome.verdict,
            Verdict::NotMet(vec!["2,000,000/s vs 4,000,000/s for NATS: 0.50×".into()])
        );
        assert!(outcome.verdict.cell().starts_with("**not met**"));
    }

    #[test]
    fn a_rate_must_beat_the_other_by_the_factor() {
        // fanout 100 is held to 1.4 times Redis and NATS.
        let outcome = evaluate(
            TARGETS[0],
            &summaries([Some(1.3e6), Some(1e6), Some(0.5e6)]),
        );
        assert_eq!(
            outcome.verdict,
            Verdict::NotMet(vec!["1,300,000/s vs 1,000,000/s for Redis: 1.30×".into()])
        );
        let outcome = evaluate(
            TARGETS[0],
            &summaries([Some(1.4e6), Some(1e6), Some(0.5e6)]),
        );
        assert_eq!(outcome.verdict, Verdict::Met);
    }

    #[test]
    fn lower_is_better_for_latency() {
        // p99 is rate / 1000 in the fixture: mq-actix 1 ms against Redis 2 ms.
        let outcome = evaluate(TARGETS[4], &summaries([Some(1e6), Some(2e6), None]));
        assert_eq!(outcome.verdict, Verdict::Met);
        assert_eq!(outcome.ratio(Server::Redis), Some(0.5));
        assert_eq!(outcome.ratio(Server::Nats), None);
    }

    #[test]
    fn missing_figures_are_no_data() {
        let outcome = evaluate(TARGETS[0], &summaries([Some(3e6), None, Some(1e6)]));
        assert_eq!(outcome.verdict, Verdict::NoData(vec!["Redis".into()]));
        let outcome = evaluate(TARGETS[0], &summaries([None, Some(1e6), Some(1e6)]));
        assert_eq!(outcome.verdict, Verdict::NoData(vec!["mq-actix".into()]));
        assert_eq!(outcome.verdict.cell(), "no data (mq-actix)");
    }

    #[test]
    fn an_absolute_bound_must_hold_too() {
        let target = Target {
            case: "fanout-100",
            ..TARGETS[5]
        };
        // 20,000 KiB = 20.5 MB: within 30 MB, and Redis uses the same.
        let outcome = evaluate(target, &summaries([Some(1.0), Some(1.0), None]));
        assert!(matches!(outcome.verdict, Verdict::NotMet(ref why) if why.len() == 1));
        let tight = Target {
            bound: Some((1e6, "≤ 1 MB")),
            against: &[],
            ..target
        };
        let outcome = evaluate(tight, &summaries([Some(1.0), None, None]));
        assert_eq!(
            outcome.verdict,
            Verdict::NotMet(vec!["20.5 MB is not ≤ 1 MB".into()])
        );
    }
}
