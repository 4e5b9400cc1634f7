//! Criterion's medians, collected from `target/criterion` into one file that
//! can be committed (`results/data/criterion.json`), since `target/` is not.
//!
//! Criterion keeps each benchmark's latest results in
//! `<group>/<function>/<value>/new/`: `estimates.json` (whose
//! `median.point_estimate` is in nanoseconds per iteration) and
//! `benchmark.json` (its full id and throughput). Directory names are
//! sanitized ids, so the id is taken from `benchmark.json`, not the path.

use std::cmp::Ordering;
use std::fs;
use std::path::Path;

use anyhow::Context;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One benchmark's median.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Bench {
    /// `group/function/value`, as criterion prints it.
    pub id: String,
    pub median_ns: f64,
    /// What one iteration processes, when the benchmark declared it.
    pub throughput: Option<Throughput>,
}

/// Work per iteration: `count` of `unit` (`bytes` or `elements`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    pub count: u64,
    pub unit: String,
}

impl Bench {
    /// Units of work per second at the median.
    pub fn per_second(&self) -> Option<f64> {
        let t = self.throughput.as_ref()?;
        (self.median_ns > 0.0).then(|| t.count as f64 * 1e9 / self.median_ns)
    }
}

/// Every benchmark under `dir`, in natural order of id; an absent directory
/// gives none.
pub fn collect(dir: &Path) -> anyhow::Result<Vec<Bench>> {
    let mut out = Vec::new();
    if dir.is_dir() {
        walk(dir, &mut out)?;
    }
    out.sort_by(|a, b| natural_cmp(&a.id, &b.id));
    Ok(out)
}

fn walk(dir: &Path, out: &mut Vec<Bench>) -> anyhow::Result<()> {
    let new = dir.join("new");
    if new.join("estimates.json").is_file() && new.join("benchmark.json").is_file() {
        out.push(read_bench(&new)?);
    }
    for entry in fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        // Criterion's own HTML and the older results are not benchmarks.
        if path.is_dir() && !matches!(name, "new" | "base" | "change" | "report") {
            walk(&path, out)?;
        }
    }
    Ok(())
}

fn read_bench(new: &Path) -> anyhow::Result<Bench> {
    let read = |file: &str| -> anyhow::Result<Value> {
        let path = new.join(file);
        let text =
            fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    };
    parse_bench(&read("benchmark.json")?, &read("estimates.json")?)
        .with_context(|| format!("in {}", new.display()))
}

/// A [`Bench`] from criterion's `benchmark.json` and `estimates.json`.
pub fn parse_bench(benchmark: &Value, estimates: &Value) -> anyhow::Result<Bench> {
    let id = benchmark["full_id"]
        .as_str()
        .context("benchmark.json has no full_id")?
        .to_string();
    let median_ns = estimates["median"]["point_estimate"]
        .as_f64()
        .context("estimates.json has no median.point_estimate")?;
    Ok(Bench {
        id,
        median_ns,
        throughput: throughput(&benchmark["throughput"]),
    })
}

/// Criterion's `Throughput` as serde writes it: `{"Bytes": 64}`,
/// `{"Elements": 1}`, `{"ElementsAndBytes": {"elements": 1, "bytes": 64}}`.
fn throughput(value: &Value) -> Option<Throughput> {
    let (kind, n) = value.as_object()?.iter().next()?;
    let (count, unit) = match kind.as_str() {
        "Bytes" | "BytesDecimal" => (n.as_u64()?, "bytes"),
        "Bits" => (n.as_u64()? / 8, "bytes"),
        "Elements" => (n.as_u64()?, "elements"),
        "ElementsAndBytes" => (n["elements"].as_u64()?, "elements"),
        _ => return None,
    };
    Some(Throughput {
        count,
        unit: unit.to_string(),
    })
}

/// Orders ids the way a person counts: `send_all/2` before `send_all/10`.
pub fn natural_cmp(a: &str, b: &str) -> Ordering {
    chunks(a).cmp(&chunks(b)).then_with(|| a.cmp(b))
}

/// Runs of digits (compared as numbers) and of everything else.
fn chunks(text: &str) -> Vec<(String, u128)> {
    let mut out: Vec<(String, u128)> = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.len() - rest.trim_start_matches(|c: char| c.is_ascii_digit()).len();
        if digits > 0 {
            out.push((String::new(), rest[..digits].parse().unwrap_or(u128::MAX)));
            rest = &rest[digits..];
        } else {
            let text_len = rest
                .find(|c: char| c.is_ascii_digit())
                .unwrap_or(rest.len());
            out.push((rest[..text_len].to_string(), 0));
            rest = &rest[text_len..];
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_benchmark_is_its_id_median_and_throughput() {
        let bench = parse_bench(
            &json!({"group_id": "send_all", "function_id": null, "value_str": "100",
                    "throughput": {"Elements": 100}, "full_id": "send_all/100",
                    "directory_name": "send_all/100", "title": "send_all/100"}),
            &json!({"mean": {"point_estimate": 1200.0},
                    "median": {"point_estimate": 1000.0, "standard_error": 3.0}}),
        )
        .unwrap();
        assert_eq!(bench.id, "send_all/100");
        assert_eq!(bench.median_ns, 1000.0);
        assert_eq!(bench.per_second(), Some(1e8));
    }

    #[test]
    fn throughput_kinds_are_read() {
        let of = |v: Value| throughput(&v).map(|t| (t.count, t.unit));
        assert_eq!(of(json!({"Bytes": 64})), Some((64, "bytes".into())));
        assert_eq!(of(json!({"BytesDecimal": 64})), Some((64, "bytes".into())));
        assert_eq!(of(json!({"Bits": 64})), Some((8, "bytes".into())));
        assert_eq!(
            of(json!({"ElementsAndBytes": {"elements": 3, "bytes": 64}})),
            Some((3, "elements".into()))
        );
        assert_eq!(of(json!(null)), None);
    }

    #[test]
    fn missing_medians_are_errors() {
        assert!(parse_bench(&json!({"full_id": "x"}), &json!({})).is_err());
        assert!(parse_bench(&json!({}), &json!({"median": {"point_estimate": 1.0}})).is_err());
    }

    #[test]
    fn ids_sort_naturally() {
        let mut ids = vec!["send_all/1000", "send_all/2", "parse/x", "send_all/10"];
        ids.sort_by(|a, b| natural_cmp(a, b));
        assert_eq!(
            ids,
            ["parse/x", "send_all/2", "send_all/10", "send_all/1000"]
        );
    }

    #[test]
    fn criterion_directories_are_walked() {
        let root = std::env::temp_dir().join(format!("results-render-{}", std::process::id()));
        let new = root.join("send_all/100/new");
        fs::create_dir_all(&new).unwrap();
        fs::create_dir_all(root.join("send_all/100/base")).unwrap();
        fs::create_dir_all(root.join("report")).unwrap();
        fs::write(
            new.join("benchmark.json"),
            r#"{"full_id": "send_all/100", "throughput": null}"#,
        )
        .unwrap();
        fs::write(
            new.join("estimates.json"),
            r#"{"median": {"point_estimate": 42.0}}"#,
        )
        .unwrap();
        let benches = collect(&root).unwrap();
        fs::remove_dir_all(&root).unwrap();
        assert_eq!(
            benches,
            [Bench {
                id: "send_all/100".into(),
                median_ns: 42.0,
                throughput: None
            }]
        );
        assert!(collect(&root).unwrap().is_empty());
    }
}
