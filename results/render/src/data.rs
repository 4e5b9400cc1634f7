//! What `results/run.sh` leaves in `results/data/`, read back and reduced to
//! one summary per case and server.
//!
//! Each run is two files named after the case, the server and the run:
//! `fanout-100--redis--2.json` holds loadgen's `--json` report (one JSON
//! object per line; the last line counts), and
//! `fanout-100--redis--2.server.json` the server's memory as the script
//! sampled it from `/proc/PID/status`.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use anyhow::{anyhow, Context};
use serde::Deserialize;

use crate::stats::{median, spread, Spread};

/// The servers compared, in the order they appear in tables and charts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Server {
    MqActix,
    Redis,
    Nats,
}

impl Server {
    pub const ALL: [Server; 3] = [Server::MqActix, Server::Redis, Server::Nats];

    /// The name used in file names and by `results/run.sh`.
    pub fn slug(self) -> &'static str {
        match self {
            Server::MqActix => "mq-actix",
            Server::Redis => "redis",
            Server::Nats => "nats",
        }
    }

    /// The name shown to readers.
    pub fn label(self) -> &'static str {
        match self {
            Server::MqActix => "mq-actix",
            Server::Redis => "Redis",
            Server::Nats => "NATS",
        }
    }

    pub fn from_slug(slug: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|s| s.slug() == slug)
    }
}

/// The parts of a loadgen `--json` report that the results use; see
/// `loadgen/src/report.rs` for the meaning of each.
#[derive(Debug, Clone, Deserialize)]
pub struct Report {
    pub scenario: String,
    pub params: Params,
    pub publish_rate: f64,
    pub delivery_rate: f64,
    pub latency: Option<Latency>,
    pub violations: u64,
    pub connection_errors: u64,
    pub queue: Option<QueueFigures>,
    pub replay: Option<ReplayFigures>,
    pub conns: Option<ConnsFigures>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Params {
    pub clients: usize,
    pub publishers: usize,
    pub window: u32,
    pub rate: Option<f64>,
    pub duration_s: Option<f64>,
    pub messages: Option<u64>,
    pub size: usize,
    /// Reports from before loadgen spoke TLS have no such field: they were
    /// plain text.
    #[serde(default)]
    pub tls: bool,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Latency {
    pub p50_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct QueueFigures {
    pub min_share: f64,
    pub max_share: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ReplayFigures {
    pub replay_rate: f64,
}

#[derive(Debug, Clone, Deserialize)]
pub struct ConnsFigures {
    pub connections: u64,
    pub bytes_per_connection: Option<f64>,
}

/// The server's memory around one run, from `/proc/PID/status`, in KiB as
/// the kernel reports it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ServerSample {
    /// `VmRSS` once the server answered, before loadgen started.
    pub vm_rss_before_kib: Option<u64>,
    /// `VmHWM` right after loadgen ended: the peak over the whole run.
    pub vm_hwm_kib: Option<u64>,
}

/// One loadgen run and what the script sampled alongside.
#[derive(Debug, Clone)]
pub struct Run {
    pub name: RunName,
    pub report: Report,
    pub sample: ServerSample,
}

/// What a data file's name says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunName {
    pub case: String,
    pub server: Server,
    pub run: u32,
}

/// Parses `CASE--SERVER--RUN.json`; `None` for any other name, including
/// the `.server.json` samples and the script's other files.
pub fn parse_run_name(file_name: &str) -> Option<RunName> {
    let stem = file_name.strip_suffix(".json")?;
    if stem.ends_with(".server") {
        return None;
    }
    let mut parts = stem.split("--");
    let (case, server, run) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || case.is_empty() {
        return None;
    }
    Some(RunName {
        case: case.to_string(),
        server: Server::from_slug(server)?,
        run: run.parse().ok()?,
    })
}

/// The last non-blank line: loadgen appends one report per run to its
/// `--json` file.
pub fn last_line(text: &str) -> Option<&str> {
    text.lines().rev().find(|l| !l.trim().is_empty())
}

/// Every run in `dir`, in file-name order.
pub fn load_runs(dir: &Path) -> anyhow::Result<Vec<Run>> {
    let mut names: Vec<_> = fs::read_dir(dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| entry.file_name().into_string().ok())
        .filter_map(|file| parse_run_name(&file).map(|name| (file, name)))
        .collect();
    names.sort_by(|a, b| a.0.cmp(&b.0));
    let mut runs = Vec::new();
    for (file, name) in names {
        let path = dir.join(&file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        let line = last_line(&text).ok_or_else(|| anyhow!("{} is empty", path.display()))?;
        let report: Report =
            serde_json::from_str(line).with_context(|| format!("parsing {}", path.display()))?;
        let sample_path = dir.join(format!("{}.server.json", file.trim_end_matches(".json")));
        let sample = match fs::read_to_string(&sample_path) {
            Ok(text) => serde_json::from_str(&text)
                .with_context(|| format!("parsing {}", sample_path.display()))?,
            Err(_) => ServerSample::default(),
        };
        runs.push(Run {
            name,
            report,
            sample,
        });
    }
    Ok(runs)
}

/// The medians over the runs of one case against one server, and for the
/// figures the charts draw, their spread over the runs.
#[derive(Debug, Clone)]
pub struct Summary {
    pub case: String,
    pub server: Server,
    pub runs: usize,
    pub scenario: String,
    /// The parameters of the first run (all runs of a case share them,
    /// except the rate of an open-loop case, which `rate` reports).
    pub params: Params,
    pub rate: Option<f64>,
    pub publish_rate: Option<f64>,
    pub delivery_rate: Option<Spread>,
    pub p50_us: Option<Spread>,
    pub p99_us: Option<Spread>,
    pub p999_us: Option<Spread>,
    /// Peak resident memory of the server during the run (`VmHWM`).
    pub peak_rss_bytes: Option<Spread>,
    pub bytes_per_connection: Option<Spread>,
    pub replay_rate: Option<f64>,
    pub min_share: Option<f64>,
    pub max_share: Option<f64>,
    /// Violations and connection errors, summed over the runs: any makes
    /// the figures suspect.
    pub problems: u64,
}

/// One summary per case and server, cases in reading order (see
/// [`case_order`]) and servers in [`Server::ALL`] order.
pub fn summarize(runs: &[Run]) -> Vec<Summary> {
    let mut groups: BTreeMap<(String, Server), Vec<&Run>> = BTreeMap::new();
    for run in runs {
        groups
            .entry((run.name.case.clone(), run.name.server))
            .or_default()
            .push(run);
    }
    let mut out: Vec<Summary> = groups
        .into_iter()
        .map(|((case, server), runs)| {
            let med = |f: &dyn Fn(&Run) -> Option<f64>| median(runs.iter().filter_map(|r| f(r)));
            let spr = |f: &dyn Fn(&Run) -> Option<f64>| spread(runs.iter().filter_map(|r| f(r)));
            let first = &runs[0].report;
            Summary {
                case,
                server,
                runs: runs.len(),
                scenario: first.scenario.clone(),
                params: first.params.clone(),
                rate: med(&|r| r.report.params.rate),
                publish_rate: med(&|r| Some(r.report.publish_rate).filter(|v| *v > 0.0)),
                delivery_rate: spr(&|r| Some(r.report.delivery_rate).filter(|v| *v > 0.0)),
                p50_us: spr(&|r| r.report.latency.as_ref().map(|l| l.p50_us)),
                p99_us: spr(&|r| r.report.latency.as_ref().map(|l| l.p99_us)),
                p999_us: spr(&|r| r.report.latency.as_ref().map(|l| l.p999_us)),
                peak_rss_bytes: spr(&|r| r.sample.vm_hwm_kib.map(|k| k as f64 * 1024.0)),
                bytes_per_connection: spr(&bytes_per_connection),
                replay_rate: med(&|r| r.report.replay.as_ref().map(|p| p.replay_rate)),
                min_share: med(&|r| r.report.queue.as_ref().map(|q| q.min_share)),
                max_share: med(&|r| r.report.queue.as_ref().map(|q| q.max_share)),
                problems: runs
                    .iter()
                    .map(|r| r.report.violations + r.report.connection_errors)
                    .sum(),
            }
        })
        .collect();
    out.sort_by(|a, b| case_order(&a.case, &b.case).then(a.server.cmp(&b.server)));
    out
}

/// The server's memory per idle connection: loadgen's own figure when it
/// was given the server's pid, else the growth from before the run to its
/// peak, spread over the connections.
fn bytes_per_connection(run: &Run) -> Option<f64> {
    let conns = run.report.conns.as_ref()?;
    if let Some(per) = conns.bytes_per_connection {
        return Some(per);
    }
    let before = run.sample.vm_rss_before_kib?;
    let peak = run.sample.vm_hwm_kib?;
    (conns.connections > 0)
        .then(|| peak.saturating_sub(before) as f64 * 1024.0 / conns.connections as f64)
}

/// Reading order of cases: scenario families in the order the README
/// explains them, and within a family by the number in the name
/// (`fanout-1`, `fanout-100`, `fanout-1000`), a variant of a case right
/// after it (`fanout-100-tls` after `fanout-100`).
pub fn case_order(a: &str, b: &str) -> Ordering {
    case_key(a).cmp(&case_key(b)).then_with(|| a.cmp(b))
}

fn case_key(case: &str) -> (usize, u64) {
    const FAMILIES: [&str; 6] = ["fanout", "latency", "pairs", "queue", "replay", "conns"];
    let (family, number) = match case.split_once('-') {
        Some((family, rest)) => {
            let digits = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            (family, rest[..digits].parse().unwrap_or(u64::MAX))
        }
        None => (case, 0),
    };
    let rank = FAMILIES
        .iter()
        .position(|f| *f == family)
        .unwrap_or(FAMILIES.len());
    (rank, number)
}

#[cfg(test)]
pub mod tests {
    use super::*;

    /// A loadgen report with the given figures, the rest plausible.
    pub fn report_json(scenario: &str, clients: usize, delivery_rate: f64, p99: f64) -> String {
        format!(
            r#"{{"scenario":"{scenario}","timestamp":"2025-01-01T00:00:00Z","git_revision":null,
            "server":"127.0.0.1:7000","proto":"mq",
            "params":{{"clients":{clients},"publishers":1,"topic":"t","load":"closed","window":64,
              "rate":null,"duration_s":10.0,"messages":null,"size":64,"timeout_s":5.0}},
            "elapsed_s":10.0,"published":1000,"acked":1000,"deliveries":1000,"owed":1000,
            "publish_rate":{publish},"delivery_rate":{delivery_rate},
            "latency":{{"measures":"end_to_end","samples":1000,"p50_us":10.0,"p90_us":20.0,
              "p99_us":{p99},"p999_us":{p999},"max_us":100.0}},
            "violations":0,"correctness":{{}},"connection_errors":0,"errors":[]}}"#,
            publish = delivery_rate / clients as f64,
            p999 = p99 * 2.0,
        )
        .replace('\n', "")
    }

    pub fn run(case: &str, server: Server, n: u32, json: &str, hwm_kib: Option<u64>) -> Run {
        Run {
            name: RunName {
                case: case.into(),
                server,
                run: n,
            },
            report: serde_json::from_str(json).unwrap(),
            sample: ServerSample {
                vm_rss_before_kib: Some(1000),
                vm_hwm_kib: hwm_kib,
            },
        }
    }

    #[test]
    fn file_names_say_case_server_and_run() {
        assert_eq!(
            parse_run_name("fanout-100--redis--2.json"),
            Some(RunName {
                case: "fanout-100".into(),
                server: Server::Redis,
                run: 2
            })
        );
        assert_eq!(
            parse_run_name("conns--mq-actix--1.json").map(|n| n.server),
            Some(Server::MqActix)
        );
        for other in [
            "fanout-100--redis--2.server.json",
            "criterion.json",
            "machine.json",
            "fanout--kafka--1.json",
            "fanout--nats--x.json",
            "a--nats--1--2.json",
            "fanout--nats--1.txt",
        ] {
            assert_eq!(parse_run_name(other), None, "{other}");
        }
    }

    #[test]
    fn the_last_line_of_a_json_file_counts() {
        assert_eq!(last_line("{\"a\":1}\n{\"a\":2}\n\n"), Some("{\"a\":2}"));
        assert_eq!(last_line("\n"), None);
    }

    #[test]
    fn runs_reduce_to_medians_per_case_and_server() {
        let runs = [
            run(
                "fanout-100",
                Server::MqActix,
                1,
                &report_json("fanout", 100, 300.0, 5.0),
                Some(10),
            ),
            run(
                "fanout-100",
                Server::MqActix,
                2,
                &report_json("fanout", 100, 100.0, 9.0),
                Some(30),
            ),
            run(
                "fanout-100",
                Server::MqActix,
                3,
                &report_json("fanout", 100, 200.0, 7.0),
                Some(20),
            ),
            run(
                "fanout-1",
                Server::Redis,
                1,
                &report_json("fanout", 1, 50.0, 1.0),
                None,
            ),
            run(
                "fanout-100",
                Server::Nats,
                1,
                &report_json("fanout", 100, 400.0, 3.0),
                None,
            ),
        ];
        let summaries = summarize(&runs);
        let order: Vec<_> = summaries
            .iter()
            .map(|s| (s.case.as_str(), s.server))
            .collect();
        assert_eq!(
            order,
            [
                ("fanout-1", Server::Redis),
                ("fanout-100", Server::MqActix),
                ("fanout-100", Server::Nats)
            ]
        );
        let mq = &summaries[1];
        assert_eq!(mq.runs, 3);
        let median = |s: Option<Spread>| s.map(|s| s.median);
        assert_eq!(median(mq.delivery_rate), Some(200.0));
        assert_eq!(median(mq.p99_us), Some(7.0));
        assert_eq!(median(mq.p999_us), Some(14.0));
        assert_eq!(median(mq.peak_rss_bytes), Some(20.0 * 1024.0));
        assert_eq!(summaries[0].peak_rss_bytes, None);
    }

    #[test]
    fn whiskers_are_the_lowest_and_highest_run() {
        let runs: Vec<Run> = [(1, 300.0), (2, 100.0), (3, 250.0)]
            .iter()
            .map(|&(n, rate)| {
                let json = report_json("fanout", 100, rate, rate / 10.0);
                run("fanout-100", Server::Redis, n, &json, Some(n as u64))
            })
            .collect();
        let s = &summarize(&runs)[0];
        let rate = s.delivery_rate.unwrap();
        assert_eq!((rate.min, rate.median, rate.max), (100.0, 250.0, 300.0));
        let p99 = s.p99_us.unwrap();
        assert_eq!((p99.min, p99.median, p99.max), (10.0, 25.0, 30.0));
        let peak = s.peak_rss_bytes.unwrap();
        assert_eq!((peak.min, peak.max), (1024.0, 3072.0));
    }

    #[test]
    fn memory_per_connection_falls_back_on_the_scripts_samples() {
        let json = report_json("conns", 1000, 0.0, 1.0).replace(
            r#""errors":[]"#,
            r#""errors":[],"conns":{"connections":1000,"connect_rate":1.0,"hold_s":1.0,
               "answered":1000,"server_rss_before":null,"server_rss_holding":null,
               "bytes_per_connection":null}"#,
        );
        let summary = &summarize(&[run("conns", Server::Nats, 1, &json, Some(5000))])[0];
        // (5000 - 1000) KiB over 1000 connections.
        assert_eq!(summary.bytes_per_connection.map(|s| s.median), Some(4096.0));
        assert_eq!(summary.delivery_rate, None);
    }

    #[test]
    fn cases_read_in_family_then_number_order() {
        let mut cases = vec![
            "conns",
            "queue",
            "fanout-1000",
            "latency-50",
            "fanout-1",
            "pairs",
            "latency-100",
            "fanout-100",
            "fanout-100-tls",
            "replay",
        ];
        cases.sort_by(|a, b| case_order(a, b));
        assert_eq!(
            cases,
            [
                "fanout-1",
                "fanout-100",
                "fanout-100-tls",
                "fanout-1000",
                "latency-50",
                "latency-100",
                "pairs",
                "queue",
                "replay",
                "conns"
            ]
        );
    }
}
