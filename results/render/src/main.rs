//! `results-render`: turns what `results/run.sh` collects in `results/data/`
//! into the charts and tables of `results/`, so that no figure in
//! `results/README.md` is ever typed in by hand.
//!
//! Map of the crate:
//! - `data`: loadgen's `--json` reports and the script's memory samples,
//!   reduced to one [`data::Summary`] (medians) per case and server;
//! - `stats`: the median, and the spread of the runs the charts draw;
//! - `machine`: the load samples, the rule that calls the machine quiet or
//!   busy, and the subtitle that names each chart's commit, day and machine;
//! - `criterion`: collecting criterion's medians from `target/criterion`;
//! - `targets`: mq-actix against Redis and NATS, figure by figure, with
//!   the goal each is held to and whether it is met;
//! - `variants`: the size sweep and the durable cases, each row read
//!   beside its plain case;
//! - `charts`: the SVG charts (plotters, SVG backend only);
//! - `tables`: Markdown tables and number formats;
//! - `readme`: rewriting the README between its marker comments;
//! - `sections`: what goes between each pair of markers.

mod charts;
mod criterion;
mod data;
mod machine;
mod readme;
mod sections;
mod stats;
mod tables;
mod targets;
mod variants;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context};

use crate::data::last_line;

const USAGE: &str = "\
usage: results-render [render [DATA_DIR [RESULTS_DIR]]]
           redraw the charts in RESULTS_DIR and rewrite the tables of
           RESULTS_DIR/README.md from DATA_DIR
           (defaults: results/data and results of this checkout)
       results-render criterion CRITERION_DIR OUT_JSON
           collect criterion's medians (e.g. from target/criterion)
       results-render median FIELD FILE...
           print, rounded, the median of a numeric field (a dotted path
           such as publish_rate or latency.p99_us) over the last JSON line
           of each file";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("results-render: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &[String]) -> anyhow::Result<()> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let results = manifest
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| manifest.join(".."));
    match args.first().map(String::as_str) {
        None | Some("render") => {
            let data = args
                .get(1)
                .map(PathBuf::from)
                .unwrap_or_else(|| results.join("data"));
            let out = args.get(2).map(PathBuf::from).unwrap_or(results);
            render(&data, &out)
        }
        Some("criterion") if args.len() == 3 => {
            let benches = criterion::collect(Path::new(&args[1]))?;
            let json = serde_json::to_string_pretty(&benches)? + "\n";
            fs::write(&args[2], json).with_context(|| format!("writing {}", args[2]))?;
            eprintln!(
                "results-render: {} criterion medians in {}",
                benches.len(),
                args[2]
            );
            Ok(())
        }
        Some("median") if args.len() >= 3 => {
            let mut values = Vec::new();
            for file in &args[2..] {
                values.push(field_of(Path::new(file), &args[1])?);
            }
            let m = stats::median(values).context("no values")?;
            println!("{m:.0}");
            Ok(())
        }
        Some("-h" | "--help" | "help") => {
            println!("{USAGE}");
            Ok(())
        }
        Some(_) => bail!("bad arguments\n{USAGE}"),
    }
}

/// A numeric field, by dotted path, of the last JSON line of `file`.
fn field_of(file: &Path, path: &str) -> anyhow::Result<f64> {
    let text = fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let line = last_line(&text).with_context(|| format!("{} is empty", file.display()))?;
    let value: serde_json::Value =
        serde_json::from_str(line).with_context(|| format!("parsing {}", file.display()))?;
    path.split('.')
        .try_fold(&value, |v, key| v.get(key))
        .and_then(|v| v.as_f64())
        .with_context(|| format!("{} has no number at {path}", file.display()))
}

/// Redraws every chart and rewrites every generated section of the README.
fn render(data: &Path, out: &Path) -> anyhow::Result<()> {
    let runs = if data.is_dir() {
        data::load_runs(data)?
    } else {
        Vec::new()
    };
    let summaries = data::summarize(&runs);
    let outcomes: Vec<_> = targets::TARGETS
        .iter()
        .map(|&t| targets::evaluate(t, &summaries))
        .collect();

    let json = |name: &str| -> anyhow::Result<Option<serde_json::Value>> {
        let path = data.join(name);
        match fs::read_to_string(&path) {
            Ok(t) => Ok(Some(
                serde_json::from_str(&t).with_context(|| format!("parsing {}", path.display()))?,
            )),
            Err(_) => Ok(None),
        }
    };
    let machine_json = json("machine.json")?;
    let (samples, legacy) = match fs::read_to_string(data.join("load.jsonl")) {
        Ok(text) => (machine::parse_samples(&text)?, false),
        Err(_) => {
            let legacy = machine_json.as_ref().and_then(machine::legacy_sample);
            let found = legacy.is_some();
            (legacy.into_iter().collect(), found)
        }
    };
    let cores = machine_json
        .as_ref()
        .and_then(|m| m["cores"].as_f64())
        .unwrap_or(1.0);
    let activity = machine::judge(&samples, cores);
    let subtitle = machine::subtitle(machine_json.as_ref(), &activity);

    let mut charts = Vec::new();
    let mut draw = |file: String, drawn: anyhow::Result<bool>, alt: String| {
        let path = out.join(&file);
        match drawn.with_context(|| format!("drawing {}", path.display()))? {
            true => charts.push((file, alt)),
            // A chart without data now must not show old figures.
            false if path.exists() => fs::remove_file(&path)?,
            false => {}
        }
        anyhow::Ok(())
    };
    draw(
        "fanout.svg".into(),
        charts::fanout(&summaries, &subtitle, &out.join("fanout.svg")),
        "Deliveries per second at each measured number of subscribers, per server".into(),
    )?;
    draw(
        "latency.svg".into(),
        charts::latency(&summaries, &subtitle, &out.join("latency.svg")),
        "mq-actix latency percentiles at each measured offered rate, open loop".into(),
    )?;
    for outcome in &outcomes {
        let file = format!("compare-{}.svg", outcome.target.id);
        let runs = summaries
            .iter()
            .filter(|s| s.case == outcome.target.case)
            .map(|s| s.runs)
            .max()
            .unwrap_or(1);
        let drawn = charts::compare(outcome, runs, &subtitle, &out.join(&file));
        draw(file, drawn, charts::alt_text(outcome))?;
    }
    type Chart = fn(&[data::Summary], &str, &Path) -> anyhow::Result<bool>;
    let grouped: [(&str, Chart, &str); 4] = [
        (
            "compare-cpu-per-delivery.svg",
            charts::cpu,
            "Server CPU time per delivery of mq-actix, Redis and NATS in each throughput case",
        ),
        (
            "compare-size.svg",
            charts::sizes,
            "Deliveries per second of fanout-100 and queue at each message size, per server",
        ),
        (
            "compare-durable.svg",
            charts::durable,
            "Deliveries per second of mq-actix on disk beside mq-actix in memory and Redis with \
             its append-only file",
        ),
        (
            "compare-latency-fanout-1.svg",
            charts::fanout_1_latency,
            "p50 and p99 latency at fanout 1, closed loop, of mq-actix, Redis and NATS",
        ),
    ];
    for (file, chart, alt) in grouped {
        let drawn = chart(&summaries, &subtitle, &out.join(file));
        draw(file.into(), drawn, alt.into())?;
    }

    let readme_path = out.join("README.md");
    let mut text = fs::read_to_string(&readme_path)
        .with_context(|| format!("reading {}", readme_path.display()))?;
    let benches: Vec<criterion::Bench> = match json("criterion.json")? {
        Some(v) => serde_json::from_value(v).context("reading criterion.json")?,
        None => Vec::new(),
    };
    let commands = fs::read_to_string(data.join("commands.txt")).ok();
    let generated = [
        (
            "machine",
            sections::machine(machine_json.as_ref(), json("run.json")?.as_ref()),
        ),
        ("load", sections::load(&samples, &activity, cores, legacy)),
        ("charts", sections::charts(&charts)),
        ("comparison", sections::comparison(&outcomes)),
        ("sizes", sections::sizes(&variants::size_rows(&summaries))),
        (
            "durable",
            sections::durable(&variants::durable_rows(&summaries)),
        ),
        ("loadgen", sections::loadgen(&summaries)),
        ("criterion", sections::criterion(&benches)),
        ("commands", sections::commands(commands.as_deref())),
    ];
    for (name, body) in generated {
        text = readme::replace_section(&text, name, &body)
            .with_context(|| format!("in {}", readme_path.display()))?;
    }
    fs::write(&readme_path, text).with_context(|| format!("writing {}", readme_path.display()))?;
    eprintln!(
        "results-render: {} runs in {} cases, {} charts, tables in {}",
        runs.len(),
        summaries.len(),
        charts.len(),
        readme_path.display()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Renders the committed `results/data` into a scratch copy of the
    /// README and returns the README and every chart drawn.
    fn render_committed() -> Vec<(String, String)> {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let out = std::env::temp_dir().join(format!("results-render-main-{}", std::process::id()));
        fs::create_dir_all(&out).unwrap();
        fs::copy(results.join("README.md"), out.join("README.md")).unwrap();
        render(&results.join("data"), &out).unwrap();
        let mut files: Vec<(String, String)> = fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| {
                let name = p.file_name().unwrap().to_string_lossy().into_owned();
                (name, fs::read_to_string(&p).unwrap())
            })
            .collect();
        files.sort();
        fs::remove_dir_all(&out).unwrap();
        files
    }

    #[test]
    fn the_committed_results_say_what_they_mean_and_what_the_machine_did() {
        let files = render_committed();
        assert!(files.iter().any(|(name, _)| name == "fanout.svg"));
        for (name, text) in &files {
            // Tracker references mean nothing to a reader of the results.
            for jargon in ["issue ", "Issue ", "issue #"] {
                assert!(!text.contains(jargon), "{name} says {jargon:?}");
            }
            // No path of the machine that ran the benchmarks.
            assert!(!text.contains("/work/"), "{name} has an absolute path");
        }
        let readme = &files.iter().find(|(n, _)| n == "README.md").unwrap().1;
        // The committed run: 1.34 on 2 cores before the build, which the
        // rule calls busy, and a sample at the start of every case.
        assert!(readme.contains("**Busy**: 1-minute load average 1.34 before the build"));
        assert!(readme.contains("| at the start of fanout-100 against mq-actix "));
        assert!(!readme.contains("**Quiet**"));
    }
}
