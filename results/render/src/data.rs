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
    /// Present when the script gave loadgen `--server-pid` and something
    /// was delivered.
    pub server_cpu_s_per_delivery: Option<f64>,
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
    /// The server's CPU time per owed delivery, in seconds: what a message
    /// costs the server, whatever the machine's other work left it.
    pub cpu_per_delivery: Option<Spread>,
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
                cpu_per_delivery: spr(&|r| r.report.server_cpu_s_per_delivery),
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

/// The scenario families in the order the README explains them, each with
/// whether its cases carry a number (`fanout-100`, `latency-50`): in the
/// others, whatever follows the family names a variant (`queue-1k`).
const FAMILIES: [(&str, bool); 6] = [
    ("fanout", true),
    ("latency", true),
    ("pairs", false),
    ("queue", false),
    ("replay", false),
    ("conns", false),
];

/// A case's name taken apart: `fanout-100-fsync-batch` is the plain case
/// `fanout-100` (family `fanout`, number 100) run as the variant
/// `fsync-batch`. The script names cases so; the charts read a variant
/// beside its plain case, never in its place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CaseName<'a> {
    pub family: &'a str,
    pub number: Option<u64>,
    /// The name without its variant.
    pub plain: &'a str,
    pub variant: Option<Variant<'a>>,
}

/// How a case differs from its plain case, in the order its rows follow
/// the plain one: bigger messages first, smallest first, then TLS, then
/// the durable modes from the cheapest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Variant<'a> {
    /// Messages of this many bytes: `1k` (1024), `16k`, `100b`.
    Size(usize),
    Tls,
    /// mq-actix with `--data-dir` and this `--fsync` mode, beside Redis
    /// with its append-only file.
    Fsync(Fsync),
    /// A name the renderer does not know: shown, never drawn as plain.
    Other(&'a str),
}

/// mq-actix's `--fsync` modes, from the one that syncs least.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fsync {
    Never,
    Batch,
    Always,
}

impl Fsync {
    /// The mode as mq-actix's `--fsync` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Fsync::Never => "never",
            Fsync::Batch => "batch",
            Fsync::Always => "always",
        }
    }

    /// The `appendfsync` that `results/run.sh` gives Redis beside this
    /// mode: the one that syncs as often (`None` for `never`, which the
    /// script does not run).
    pub fn redis_appendfsync(self) -> Option<&'static str> {
        match self {
            Fsync::Never => None,
            Fsync::Batch => Some("everysec"),
            Fsync::Always => Some("always"),
        }
    }
}

impl<'a> Variant<'a> {
    fn parse(text: &'a str) -> Variant<'a> {
        let size = |digits: &str, unit: usize| digits.parse::<usize>().ok().map(|n| n * unit);
        let sized = match text.as_bytes().last() {
            Some(b'k') => size(&text[..text.len() - 1], 1024),
            Some(b'b') => size(&text[..text.len() - 1], 1),
            _ => None,
        };
        match (sized, text) {
            (Some(bytes), _) => Variant::Size(bytes),
            (None, "tls") => Variant::Tls,
            (None, "fsync-never") => Variant::Fsync(Fsync::Never),
            (None, "fsync-batch") => Variant::Fsync(Fsync::Batch),
            (None, "fsync-always") => Variant::Fsync(Fsync::Always),
            (None, other) => Variant::Other(other),
        }
    }
}

impl<'a> CaseName<'a> {
    pub fn parse(case: &'a str) -> CaseName<'a> {
        let (family, rest) = case.split_once('-').unwrap_or((case, ""));
        let numbered = FAMILIES.iter().any(|&(f, n)| f == family && n);
        let (number, rest) = match rest.split_once('-').unwrap_or((rest, "")) {
            (digits, rest) if numbered => match digits.parse() {
                Ok(n) => (Some(n), rest),
                Err(_) => (None, case[family.len()..].trim_start_matches('-')),
            },
            _ => (None, rest),
        };
        let plain = &case[..case.len() - rest.len()];
        CaseName {
            family,
            number,
            plain: plain.trim_end_matches('-'),
            variant: (!rest.is_empty()).then(|| Variant::parse(rest)),
        }
    }
}

/// Reading order of cases: scenario families in the order the README
/// explains them, within a family by the number in the name (`fanout-1`,
/// `fanout-100`, `fanout-1000`), and the variants of a case right after it
/// in [`Variant`] order (`fanout-100`, `fanout-100-1k`, `fanout-100-tls`,
/// `fanout-100-fsync-batch`, then `fanout-1000`).
pub fn case_order(a: &str, b: &str) -> Ordering {
    case_key(a).cmp(&case_key(b)).then_with(|| a.cmp(b))
}

fn case_key(case: &str) -> (usize, Option<u64>, Option<Variant<'_>>) {
    let name = CaseName::parse(case);
    let rank = FAMILIES
        .iter()
        .position(|&(f, _)| f == name.family)
        .unwrap_or(FAMILIES.len());
    (rank, name.number, name.variant)
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
            "queue-fsync-always",
            "fanout-100-16k",
            "queue-1k",
            "fanout-100-fsync-batch",
            "fanout-100-1k",
            "queue-fsync-batch",
            "pairs-fsync-batch",
        ];
        cases.sort_by(|a, b| case_order(a, b));
        assert_eq!(
            cases,
            [
                "fanout-1",
                "fanout-100",
                "fanout-100-1k",
                "fanout-100-16k",
                "fanout-100-tls",
                "fanout-100-fsync-batch",
                "fanout-1000",
                "latency-50",
                "latency-100",
                "pairs",
                "pairs-fsync-batch",
                "queue",
                "queue-1k",
                "queue-fsync-batch",
                "queue-fsync-always",
                "replay",
                "conns"
            ]
        );
    }

    #[test]
    fn a_case_name_is_its_plain_case_and_a_variant() {
        let parsed = |case| {
            let n = CaseName::parse(case);
            (n.family, n.number, n.plain, n.variant)
        };
        assert_eq!(
            parsed("fanout-100"),
            ("fanout", Some(100), "fanout-100", None)
        );
        assert_eq!(
            parsed("fanout-100-16k"),
            (
                "fanout",
                Some(100),
                "fanout-100",
                Some(Variant::Size(16384))
            )
        );
        assert_eq!(
            parsed("fanout-100-tls"),
            ("fanout", Some(100), "fanout-100", Some(Variant::Tls))
        );
        assert_eq!(
            parsed("pairs-fsync-always"),
            ("pairs", None, "pairs", Some(Variant::Fsync(Fsync::Always)))
        );
        // Only fanout and latency are numbered: a queue's size is a variant.
        assert_eq!(
            parsed("queue-100b"),
            ("queue", None, "queue", Some(Variant::Size(100)))
        );
        assert_eq!(
            parsed("latency-50"),
            ("latency", Some(50), "latency-50", None)
        );
        assert_eq!(parsed("conns"), ("conns", None, "conns", None));
        assert_eq!(
            parsed("fanout-x"),
            ("fanout", None, "fanout", Some(Variant::Other("x")))
        );
        assert_eq!(
            parsed("queue-fsync-sometimes").3,
            Some(Variant::Other("fsync-sometimes"))
        );
    }

    #[test]
    fn the_server_cpu_per_delivery_is_a_spread_over_the_runs() {
        let with_cpu = |cpu: f64| {
            report_json("fanout", 100, 1e6, 5.0).replace(
                r#""violations":0"#,
                &format!(r#""server_cpu_s":1.0,"server_cpu_s_per_delivery":{cpu},"violations":0"#),
            )
        };
        let runs = [
            run("queue", Server::Nats, 1, &with_cpu(3e-7), None),
            run("queue", Server::Nats, 2, &with_cpu(1e-7), None),
            // A report from before --server-pid was given in every case.
            run(
                "queue",
                Server::Nats,
                3,
                &report_json("queue", 10, 1e6, 5.0),
                None,
            ),
        ];
        let cpu = summarize(&runs)[0].cpu_per_delivery.unwrap();
        assert_eq!((cpu.min, cpu.median, cpu.max), (1e-7, 2e-7, 3e-7));
    }
}
