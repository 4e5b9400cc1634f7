//! The variants of a plain case read beside it: the same load with bigger
//! messages (the size sweep: `fanout-100-16k` beside `fanout-100`), and
//! the same load with mq-actix on disk (`queue-fsync-batch` beside
//! `queue`, whose mq-actix figure is the in-memory one). The charts and the
//! tables of both read the rows built here, so that they always agree.

use crate::data::{CaseName, Fsync, Server, Summary, Variant};
use crate::stats::Spread;
use crate::tables;
use crate::targets::Verdict;

/// One message size of one plain case: each server's deliveries per
/// second.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeRow<'a> {
    pub case: &'a str,
    pub plain: &'a str,
    /// Bytes per message, from loadgen's parameters.
    pub size: usize,
    /// In [`Server::ALL`] order.
    pub spreads: [Option<Spread>; 3],
}

impl SizeRow<'_> {
    /// mq-actix's median divided by `other`'s.
    pub fn ratio(&self, other: Server) -> Option<f64> {
        let median = |s: Server| self.spreads[s as usize].map(|s| s.median);
        let (mine, theirs) = (median(Server::MqActix)?, median(other)?);
        (theirs > 0.0).then(|| mine / theirs)
    }
}

/// The size sweep: for each plain case with a size variant, the plain case
/// itself (its messages are the smallest) and then each size variant, in
/// reading order.
pub fn size_rows(summaries: &[Summary]) -> Vec<SizeRow<'_>> {
    let swept: Vec<&str> = summaries
        .iter()
        .map(|s| CaseName::parse(&s.case))
        .filter(|n| matches!(n.variant, Some(Variant::Size(_))))
        .map(|n| n.plain)
        .collect();
    let mut cases: Vec<&Summary> = summaries
        .iter()
        .filter(|s| {
            let name = CaseName::parse(&s.case);
            swept.contains(&name.plain) && matches!(name.variant, None | Some(Variant::Size(_)))
        })
        .collect();
    // Summaries come in reading order with one per server: keep each case once.
    cases.dedup_by(|a, b| a.case == b.case);
    cases
        .into_iter()
        .map(|first| SizeRow {
            case: &first.case,
            plain: CaseName::parse(&first.case).plain,
            size: first.params.size,
            spreads: Server::ALL.map(|server| {
                summaries
                    .iter()
                    .find(|s| s.case == first.case && s.server == server)
                    .and_then(|s| s.delivery_rate)
            }),
        })
        .collect()
}

/// The least share of its in-memory deliveries per second that mq-actix
/// must keep on disk with `--fsync batch`, and the plain cases held to it:
/// `batch` is the mode to pick for throughput, so it must not give most of
/// the throughput away. `always` waits for the disk, so no floor of ours
/// would mean anything on another disk.
pub const BATCH_FLOOR: f64 = 0.7;
pub const BATCH_FLOOR_CASES: [&str; 2] = ["fanout-100", "queue"];

/// One durable case: mq-actix on disk, mq-actix in memory (its plain case)
/// and Redis with its append-only file, in deliveries per second.
#[derive(Debug, Clone, PartialEq)]
pub struct DurableRow<'a> {
    pub case: &'a str,
    pub plain: &'a str,
    pub fsync: Fsync,
    pub on_disk: Option<Spread>,
    pub memory: Option<Spread>,
    pub redis_aof: Option<Spread>,
    /// Whether mq-actix kept [`BATCH_FLOOR`] of its in-memory figure, for
    /// the cases held to it.
    pub verdict: Option<Verdict>,
}

impl DurableRow<'_> {
    /// mq-actix on disk divided by mq-actix in memory.
    pub fn of_memory(&self) -> Option<f64> {
        ratio(self.on_disk?, self.memory?)
    }

    /// mq-actix on disk divided by Redis with its AOF.
    pub fn of_redis(&self) -> Option<f64> {
        ratio(self.on_disk?, self.redis_aof?)
    }
}

fn ratio(a: Spread, b: Spread) -> Option<f64> {
    (b.median > 0.0).then(|| a.median / b.median)
}

/// A row per durable case (`…-fsync-MODE`), in reading order.
pub fn durable_rows(summaries: &[Summary]) -> Vec<DurableRow<'_>> {
    let rate = |case: &str, server: Server| {
        summaries
            .iter()
            .find(|s| s.case == case && s.server == server)
            .and_then(|s| s.delivery_rate)
    };
    let mut rows: Vec<DurableRow> = Vec::new();
    for s in summaries {
        let name = CaseName::parse(&s.case);
        let Some(Variant::Fsync(fsync)) = name.variant else {
            continue;
        };
        if rows.last().is_some_and(|r| r.case == s.case) {
            continue;
        }
        let mut row = DurableRow {
            case: &s.case,
            plain: name.plain,
            fsync,
            on_disk: rate(&s.case, Server::MqActix),
            memory: rate(name.plain, Server::MqActix),
            redis_aof: rate(&s.case, Server::Redis),
            verdict: None,
        };
        if fsync == Fsync::Batch && BATCH_FLOOR_CASES.contains(&name.plain) {
            row.verdict = Some(floor_verdict(&row));
        }
        rows.push(row);
    }
    rows
}

fn floor_verdict(row: &DurableRow) -> Verdict {
    let mut missing = Vec::new();
    if row.on_disk.is_none() {
        missing.push(format!("mq-actix on disk ({})", row.case));
    }
    if row.memory.is_none() {
        missing.push(format!("mq-actix in memory ({})", row.plain));
    }
    match row.of_memory() {
        Some(r) if r >= BATCH_FLOOR => Verdict::Met,
        Some(r) => Verdict::NotMet(vec![format!(
            "{} of memory, below {}",
            tables::ratio(r),
            tables::ratio(BATCH_FLOOR)
        )]),
        None => Verdict::NoData(missing),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::summarize;
    use crate::data::tests::{report_json, run};

    fn rate_run(case: &str, server: Server, rate: f64, size: usize) -> crate::data::Run {
        let json = report_json("fanout", 100, rate, 5.0)
            .replace(r#""size":64"#, &format!(r#""size":{size}"#));
        run(case, server, 1, &json, None)
    }

    #[test]
    fn the_size_sweep_starts_from_the_plain_case() {
        let runs = [
            rate_run("fanout-100-16k", Server::MqActix, 1e5, 16384),
            rate_run("fanout-100", Server::MqActix, 4e6, 64),
            rate_run("fanout-100", Server::Redis, 2e6, 64),
            rate_run("fanout-100-1k", Server::Redis, 1e6, 1024),
            rate_run("fanout-100-1k", Server::MqActix, 2e6, 1024),
            // Not swept: no size variant of fanout-1000 or pairs.
            rate_run("fanout-1000", Server::MqActix, 5e6, 64),
            rate_run("pairs", Server::MqActix, 5e5, 64),
            // Other variants of a swept case are not sizes.
            rate_run("fanout-100-tls", Server::MqActix, 3e6, 64),
            rate_run("fanout-100-fsync-batch", Server::MqActix, 3e6, 64),
        ];
        let summaries = summarize(&runs);
        let rows = size_rows(&summaries);
        let cases: Vec<(&str, usize)> = rows.iter().map(|r| (r.case, r.size)).collect();
        assert_eq!(
            cases,
            [
                ("fanout-100", 64),
                ("fanout-100-1k", 1024),
                ("fanout-100-16k", 16384)
            ]
        );
        assert!(rows.iter().all(|r| r.plain == "fanout-100"));
        assert_eq!(rows[1].ratio(Server::Redis), Some(2.0));
        assert_eq!(rows[2].ratio(Server::Redis), None);
        assert_eq!(rows[2].spreads[2], None);
    }

    #[test]
    fn a_durable_case_reads_beside_mq_actix_in_memory() {
        let runs = [
            rate_run("queue", Server::MqActix, 4e5, 64),
            rate_run("queue", Server::Nats, 5e5, 64),
            rate_run("queue-fsync-always", Server::MqActix, 2e5, 64),
            rate_run("queue-fsync-batch", Server::MqActix, 3e5, 64),
            rate_run("fanout-100", Server::MqActix, 4e6, 64),
            rate_run("fanout-100-fsync-batch", Server::MqActix, 2e6, 64),
            rate_run("fanout-100-fsync-batch", Server::Redis, 1e6, 64),
            rate_run("pairs-fsync-batch", Server::MqActix, 4e5, 64),
        ];
        let summaries = summarize(&runs);
        let rows = durable_rows(&summaries);
        let cases: Vec<&str> = rows.iter().map(|r| r.case).collect();
        assert_eq!(
            cases,
            [
                "fanout-100-fsync-batch",
                "pairs-fsync-batch",
                "queue-fsync-batch",
                "queue-fsync-always"
            ]
        );
        let fanout = &rows[0];
        assert_eq!(
            (fanout.of_memory(), fanout.of_redis()),
            (Some(0.5), Some(2.0))
        );
        assert_eq!(
            fanout.verdict,
            Some(Verdict::NotMet(vec!["0.50× of memory, below 0.70×".into()]))
        );
        // pairs is not held to the floor, and its plain case is missing.
        assert_eq!((rows[1].verdict.clone(), rows[1].of_memory()), (None, None));
        assert_eq!(rows[2].of_memory(), Some(0.75));
        assert_eq!(rows[2].verdict, Some(Verdict::Met));
        assert_eq!(
            (rows[3].fsync, rows[3].verdict.clone()),
            (Fsync::Always, None)
        );
        assert_eq!(rows[3].redis_aof, None);
    }

    #[test]
    fn a_floor_without_its_memory_figure_is_no_data() {
        let runs = [rate_run("fanout-100-fsync-batch", Server::MqActix, 2e6, 64)];
        let summaries = summarize(&runs);
        assert_eq!(
            durable_rows(&summaries)[0].verdict,
            Some(Verdict::NoData(vec![
                "mq-actix in memory (fanout-100)".into()
            ]))
        );
    }
}
