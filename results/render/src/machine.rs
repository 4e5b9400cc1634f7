//! What the machine was doing while it measured: the load samples that
//! `results/run.sh` writes to `results/data/load.jsonl`, the rule that calls
//! the machine quiet or busy, and the line under each chart's title that
//! says which commit, day and machine its figures come from.
//!
//! loadgen and the server share the machine's cores, so anything else that
//! runs takes CPU from one of them and moves the figures: a reader has to
//! know whether the machine was quiet before trusting a ratio, and the
//! tool never says "quiet" without samples that show it.

use anyhow::Context;
use serde::Deserialize;
use serde_json::Value;

/// How `results/run.sh` labels the sample it takes before building: the
/// only one whose load averages hold nothing of the run itself.
pub const BEFORE_BUILD: &str = "before the build";

/// How the one load reading of a run that predates `load.jsonl` is
/// labelled: `machine.json` took it after the build, before the first case.
const LEGACY: &str = "after the build, before the first case";

/// The share of the cores that others may take before the machine counts
/// as busy: on 2 cores, a 1-minute load average above 1.0 before the run,
/// or more than 1 other runnable task at the start of any case.
pub const BUSY_SHARE: f64 = 0.5;

/// One look at `/proc/loadavg`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct LoadSample {
    /// When in the run it was taken, in words ("before the build", "at the
    /// start of fanout-100 against redis", "after the runs and the benchmarks").
    pub when: String,
    /// UTC time, when recorded.
    pub at: Option<String>,
    pub load_1m: f64,
    pub load_5m: Option<f64>,
    pub load_15m: Option<f64>,
    /// Runnable tasks other than the script, averaged over ten looks 0.1 s
    /// apart, taken while no server or loadgen of the run was running: what
    /// everyone else was doing. `None` for a run that predates it.
    pub others_runnable: Option<f64>,
}

impl LoadSample {
    /// Whether nothing of the run had been running for long before the
    /// sample, so that its load averages are everyone else's. Later samples
    /// still carry the benchmark's own earlier runs in their averages.
    fn before_the_run(&self) -> bool {
        self.when == BEFORE_BUILD || self.when == LEGACY
    }
}

/// The samples of `load.jsonl`, one JSON object a line.
pub fn parse_samples(text: &str) -> anyhow::Result<Vec<LoadSample>> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, line)| {
            serde_json::from_str(line).with_context(|| format!("line {} of load.jsonl", i + 1))
        })
        .collect()
}

/// The sample of a run that predates `load.jsonl`: the `load` field of its
/// `machine.json` ("1.84 1.49 1.90").
pub fn legacy_sample(machine: &Value) -> Option<LoadSample> {
    let mut loads = machine["load"]
        .as_str()?
        .split_whitespace()
        .map(|v| v.parse::<f64>().ok());
    Some(LoadSample {
        when: LEGACY.into(),
        at: machine["date"].as_str().map(str::to_string),
        load_1m: loads.next()??,
        load_5m: loads.next().flatten(),
        load_15m: loads.next().flatten(),
        others_runnable: None,
    })
}

/// What the machine was doing, by the rule of [`judge`].
#[derive(Debug, Clone, PartialEq)]
pub enum Activity {
    Quiet,
    /// Busy, with each sample that shows it.
    Busy(Vec<String>),
    /// Nothing shows it busy, but too little was sampled to call it quiet.
    Unknown(String),
}

impl Activity {
    /// One or two words for a chart's subtitle.
    pub fn word(&self) -> &'static str {
        match self {
            Activity::Quiet => "quiet machine",
            Activity::Busy(_) => "busy machine",
            Activity::Unknown(_) => "machine load unknown",
        }
    }
}

/// Busy when, before the run, the 1-minute load average exceeded
/// [`BUSY_SHARE`] of the `cores`, or when at any sample more than that many
/// other tasks were runnable; quiet only when neither happened and there
/// are samples from both before and during the run.
pub fn judge(samples: &[LoadSample], cores: f64) -> Activity {
    let bound = BUSY_SHARE * cores;
    let mut busy = Vec::new();
    for s in samples {
        if s.before_the_run() && s.load_1m > bound {
            busy.push(format!("1-minute load average {:.2} {}", s.load_1m, s.when));
        }
        if let Some(n) = s.others_runnable.filter(|n| *n > bound) {
            busy.push(format!("{n:.1} other tasks runnable {}", s.when));
        }
    }
    if !busy.is_empty() {
        Activity::Busy(busy)
    } else if !samples.iter().any(LoadSample::before_the_run) {
        Activity::Unknown("no load was sampled before the run".into())
    } else if !samples.iter().any(|s| s.others_runnable.is_some()) {
        Activity::Unknown("nothing was sampled during the run".into())
    } else {
        Activity::Quiet
    }
}

/// The commit, the day and the machine of the run, for the line under
/// each chart's title: "mq-actix 202b545 + uncommitted changes ·
/// 2026-11-22 · AMD EPYC, 2 cores, busy machine".
pub fn subtitle(machine: Option<&Value>, activity: &Activity) -> String {
    let field = |key: &str| machine.and_then(|m| m[key].as_str()).unwrap_or("");
    let revision = field("git_revision");
    let mut commit = format!(
        "mq-actix {}",
        revision.get(..7).unwrap_or("at an unknown commit")
    );
    if revision.contains("uncommitted") {
        commit.push_str(" + uncommitted changes");
    }
    let date = field("date").get(..10).unwrap_or("undated");
    let cpu = Some(field("cpu"))
        .filter(|c| !c.is_empty())
        .unwrap_or("unknown CPU");
    let cores = machine
        .and_then(|m| m["cores"].as_u64())
        .map(|n| format!(", {n} cores"))
        .unwrap_or_default();
    format!("{commit} · {date} · {cpu}{cores}, {}", activity.word())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn sample(when: &str, load_1m: f64, others: Option<f64>) -> LoadSample {
        LoadSample {
            when: when.into(),
            at: None,
            load_1m,
            load_5m: None,
            load_15m: None,
            others_runnable: others,
        }
    }

    #[test]
    fn quiet_needs_low_samples_before_and_during_the_run() {
        let samples = [
            sample(BEFORE_BUILD, 0.3, Some(0.0)),
            // Our own earlier runs raise the averages: not judged.
            sample("at the start of pairs against redis", 3.5, Some(0.4)),
        ];
        assert_eq!(judge(&samples, 2.0), Activity::Quiet);
    }

    #[test]
    fn a_high_load_before_the_run_is_busy() {
        let samples = [
            sample(BEFORE_BUILD, 1.2, Some(0.0)),
            sample("at the start of queue against nats", 0.1, Some(0.0)),
        ];
        assert_eq!(
            judge(&samples, 2.0),
            Activity::Busy(vec!["1-minute load average 1.20 before the build".into()])
        );
        // The bound scales with the cores: 1.2 on 4 cores is quiet.
        assert_eq!(judge(&samples, 4.0), Activity::Quiet);
    }

    #[test]
    fn others_running_during_the_run_is_busy() {
        let samples = [
            sample(BEFORE_BUILD, 0.2, Some(0.0)),
            sample("at the start of fanout-1 against mq-actix", 0.5, Some(1.5)),
        ];
        assert_eq!(
            judge(&samples, 2.0),
            Activity::Busy(vec![
                "1.5 other tasks runnable at the start of fanout-1 against mq-actix".into()
            ])
        );
    }

    #[test]
    fn too_few_samples_are_never_quiet() {
        assert!(matches!(judge(&[], 2.0), Activity::Unknown(_)));
        let before_only = [sample(BEFORE_BUILD, 0.1, None)];
        assert_eq!(
            judge(&before_only, 2.0),
            Activity::Unknown("nothing was sampled during the run".into())
        );
        let during_only = [sample("at the start of conns against nats", 0.1, Some(0.0))];
        assert!(matches!(judge(&during_only, 2.0), Activity::Unknown(_)));
    }

    #[test]
    fn a_run_before_load_samples_is_judged_on_its_one_reading() {
        let machine = json!({"load": "1.84 1.49 1.90", "date": "2026-11-22T02:56:02Z"});
        let legacy = legacy_sample(&machine).unwrap();
        assert_eq!((legacy.load_1m, legacy.load_15m), (1.84, Some(1.90)));
        assert!(matches!(
            judge(std::slice::from_ref(&legacy), 2.0),
            Activity::Busy(_)
        ));
        let calm = LoadSample {
            load_1m: 0.2,
            ..legacy
        };
        assert!(matches!(judge(&[calm], 2.0), Activity::Unknown(_)));
    }

    #[test]
    fn load_lines_parse() {
        let text = "{\"when\": \"before the build\", \"at\": \"2026-12-01T22:00:00Z\", \"load_1m\": 0.5, \"load_5m\": 0.4, \"load_15m\": 0.3, \"others_runnable\": 0.2}\n\n";
        let samples = parse_samples(text).unwrap();
        assert_eq!(samples.len(), 1);
        assert_eq!(samples[0].others_runnable, Some(0.2));
        assert!(parse_samples("{").is_err());
    }

    #[test]
    fn the_subtitle_names_commit_day_and_machine() {
        let machine = json!({
            "git_revision": "202b545d07aac3d3bcf78ca0a9bf2fe847f0d088 (with uncommitted changes)",
            "date": "2026-11-22T02:56:02Z", "cpu": "AMD EPYC", "cores": 2
        });
        assert_eq!(
            subtitle(Some(&machine), &Activity::Busy(vec![])),
            "mq-actix 202b545 + uncommitted changes · 2026-11-22 · AMD EPYC, 2 cores, busy machine"
        );
        assert_eq!(
            subtitle(None, &Activity::Unknown(String::new())),
            "mq-actix at an unknown commit · undated · unknown CPU, machine load unknown"
        );
    }
}
