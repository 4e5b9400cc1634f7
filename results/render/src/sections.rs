//! What goes between each pair of markers in `results/README.md`. Each
//! function is pure: figures in, Markdown out.

use serde_json::Value;

use crate::criterion::Bench;
use crate::data::{CaseName, Server, Summary, Variant};
use crate::machine::{Activity, LoadSample, BUSY_SHARE};
use crate::tables::{self, markdown_table, Align};
use crate::targets::Outcome;
use crate::variants::{DurableRow, SizeRow, BATCH_FLOOR};

/// The machine and the configuration of the run, from `machine.json` and
/// `run.json`, with a warning when the figures come from a smoke run.
pub fn machine(machine: Option<&Value>, run: Option<&Value>) -> String {
    let mut out = String::new();
    if run.and_then(|r| r["quick"].as_bool()).unwrap_or(false) {
        out.push_str(
            "> **Smoke run (`QUICK=1`)**: short runs with few clients. These figures only \
             show that the pipeline works; they are not results.\n\n",
        );
    }
    let Some(Value::Object(fields)) = machine else {
        out.push_str("No machine recorded yet: run `results/run.sh`.\n");
        return out;
    };
    const LABELS: [(&str, &str); 10] = [
        ("cpu", "CPU"),
        ("cores", "cores (`nproc`)"),
        ("memory", "memory"),
        ("kernel", "kernel (`uname -r`)"),
        ("os", "OS"),
        ("rustc", "Rust (`rustc --version`)"),
        ("redis", "Redis (`redis-server --version`)"),
        ("nats", "NATS (`nats-server --version`)"),
        ("git_revision", "git revision"),
        ("date", "date (UTC)"),
    ];
    // Shown with the other load samples, in the load section.
    const SHOWN_ELSEWHERE: &str = "load";
    fn text(v: &Value) -> String {
        match v {
            Value::String(s) => s.clone(),
            Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(" "),
            other => other.to_string(),
        }
    }
    let mut rows: Vec<Vec<String>> = LABELS
        .iter()
        .filter_map(|(key, label)| Some(vec![label.to_string(), text(fields.get(*key)?)]))
        .collect();
    for (key, value) in fields {
        if key != SHOWN_ELSEWHERE && !LABELS.iter().any(|(k, _)| k == key) {
            rows.push(vec![key.clone(), text(value)]);
        }
    }
    if let Some(Value::Object(config)) = run {
        let settings: Vec<String> = config
            .iter()
            .map(|(k, v)| format!("{k}={}", text(v)))
            .collect();
        rows.push(vec!["run settings".into(), settings.join(", ")]);
    }
    out.push_str(&markdown_table(&["what", "value"], &[], &rows));
    out
}

/// What the machine was doing: the verdict of [`crate::machine::judge`],
/// the rule it applied, and every load sample. `legacy` says the samples
/// come from a run that recorded one load average and nothing during the
/// cases.
pub fn load(samples: &[LoadSample], activity: &Activity, cores: f64, legacy: bool) -> String {
    let bound = BUSY_SHARE * cores;
    let mut out = match activity {
        Activity::Quiet => "**Quiet**: nothing else was running to speak of.".to_string(),
        Activity::Busy(why) => {
            // The table lists every sample; the verdict names the first few.
            const NAMED: usize = 3;
            let mut named = why[..why.len().min(NAMED)].join("; ");
            if why.len() > NAMED {
                named.push_str(&format!("; and {} more in the table", why.len() - NAMED));
            }
            format!("**Busy**: {named}.")
        }
        Activity::Unknown(why) => format!("**Not known to be quiet**: {why}."),
    };
    if legacy {
        out.push_str(
            " These figures come from an earlier run of the script, which recorded one load \
             average after the build and none during the cases, so what else ran while it \
             measured is unknown.",
        );
    }
    out.push_str(&format!(
        "\n\nThe rule: the machine is busy when, before the run, the 1-minute load average \
         exceeds {bound:.1} (half of its {cores} cores), or when at any sample more than {bound:.1} \
         other tasks were runnable on average (ten looks 0.1 s apart, while no server or \
         loadgen of the run was running); it is quiet only when neither happened and there \
         are samples from before and during the run. The load averages sampled during the \
         run also count the run's own earlier cases, so they are shown but not judged.\n\n"
    ));
    if samples.is_empty() {
        out.push_str("No load average was recorded.\n");
        return out;
    }
    let opt = |v: Option<f64>, decimals: usize| {
        v.map(|v| format!("{v:.decimals$}")).unwrap_or("–".into())
    };
    let rows: Vec<Vec<String>> = samples
        .iter()
        .map(|s| {
            vec![
                s.when.clone(),
                s.at.clone().unwrap_or_default(),
                format!("{:.2}", s.load_1m),
                opt(s.load_5m, 2),
                opt(s.load_15m, 2),
                opt(s.others_runnable, 1),
            ]
        })
        .collect();
    let mut align = vec![Align::Left, Align::Left];
    align.extend([Align::Right; 4]);
    out.push_str(&markdown_table(
        &[
            "when",
            "at (UTC)",
            "load, 1 min",
            "5 min",
            "15 min",
            "other runnable tasks",
        ],
        &align,
        &rows,
    ));
    out
}

/// Links to the charts that were drawn.
pub fn charts(drawn: &[(String, String)]) -> String {
    if drawn.is_empty() {
        return "No charts yet: run `results/run.sh`.\n".into();
    }
    drawn
        .iter()
        .map(|(file, alt)| format!("![{alt}]({file})\n"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// mq-actix against Redis and NATS, figure by figure: each server's median,
/// mq-actix's ratios, the goal it is held to and the verdict.
pub fn comparison(outcomes: &[Outcome]) -> String {
    let rows: Vec<Vec<String>> = outcomes
        .iter()
        .map(|o| {
            let metric = o.target.metric;
            let value = |s: Server| o.value(s).map(|v| metric.format(v)).unwrap_or("–".into());
            let ratio = |s: Server| o.ratio(s).map(tables::ratio).unwrap_or("–".into());
            let mut goal: Vec<String> = Vec::new();
            if !o.target.against.is_empty() {
                let who: Vec<&str> = o.target.against.iter().map(|s| s.label()).collect();
                let how = if metric.lower_is_better() {
                    "below".to_string()
                } else if o.target.by > 1.0 {
                    format!("≥ {}×", o.target.by)
                } else {
                    "above".to_string()
                };
                goal.push(format!("{how} {}", who.join(" and ")));
            }
            if let Some((_, text)) = o.target.bound {
                goal.push(text.to_string());
            }
            vec![
                o.target.what.to_string(),
                value(Server::MqActix),
                value(Server::Redis),
                value(Server::Nats),
                ratio(Server::Redis),
                ratio(Server::Nats),
                goal.join(", "),
                o.verdict.cell(),
            ]
        })
        .collect();
    markdown_table(
        &[
            "comparison",
            "mq-actix",
            "Redis",
            "NATS",
            "mq-actix / Redis",
            "mq-actix / NATS",
            "target",
            "verdict",
        ],
        &[
            Align::Left,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Right,
            Align::Left,
            Align::Left,
        ],
        &rows,
    )
}

/// Every case against every server: medians of its runs.
pub fn loadgen(summaries: &[Summary]) -> String {
    if summaries.is_empty() {
        return "No loadgen runs yet: run `results/run.sh`.\n".into();
    }
    let opt = |v: Option<f64>, f: fn(f64) -> String| v.map(f).unwrap_or("–".into());
    let rows: Vec<Vec<String>> = summaries
        .iter()
        .map(|s| {
            vec![
                s.case.clone(),
                s.server.label().to_string(),
                describe(s),
                s.runs.to_string(),
                opt(s.publish_rate, tables::rate),
                opt(s.delivery_rate.map(|v| v.median), tables::rate),
                opt(s.p50_us.map(|v| v.median), tables::micros),
                opt(s.p99_us.map(|v| v.median), tables::micros),
                opt(s.p999_us.map(|v| v.median), tables::micros),
                opt(s.peak_rss_bytes.map(|v| v.median), tables::bytes),
                opt(s.cpu_per_delivery.map(|v| v.median * 1e9), tables::nanos),
                also(s),
                if s.problems == 0 {
                    "none".into()
                } else {
                    format!("**{}**", s.problems)
                },
            ]
        })
        .collect();
    let mut align = vec![Align::Left, Align::Left, Align::Left];
    align.extend([Align::Right; 8]);
    align.extend([Align::Left, Align::Right]);
    markdown_table(
        &[
            "case",
            "server",
            "load",
            "runs",
            "published",
            "delivered",
            "p50",
            "p99",
            "p99.9",
            "peak RSS",
            "CPU per delivery",
            "also",
            "problems",
        ],
        &align,
        &rows,
    )
}

/// The load of a case in a few words, from its parameters.
pub fn describe(s: &Summary) -> String {
    let p = &s.params;
    let n = |v: usize| tables::count(v as f64);
    let sending = match s.rate {
        Some(r) => format!("open loop {}", tables::rate(r)),
        None => format!("window {}", p.window),
    };
    let timing = match (p.duration_s, p.messages) {
        (Some(d), _) => format!(", {d:.0} s"),
        _ => String::new(),
    };
    let size = tables::size(p.size);
    let load = match s.scenario.as_str() {
        "fanout" => format!(
            "{} pub → {} subs, {sending}, {size}{timing}",
            n(p.publishers),
            n(p.clients),
        ),
        "pairs" => format!(
            "{} clients × {} msgs, {sending}, {size}",
            n(p.clients),
            tables::count(p.messages.unwrap_or(0) as f64 / p.clients.max(1) as f64),
        ),
        "queue" => format!(
            "{} pubs → {} workers, delivery one, {sending}, {size}{timing}",
            n(p.publishers),
            n(p.clients),
        ),
        "replay" => format!(
            "{} subs replay {} cached msgs",
            n(p.clients),
            tables::count(p.messages.unwrap_or(0) as f64)
        ),
        "conns" => format!("{} idle subscribed conns", n(p.clients)),
        other => other.to_string(),
    };
    let load = if p.tls { format!("{load}, TLS") } else { load };
    // loadgen does not know how the server keeps its data: the case says.
    match (CaseName::parse(&s.case).variant, s.server) {
        (Some(Variant::Fsync(f)), Server::Redis) => match f.redis_appendfsync() {
            Some(every) => format!("{load}, AOF appendfsync {every}"),
            None => load,
        },
        (Some(Variant::Fsync(f)), _) => format!("{load}, on disk, fsync {}", f.name()),
        _ => load,
    }
}

/// The size sweep: each server's deliveries per second at each message
/// size, and mq-actix's ratio to the others.
pub fn sizes(rows: &[SizeRow]) -> String {
    if rows.is_empty() {
        return "No size sweep yet: run `results/run.sh` with `sizes` in `SCENARIOS`.\n".into();
    }
    let rate = |v: Option<crate::stats::Spread>| v.map(|v| tables::rate(v.median));
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let ratio = |s: Server| r.ratio(s).map(tables::ratio).unwrap_or("–".into());
            let [mq, redis, nats] = r.spreads.map(|v| rate(v).unwrap_or("–".into()));
            vec![
                r.case.to_string(),
                tables::size(r.size),
                mq,
                redis,
                nats,
                ratio(Server::Redis),
                ratio(Server::Nats),
            ]
        })
        .collect();
    let mut align = vec![Align::Left];
    align.extend([Align::Right; 6]);
    markdown_table(
        &[
            "case",
            "message size",
            "mq-actix",
            "Redis",
            "NATS",
            "mq-actix / Redis",
            "mq-actix / NATS",
        ],
        &align,
        &rows,
    )
}

/// The durable cases: mq-actix on disk against itself in memory and
/// against Redis with its append-only file, with the floor `--fsync batch`
/// is held to.
pub fn durable(rows: &[DurableRow]) -> String {
    if rows.is_empty() {
        return "No durable runs yet: run `results/run.sh` with `durable` in `SCENARIOS`.\n".into();
    }
    let rate =
        |v: Option<crate::stats::Spread>| v.map(|v| tables::rate(v.median)).unwrap_or("–".into());
    let ratio = |r: Option<f64>| r.map(tables::ratio).unwrap_or("–".into());
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mode = match r.fsync.redis_appendfsync() {
                Some(every) => format!("{} (Redis: {every})", r.fsync.name()),
                None => r.fsync.name().to_string(),
            };
            let (target, verdict) = match &r.verdict {
                Some(v) => (
                    format!("≥ {} in memory", tables::ratio(BATCH_FLOOR)),
                    v.cell(),
                ),
                None => (String::new(), String::new()),
            };
            vec![
                r.case.to_string(),
                mode,
                rate(r.on_disk),
                rate(r.memory),
                ratio(r.of_memory()),
                rate(r.redis_aof),
                ratio(r.of_redis()),
                target,
                verdict,
            ]
        })
        .collect();
    let mut align = vec![Align::Left, Align::Left];
    align.extend([Align::Right; 5]);
    align.extend([Align::Left; 2]);
    markdown_table(
        &[
            "case",
            "fsync",
            "mq-actix on disk",
            "mq-actix in memory",
            "on disk / in memory",
            "Redis with AOF",
            "mq-actix / Redis",
            "target",
            "verdict",
        ],
        &align,
        &rows,
    )
}

/// The figure particular to a scenario.
fn also(s: &Summary) -> String {
    if let (Some(lo), Some(hi)) = (s.min_share, s.max_share) {
        return format!("shares {lo:.2}–{hi:.2}");
    }
    if let Some(r) = s.replay_rate {
        return format!("replayed {}", tables::rate(r));
    }
    if let Some(b) = s.bytes_per_connection.map(|v| v.median) {
        return format!("{} per conn", tables::bytes(b));
    }
    String::new()
}

/// Criterion's medians.
pub fn criterion(benches: &[Bench]) -> String {
    if benches.is_empty() {
        return "No criterion results collected yet: run `results/run.sh` without `QUICK=1`.\n"
            .into();
    }
    let rows: Vec<Vec<String>> = benches
        .iter()
        .map(|b| {
            let throughput = match (b.per_second(), &b.throughput) {
                (Some(v), Some(t)) if t.unit == "bytes" => format!("{}/s", tables::bytes(v)),
                (Some(v), Some(t)) => format!("{} {}/s", tables::count(v), t.unit),
                _ => String::new(),
            };
            vec![b.id.clone(), tables::nanos(b.median_ns), throughput]
        })
        .collect();
    markdown_table(
        &["benchmark", "median", "throughput"],
        &[Align::Left, Align::Right, Align::Right],
        &rows,
    )
}

/// The commands the script ran, as it logged them.
pub fn commands(log: Option<&str>) -> String {
    match log.map(str::trim).filter(|l| !l.is_empty()) {
        Some(log) => format!("```sh\n{log}\n```\n"),
        None => "No commands logged yet: run `results/run.sh`.\n".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::summarize;
    use crate::data::tests::{report_json, run};
    use crate::targets::{evaluate, TARGETS};
    use serde_json::json;

    #[test]
    fn the_machine_table_lists_known_fields_first() {
        let fields =
            json!({"date": "2025-01-01T00:00:00Z", "cores": 2, "cpu": "Xeon", "extra": "x"});
        let run = json!({"quick": false, "runs": 3, "servers": ["redis", "nats"]});
        let out = machine(Some(&fields), Some(&run));
        let lines: Vec<&str> = out.lines().collect();
        assert!(lines[2].starts_with("| CPU "), "{out}");
        assert!(lines[3].starts_with("| cores (`nproc`) | 2 "), "{out}");
        assert!(lines[4].starts_with("| date (UTC) "), "{out}");
        assert!(lines[5].starts_with("| extra "), "{out}");
        assert!(
            lines[6].contains("quick=false, runs=3, servers=redis nats"),
            "{out}"
        );
        assert!(!out.contains("Smoke run"));
    }

    #[test]
    fn the_load_section_gives_verdict_rule_and_samples() {
        let samples = [LoadSample {
            when: "before the build".into(),
            at: Some("2026-12-01T22:00:00Z".into()),
            load_1m: 1.84,
            load_5m: Some(1.49),
            load_15m: None,
            others_runnable: None,
        }];
        let busy = Activity::Busy(vec!["1-minute load average 1.84 before the build".into()]);
        let out = load(&samples, &busy, 2.0, true);
        assert!(
            out.starts_with("**Busy**: 1-minute load average 1.84 before the build. These"),
            "{out}"
        );
        assert!(out.contains("exceeds 1.0 (half of its 2 cores)"), "{out}");
        assert!(out.contains("while it measured is unknown"), "{out}");
        assert!(
            out.contains(
                "| before the build | 2026-12-01T22:00:00Z |        1.84 |  1.49 |      – |"
            ),
            "{out}"
        );
        let many = Activity::Busy((1..=5).map(|i| format!("reason {i}")).collect());
        assert!(load(&samples, &many, 2.0, false)
            .starts_with("**Busy**: reason 1; reason 2; reason 3; and 2 more in the table.\n"));
        let quiet = load(&samples, &Activity::Quiet, 2.0, false);
        assert!(quiet.starts_with("**Quiet**"));
        assert!(!quiet.contains("earlier run"));
    }

    #[test]
    fn smoke_runs_are_marked() {
        let out = machine(Some(&json!({})), Some(&json!({"quick": true})));
        assert!(out.starts_with("> **Smoke run"));
        assert!(machine(None, None).contains("No machine recorded"));
    }

    #[test]
    fn the_comparison_table_shows_values_ratios_and_verdicts() {
        let runs = [
            run(
                "fanout-100",
                Server::MqActix,
                1,
                &report_json("fanout", 100, 3e6, 500.0),
                None,
            ),
            run(
                "fanout-100",
                Server::Redis,
                1,
                &report_json("fanout", 100, 1e6, 1000.0),
                None,
            ),
        ];
        let outcomes: Vec<_> = TARGETS
            .iter()
            .take(1)
            .map(|&t| evaluate(t, &summarize(&runs)))
            .collect();
        let table = comparison(&outcomes);
        let row = table.lines().nth(2).unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            cells[1..9],
            [
                "fanout 1 → 100 subscribers, 64 B, deliveries/s",
                "3,000,000/s",
                "1,000,000/s",
                "–",
                "3.00×",
                "–",
                "≥ 1.4× Redis and NATS",
                "no data (NATS)"
            ]
        );
    }

    #[test]
    fn the_loadgen_table_has_a_row_per_case_and_server() {
        let runs = [
            run(
                "fanout-1",
                Server::MqActix,
                1,
                &report_json("fanout", 1, 5e5, 50.0),
                Some(8192),
            ),
            run(
                "fanout-1",
                Server::Nats,
                1,
                &report_json("fanout", 1, 6e5, 40.0),
                None,
            ),
        ];
        let table = loadgen(&summarize(&runs));
        assert_eq!(table.lines().count(), 4, "{table}");
        let mq = table.lines().nth(2).unwrap();
        assert!(
            mq.contains("| 1 pub → 1 subs, window 64, 64 B, 10 s |"),
            "{mq}"
        );
        assert!(mq.contains("500,000/s"), "{mq}");
        assert!(mq.contains("8.4 MB"), "{mq}");
        assert!(mq.ends_with(" none |"), "{mq}");
        assert!(loadgen(&[]).starts_with("No loadgen runs"));
    }

    #[test]
    fn a_tls_case_says_so_right_after_its_plain_case() {
        let plain = report_json("fanout", 100, 4e6, 3.0);
        let tls = report_json("fanout", 100, 3e6, 4.0)
            .replace(r#""timeout_s":5.0"#, r#""timeout_s":5.0,"tls":true"#);
        let runs = [
            run("fanout-1000", Server::MqActix, 1, &plain, None),
            run("fanout-100-tls", Server::MqActix, 1, &tls, None),
            run("fanout-100", Server::MqActix, 1, &plain, None),
        ];
        let table = loadgen(&summarize(&runs));
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert!(rows[0].starts_with("| fanout-100 "), "{table}");
        assert!(!rows[0].contains("TLS"), "{table}");
        assert!(rows[1].starts_with("| fanout-100-tls "), "{table}");
        assert!(rows[1].contains("64 B, 10 s, TLS |"), "{table}");
        assert!(rows[2].starts_with("| fanout-1000 "), "{table}");
    }

    #[test]
    fn a_durable_case_says_how_each_server_kept_its_data() {
        let json = report_json("pairs", 100, 4e5, 3.0);
        let runs = [
            run("pairs-fsync-batch", Server::MqActix, 1, &json, None),
            run("pairs-fsync-batch", Server::Redis, 1, &json, None),
            run("pairs-fsync-always", Server::Redis, 1, &json, None),
        ];
        let table = loadgen(&summarize(&runs));
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert!(
            rows[0].starts_with("| pairs-fsync-batch  | mq-actix "),
            "{table}"
        );
        let load = |row: &str| row.split('|').nth(3).unwrap().trim().to_string();
        assert!(
            load(rows[0]).ends_with("64 B, on disk, fsync batch"),
            "{table}"
        );
        assert!(
            load(rows[1]).ends_with("64 B, AOF appendfsync everysec"),
            "{table}"
        );
        assert!(
            rows[2].starts_with("| pairs-fsync-always | Redis "),
            "{table}"
        );
        assert!(
            load(rows[2]).ends_with("64 B, AOF appendfsync always"),
            "{table}"
        );
    }

    #[test]
    fn the_cpu_per_delivery_column_is_in_nanoseconds_or_microseconds() {
        let with_cpu = |cpu: f64| {
            report_json("fanout", 100, 1e6, 5.0).replace(
                r#""violations":0"#,
                &format!(r#""server_cpu_s_per_delivery":{cpu},"violations":0"#),
            )
        };
        let runs = [
            run("fanout-100", Server::MqActix, 1, &with_cpu(2.1e-7), None),
            run("fanout-100", Server::Redis, 1, &with_cpu(1.5e-6), None),
            run(
                "fanout-100",
                Server::Nats,
                1,
                &report_json("fanout", 100, 1e6, 5.0),
                None,
            ),
        ];
        let table = loadgen(&summarize(&runs));
        let cpu: Vec<&str> = table
            .lines()
            .skip(2)
            .map(|row| row.split('|').nth(11).unwrap().trim())
            .collect();
        assert_eq!(cpu, ["210 ns", "1.50 µs", "–"], "{table}");
    }

    #[test]
    fn the_size_and_durable_tables_give_ratios_and_the_floor() {
        let rated = |case: &str, server, rate: f64, size: usize| {
            let json = report_json("queue", 10, rate, 5.0)
                .replace(r#""size":64"#, &format!(r#""size":{size}"#));
            run(case, server, 1, &json, None)
        };
        let runs = [
            rated("queue", Server::MqActix, 4e5, 64),
            rated("queue", Server::Nats, 5e5, 64),
            rated("queue-16k", Server::MqActix, 1e5, 16384),
            rated("queue-16k", Server::Nats, 5e4, 16384),
            rated("queue-fsync-batch", Server::MqActix, 3e5, 64),
        ];
        let summaries = summarize(&runs);
        let table = sizes(&crate::variants::size_rows(&summaries));
        let cells =
            |row: &str| -> Vec<String> { row.split('|').map(|c| c.trim().to_string()).collect() };
        let rows: Vec<Vec<String>> = table.lines().skip(2).map(cells).collect();
        assert_eq!(rows.len(), 2, "{table}");
        assert_eq!(
            rows[0][1..8],
            ["queue", "64 B", "400,000/s", "–", "500,000/s", "–", "0.80×"],
            "{table}"
        );
        assert_eq!(
            rows[1][1..8],
            [
                "queue-16k",
                "16 KiB",
                "100,000/s",
                "–",
                "50,000/s",
                "–",
                "2.00×"
            ],
            "{table}"
        );
        let table = durable(&crate::variants::durable_rows(&summaries));
        let row = table.lines().nth(2).unwrap();
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        assert_eq!(
            cells[1..10],
            [
                "queue-fsync-batch",
                "batch (Redis: everysec)",
                "300,000/s",
                "400,000/s",
                "0.75×",
                "–",
                "–",
                "≥ 0.70× in memory",
                "met"
            ]
        );
        assert!(sizes(&[]).starts_with("No size sweep"));
        assert!(durable(&[]).starts_with("No durable runs"));
    }

    #[test]
    fn criterion_rows_show_median_and_throughput() {
        let benches = [
            Bench {
                id: "frame/64".into(),
                median_ns: 100.0,
                throughput: Some(crate::criterion::Throughput {
                    count: 64,
                    unit: "bytes".into(),
                }),
            },
            Bench {
                id: "send_all/10".into(),
                median_ns: 2_000.0,
                throughput: Some(crate::criterion::Throughput {
                    count: 10,
                    unit: "elements".into(),
                }),
            },
        ];
        let table = criterion(&benches);
        assert!(
            table.contains("| frame/64    |  100 ns |           640.0 MB/s |"),
            "{table}"
        );
        assert!(
            table.contains("| send_all/10 | 2.00 µs | 5,000,000 elements/s |"),
            "{table}"
        );
    }

    #[test]
    fn commands_go_in_a_code_block() {
        assert_eq!(commands(Some("a\nb\n")), "```sh\na\nb\n```\n");
        assert!(commands(Some("  \n")).starts_with("No commands"));
    }
}
