//! The SVG charts: deliveries at each number of subscribers, latency at
//! each offered rate, one bar chart per comparison, and the grouped charts
//! of the server's CPU per delivery, the message sizes, the durable modes
//! and the latency at fanout 1. Each draws only
//! what was measured: a mark per measured value, with a whisker from the
//! lowest run to the highest, and no line between two measured values;
//! each names its commit, day and machine under its title. Drawn with plotters' SVG backend
//! only, so no font library is needed: the viewer's sans-serif font draws
//! the text.

use std::cmp::Ordering;
use std::path::Path;

use anyhow::anyhow;
use plotters::coord::ranged1d::{SegmentValue, SegmentedCoord, ValueFormatter};
use plotters::coord::types::RangedCoordi32;
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::data::{CaseName, Server, Summary, Variant};
use crate::stats::Spread;
use crate::tables;
use crate::targets::{Metric, Outcome, TARGETS};
use crate::variants::{durable_rows, size_rows};

const SIZE: (u32, u32) = (860, 520);

const FONT: &str = "sans-serif";

/// Each server's colour, the same in every chart.
pub fn colour(server: Server) -> RGBColor {
    match server {
        Server::MqActix => RGBColor(0x1f, 0x77, 0xb4),
        Server::Redis => RGBColor(0xd6, 0x27, 0x28),
        Server::Nats => RGBColor(0x2c, 0xa0, 0x2c),
    }
}

/// Plotters' errors borrow the backend; keep only their text.
fn err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("drawing: {e:?}")
}

/// An axis value in few characters: 950, 12k, 1.5M.
pub fn short(v: f64) -> String {
    let a = v.abs();
    let (scaled, suffix) = if a >= 1e9 {
        (v / 1e9, "G")
    } else if a >= 1e6 {
        (v / 1e6, "M")
    } else if a >= 1e3 {
        (v / 1e3, "k")
    } else {
        (v, "")
    };
    let text = if scaled.fract().abs() < 1e-9 || scaled.abs() >= 100.0 {
        format!("{scaled:.0}")
    } else if scaled.abs() >= 10.0 {
        format!("{scaled:.1}")
    } else {
        format!("{scaled:.2}")
    };
    let text = if text.contains('.') {
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    } else {
        text
    };
    format!("{text}{suffix}")
}

/// An axis duration given in microseconds: 500 µs, 12 ms, 1.5 s.
pub fn duration(us: f64) -> String {
    if us >= 1e6 {
        format!("{} s", short(us / 1e6))
    } else if us >= 1e3 {
        format!("{} ms", short(us / 1e3))
    } else {
        format!("{} µs", short(us))
    }
}

/// One measured x value of a grouped chart (a subscriber count, an offered
/// rate, a case), as its label under the axis says it, and, per series,
/// the spread of its runs there (`None` where that series was not
/// measured). Charts are drawn from groups, not lines, so that nothing is
/// drawn between two measured values that was not measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Group {
    pub label: String,
    pub spreads: Vec<Option<Spread>>,
}

/// How a series of a grouped chart is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mark {
    /// A bar up to the median, for rates on a linear axis.
    Bar,
    /// A dot at the median, for latencies on a log axis, where a bar's
    /// foot would mean nothing.
    Dot,
}

/// A grouped chart's series: its legend label and colour.
type Series = (String, RGBColor);

/// The series of a chart with one mark per server.
fn server_series() -> Vec<Series> {
    Server::ALL
        .iter()
        .map(|&s| (s.label().to_string(), colour(s)))
        .collect()
}

/// The groups of the fanout chart: one per subscriber count that some
/// server was measured at (`fanout-N` cases), in increasing order, each
/// with the delivery rates of [`Server::ALL`]. Plain cases only: a
/// variant (TLS, bigger messages, on disk) is another load, and its bar
/// would stand where the plain one belongs.
pub fn fanout_groups(summaries: &[Summary]) -> Vec<Group> {
    let fanout = || plain_fanouts(summaries);
    let mut counts: Vec<usize> = fanout()
        .filter(|s| s.delivery_rate.is_some())
        .map(|s| s.params.clients)
        .collect();
    counts.sort_unstable();
    counts.dedup();
    counts
        .into_iter()
        .map(|n| Group {
            label: match n {
                1 => "1 subscriber".to_string(),
                n => format!("{} subscribers", tables::count(n as f64)),
            },
            spreads: Server::ALL
                .iter()
                .map(|&server| {
                    fanout()
                        .find(|s| s.server == server && s.params.clients == n)
                        .and_then(|s| s.delivery_rate)
                })
                .collect(),
        })
        .collect()
}

/// The plain `fanout-N` cases: no variant (see [`CaseName`]).
fn plain_fanouts(summaries: &[Summary]) -> impl Iterator<Item = &Summary> {
    summaries.iter().filter(|s| {
        let name = CaseName::parse(&s.case);
        name.family == "fanout" && name.number.is_some() && name.variant.is_none()
    })
}

/// Deliveries per second at each measured number of subscribers, a bar
/// per server with its runs' spread. `Ok(false)` when there is nothing to
/// draw.
pub fn fanout(summaries: &[Summary], subtitle: &str, path: &Path) -> anyhow::Result<bool> {
    draw_grouped(
        &Grouped {
            title: "Fanout: deliveries per second at each number of subscribers".into(),
            subtitle: format!(
                "{subtitle} · {}",
                spread_note(runs_of(plain_fanouts(summaries)))
            ),
            groups: fanout_groups(summaries),
            series: server_series(),
            x_desc: "subscribers on the topic (1 publisher, window 64, 64-byte messages)",
            y_desc: "deliveries per second",
            y_value: &|v| short(*v),
            mark: Mark::Bar,
            legend: SeriesLabelPosition::UpperLeft,
        },
        path,
    )
}

/// The cases of the CPU chart: the plain cases of the delivery-rate
/// comparisons (`fanout-100`, `fanout-1000`, `pairs`, `queue`) and their
/// size variants, in reading order, each with the server's CPU time per
/// delivery (µs) of [`Server::ALL`]. The other variants have charts of
/// their own, and fanout-1, latency, replay and conns are about time or
/// memory, not throughput.
pub fn cpu_groups(summaries: &[Summary]) -> Vec<Group> {
    let compared = |plain: &str| {
        TARGETS
            .iter()
            .any(|t| t.case == plain && t.metric == Metric::DeliveryRate)
    };
    let mut cases: Vec<&str> = summaries
        .iter()
        .filter(|s| s.cpu_per_delivery.is_some())
        .map(|s| s.case.as_str())
        .filter(|case| {
            let name = CaseName::parse(case);
            compared(name.plain) && matches!(name.variant, None | Some(Variant::Size(_)))
        })
        .collect();
    cases.dedup();
    cases
        .into_iter()
        .map(|case| Group {
            label: case.to_string(),
            spreads: Server::ALL
                .iter()
                .map(|&server| {
                    let s = summaries
                        .iter()
                        .find(|s| s.case == case && s.server == server)?;
                    s.cpu_per_delivery.map(|c| scaled(c, 1e6))
                })
                .collect(),
        })
        .collect()
}

/// The server's CPU time per delivery in each case of [`cpu_groups`], a
/// bar per server. `Ok(false)` when no run reported it.
pub fn cpu(summaries: &[Summary], subtitle: &str, path: &Path) -> anyhow::Result<bool> {
    draw_grouped(
        &Grouped {
            title: "Server CPU time per delivery".into(),
            subtitle: format!(
                "{subtitle} · {}",
                spread_note(runs_of(
                    summaries.iter().filter(|s| s.cpu_per_delivery.is_some())
                ))
            ),
            groups: cpu_groups(summaries),
            series: server_series(),
            x_desc: "case (64-byte messages unless the name says 1k or 16k)",
            y_desc: "server CPU time per delivery, lower is better",
            y_value: &|v| duration(*v),
            mark: Mark::Bar,
            legend: SeriesLabelPosition::UpperLeft,
        },
        path,
    )
}

/// Deliveries per second at each message size of the size sweep, a dot
/// per server on a log axis, so that the rates of small and large messages
/// both read. `Ok(false)` when no size variant was measured.
pub fn sizes(summaries: &[Summary], subtitle: &str, path: &Path) -> anyhow::Result<bool> {
    let rows = size_rows(summaries);
    let runs = runs_of(summaries.iter().filter(|s| {
        rows.iter()
            .any(|r| r.case == s.case && r.spreads.iter().any(Option::is_some))
    }));
    let groups = rows
        .iter()
        .map(|r| Group {
            label: format!("{} · {}", r.plain, tables::size(r.size)),
            spreads: r.spreads.to_vec(),
        })
        .collect();
    draw_grouped(
        &Grouped {
            title: "Message size: deliveries per second".into(),
            subtitle: format!("{subtitle} · {}", spread_note(runs)),
            groups,
            series: server_series(),
            x_desc: "case and message size (fanout-100: 1 publisher, 100 subscribers; \
                     queue: 2 publishers, 10 workers)",
            y_desc: "deliveries per second (log scale)",
            y_value: &|v| short(*v),
            mark: Mark::Dot,
            legend: SeriesLabelPosition::UpperRight,
        },
        path,
    )
}

/// Deliveries per second of each durable case: mq-actix on disk beside
/// mq-actix in memory (the plain case) and Redis with its append-only
/// file. `Ok(false)` when no durable case was measured.
pub fn durable(summaries: &[Summary], subtitle: &str, path: &Path) -> anyhow::Result<bool> {
    let rows = durable_rows(summaries);
    let runs = runs_of(summaries.iter().filter(|s| {
        rows.iter()
            .any(|r| r.case == s.case || (r.plain == s.case && s.server == Server::MqActix))
    }));
    let groups = rows
        .iter()
        .map(|r| Group {
            label: format!("{} · {}", r.plain, r.fsync.name()),
            spreads: vec![r.memory, r.on_disk, r.redis_aof],
        })
        .collect();
    let series = vec![
        ("mq-actix in memory".to_string(), RGBColor(0x9e, 0xc6, 0xe8)),
        ("mq-actix on disk".to_string(), colour(Server::MqActix)),
        (
            "Redis with AOF (everysec beside batch, always beside always)".to_string(),
            colour(Server::Redis),
        ),
    ];
    draw_grouped(
        &Grouped {
            title: "On disk: deliveries per second, mq-actix --fsync batch and always".into(),
            subtitle: format!("{subtitle} · {}", spread_note(runs)),
            groups,
            series,
            x_desc: "case and mq-actix's --fsync mode (64-byte messages)",
            y_desc: "deliveries per second",
            y_value: &|v| short(*v),
            mark: Mark::Bar,
            legend: SeriesLabelPosition::UpperRight,
        },
        path,
    )
}

/// The groups of the fanout-1 latency chart: p50 and p99 of the
/// closed-loop `fanout-1` case, each with [`Server::ALL`]'s spread.
pub fn fanout_1_latency_groups(summaries: &[Summary]) -> Vec<Group> {
    let of = |server: Server| {
        summaries
            .iter()
            .find(|s| s.case == "fanout-1" && s.server == server)
    };
    let group = |label: &str, percentile: fn(&Summary) -> Option<Spread>| Group {
        label: label.to_string(),
        spreads: Server::ALL
            .iter()
            .map(|&s| of(s).and_then(percentile))
            .collect(),
    };
    vec![group("p50", |s| s.p50_us), group("p99", |s| s.p99_us)]
}

/// The end-to-end latency of one publisher to one subscriber, closed loop
/// (window 64), a dot per server on a log axis. `Ok(false)` when fanout-1
/// was not measured.
pub fn fanout_1_latency(
    summaries: &[Summary],
    subtitle: &str,
    path: &Path,
) -> anyhow::Result<bool> {
    let runs = runs_of(summaries.iter().filter(|s| s.case == "fanout-1"));
    draw_grouped(
        &Grouped {
            title: "Latency at fanout 1, closed loop: p50 and p99".into(),
            subtitle: format!("{subtitle} · {}", spread_note(runs)),
            groups: fanout_1_latency_groups(summaries),
            series: server_series(),
            x_desc: "percentile (1 publisher, 1 subscriber, window 64, 64-byte messages)",
            y_desc: "end-to-end latency (log scale), lower is better",
            y_value: &|v| duration(*v),
            mark: Mark::Dot,
            legend: SeriesLabelPosition::UpperLeft,
        },
        path,
    )
}

/// `spread` times `factor`: a figure in the unit its axis shows.
fn scaled(spread: Spread, factor: f64) -> Spread {
    Spread {
        min: spread.min * factor,
        median: spread.median * factor,
        max: spread.max * factor,
    }
}

/// A grouped chart: marks side by side per group, a whisker each.
struct Grouped<'a> {
    title: String,
    /// Where the figures come from, and what marks and whiskers stand for.
    subtitle: String,
    groups: Vec<Group>,
    series: Vec<Series>,
    x_desc: &'a str,
    y_desc: &'a str,
    y_value: &'a dyn Fn(&f64) -> String,
    /// Bars on a linear axis from 0, or dots on a log axis.
    mark: Mark,
    /// Where the legend covers no mark: above the groups whose marks are
    /// low.
    legend: SeriesLabelPosition,
}

/// Draws `chart` to `path`, without the series measured in no group.
/// `Ok(false)`, and no file, when nothing was measured.
fn draw_grouped(chart: &Grouped, path: &Path) -> anyhow::Result<bool> {
    let Some(y_max) = highest(&chart.groups) else {
        return Ok(false);
    };
    let (groups, series) = measured_series(chart.groups.clone(), chart.series.clone());
    let slots = Slots::new(groups.len(), series.len());
    let root = canvas_of(path, slots.width())?;
    let body = heading(&root, &chart.title, &chart.subtitle)?;
    let label = |i: usize| groups[i].label.clone();
    match chart.mark {
        Mark::Bar => {
            let mut c = builder(&body, 56)
                .build_cartesian_2d(slots.axis(), 0.0..(y_max * 1.12).max(1e-9))
                .map_err(err)?;
            draw_x_axis(
                &mut c,
                &slots,
                &label,
                chart.x_desc,
                chart.y_desc,
                chart.y_value,
                None,
            )?;
            draw_groups(
                &mut c,
                &slots,
                &groups,
                &series,
                Mark::Bar,
                chart.legend.clone(),
            )?;
        }
        Mark::Dot => {
            let y_min = groups
                .iter()
                .flat_map(|g| g.spreads.iter().flatten())
                .map(|s| s.min)
                .fold(f64::INFINITY, f64::min)
                .max(1e-3);
            let mut c = builder(&body, 56)
                .build_cartesian_2d(slots.axis(), (y_min / 2.0..y_max * 2.0).log_scale())
                .map_err(err)?;
            draw_x_axis(
                &mut c,
                &slots,
                &label,
                chart.x_desc,
                chart.y_desc,
                chart.y_value,
                Some(12),
            )?;
            draw_groups(
                &mut c,
                &slots,
                &groups,
                &series,
                Mark::Dot,
                chart.legend.clone(),
            )?;
        }
    }
    root.present().map_err(err)?;
    Ok(true)
}

/// The groups of the latency chart: one per offered rate of mq-actix's
/// `latency-P` cases, in increasing order, each with its p50, p99 and
/// p99.9.
pub fn latency_groups(summaries: &[Summary]) -> Vec<Group> {
    let mut cases: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.server == Server::MqActix && s.case.starts_with("latency-"))
        .filter(|s| s.rate.is_some() && s.p50_us.is_some())
        .collect();
    cases.sort_by(|a, b| a.rate.partial_cmp(&b.rate).unwrap_or(Ordering::Equal));
    cases
        .iter()
        .filter_map(|s| {
            Some(Group {
                label: tables::rate(s.rate?),
                spreads: vec![s.p50_us, s.p99_us, s.p999_us],
            })
        })
        .collect()
}

/// mq-actix's latency percentiles at each measured offered rate (open
/// loop), a dot per percentile with its runs' spread. `Ok(false)` when
/// there is nothing to draw.
pub fn latency(summaries: &[Summary], subtitle: &str, path: &Path) -> anyhow::Result<bool> {
    let latency = || summaries.iter().filter(|s| s.case.starts_with("latency-"));
    let subscribers = latency().map(|s| s.params.clients).next().unwrap_or(0);
    let series: Vec<Series> = [
        ("p50", RGBColor(0x1f, 0x77, 0xb4)),
        ("p99", RGBColor(0xff, 0x7f, 0x0e)),
        ("p99.9", RGBColor(0x94, 0x67, 0xbd)),
    ]
    .map(|(l, c)| (l.to_string(), c))
    .to_vec();
    draw_grouped(
        &Grouped {
            title: format!(
                "mq-actix latency at each offered rate (open loop, fanout to {subscribers})"
            ),
            subtitle: format!("{subtitle} · {}", spread_note(runs_of(latency()))),
            groups: latency_groups(summaries),
            series,
            x_desc: "offered rate (messages published per second, each delivered to every \
                     subscriber)",
            y_desc: "end-to-end latency (log scale)",
            y_value: &|v| duration(*v),
            mark: Mark::Dot,
            legend: SeriesLabelPosition::UpperLeft,
        },
        path,
    )
}

/// `groups` and `series` without the series measured in no group (a server
/// left out of the run), so that no room is kept for marks never drawn.
fn measured_series(groups: Vec<Group>, series: Vec<Series>) -> (Vec<Group>, Vec<Series>) {
    let kept: Vec<usize> = (0..series.len())
        .filter(|&k| {
            groups
                .iter()
                .any(|g| g.spreads.get(k).is_some_and(Option::is_some))
        })
        .collect();
    let groups = groups
        .into_iter()
        .map(|g| Group {
            label: g.label,
            spreads: kept.iter().map(|&k| g.spreads[k]).collect(),
        })
        .collect();
    let series = kept.iter().map(|&k| series[k].clone()).collect();
    (groups, series)
}

/// The highest run over all groups, `None` when there is none.
fn highest(groups: &[Group]) -> Option<f64> {
    groups
        .iter()
        .flat_map(|g| g.spreads.iter().flatten())
        .map(|s| s.max)
        .reduce(f64::max)
}

/// The most runs any of `summaries` has.
fn runs_of<'a>(summaries: impl Iterator<Item = &'a Summary>) -> usize {
    summaries.map(|s| s.runs).max().unwrap_or(1)
}

/// What a mark and its whisker stand for, for the subtitle.
fn spread_note(runs: usize) -> String {
    if runs > 1 {
        format!("median of {runs} runs, whiskers from lowest to highest run")
    } else {
        "1 run".to_string()
    }
}

/// The x axis of a grouped chart: one segment per series in each group and
/// an empty one between groups, so that each group's marks stand side by
/// side over its label and no x value is implied between two groups.
struct Slots {
    groups: usize,
    series: usize,
}

impl Slots {
    fn new(groups: usize, series: usize) -> Slots {
        Slots { groups, series }
    }

    /// The segment of `series` in `group`.
    fn of(&self, group: usize, series: usize) -> i32 {
        (group * (self.series + 1) + series) as i32
    }

    /// The group whose label goes under segment `slot`: the middle series'.
    fn labelled(&self, slot: i32) -> Option<usize> {
        let slot = usize::try_from(slot).ok()?;
        let (group, series) = (slot / (self.series + 1), slot % (self.series + 1));
        (group < self.groups && series == self.series / 2).then_some(group)
    }

    fn count(&self) -> i32 {
        (self.groups * (self.series + 1) - 1) as i32
    }

    /// The canvas width that leaves each group's label room under it: the
    /// usual [`SIZE`], wider when there are many groups (the CPU chart's
    /// eight cases of three servers).
    fn width(&self) -> u32 {
        SIZE.0.max(self.count() as u32 * 30 + 120)
    }

    /// An i32 range includes its end: 0..n - 1 makes n segments.
    fn axis(&self) -> SegmentedCoord<RangedCoordi32> {
        (0..self.count() - 1).into_segmented()
    }
}

/// Draws the grid and the axes of a grouped chart: each group's label,
/// from `label`, under its middle segment; y values as `y_value` writes
/// them, `y_labels` of them where plotters' default number is too few.
fn draw_x_axis<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<SegmentedCoord<RangedCoordi32>, Y>>,
    slots: &Slots,
    label: &dyn Fn(usize) -> String,
    x_desc: &str,
    y_desc: &str,
    y_value: &dyn Fn(&f64) -> String,
    y_labels: Option<usize>,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let x_value = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => slots.labelled(*i).map(label).unwrap_or_default(),
        _ => String::new(),
    };
    let mut mesh = chart.configure_mesh();
    mesh.disable_x_mesh()
        .x_labels(slots.count() as usize)
        .x_label_formatter(&x_value)
        .x_desc(x_desc)
        .y_desc(y_desc)
        .y_label_formatter(y_value)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14));
    if let Some(n) = y_labels {
        mesh.y_labels(n);
    }
    mesh.draw().map_err(err)
}

/// Draws each group's marks, one per series that was measured there, each
/// with a whisker from its lowest run to its highest, then the legend.
fn draw_groups<'a, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<SegmentedCoord<RangedCoordi32>, Y>>,
    slots: &Slots,
    groups: &[Group],
    series: &[Series],
    mark: Mark,
    legend: SeriesLabelPosition,
) -> anyhow::Result<()>
where
    Y: Ranged<ValueType = f64>,
{
    let whisker = RGBColor(0x33, 0x33, 0x33).stroke_width(2);
    for (k, (label, c)) in series.iter().enumerate() {
        let measured: Vec<(i32, Spread)> = groups
            .iter()
            .enumerate()
            .filter_map(|(g, group)| Some((slots.of(g, k), group.spreads.get(k).copied()??)))
            .collect();
        if measured.is_empty() {
            continue;
        }
        let c = *c;
        let drawn = match mark {
            Mark::Bar => chart.draw_series(measured.iter().map(|&(slot, s)| {
                let mut bar = Rectangle::new(
                    [
                        (SegmentValue::Exact(slot), 0.0),
                        (SegmentValue::Exact(slot + 1), s.median),
                    ],
                    c.filled(),
                );
                bar.set_margin(0, 0, 3, 3);
                bar
            })),
            Mark::Dot => chart.draw_series(measured.iter().map(|&(slot, s)| {
                Circle::new((SegmentValue::CenterOf(slot), s.median), 6, c.filled())
            })),
        }
        .map_err(err)?;
        drawn
            .label(label.as_str())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 16, y + 6)], c.filled()));
        chart
            .draw_series(measured.iter().map(|&(slot, s)| {
                ErrorBar::new_vertical(
                    SegmentValue::CenterOf(slot),
                    s.min,
                    s.median,
                    s.max,
                    whisker,
                    10,
                )
            }))
            .map_err(err)?;
    }
    draw_legend(chart, legend, 16)
}

/// One comparison as bars, one per server, each with a whisker from its
/// lowest run to its highest and its median written above, and the bound
/// mq-actix must stay within, if any, as a dashed line. `Ok(false)` when
/// mq-actix has no figure.
pub fn compare(
    outcome: &Outcome,
    runs: usize,
    subtitle: &str,
    path: &Path,
) -> anyhow::Result<bool> {
    let target = &outcome.target;
    if outcome.value(Server::MqActix).is_none() {
        return Ok(false);
    }
    let (axis, scale) = target.metric.axis();
    let bars: Vec<(usize, Server, Option<Spread>)> = Server::ALL
        .iter()
        .enumerate()
        .map(|(i, &s)| (i, s, outcome.spreads[s as usize]))
        .collect();
    let bound = target.bound.map(|(b, text)| (b * scale, text));
    let y_max = bars
        .iter()
        .filter_map(|b| b.2)
        .map(|v| v.max * scale)
        .chain(bound.map(|b| b.0))
        .fold(0.0, f64::max)
        * 1.18;
    let better = if target.metric.lower_is_better() {
        "lower is better"
    } else {
        "higher is better"
    };

    let root = canvas(path)?;
    let body = heading(
        &root,
        target.what,
        &format!("{subtitle} · {}", spread_note(runs)),
    )?;
    let n = bars.len() as i32;
    // An i32 range includes its end: 0..n - 1 makes n segments.
    let mut chart = builder(&body, 48)
        .build_cartesian_2d((0..n - 1).into_segmented(), 0.0..y_max.max(1e-9))
        .map_err(err)?;
    let label_of = |v: &SegmentValue<i32>| match v {
        SegmentValue::CenterOf(i) => Server::ALL
            .get(*i as usize)
            .map(|s| s.label().to_string())
            .unwrap_or_default(),
        _ => String::new(),
    };
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(bars.len())
        .x_label_formatter(&label_of)
        .y_label_formatter(&|v| short(*v))
        .y_desc(format!("{axis}, {better}"))
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 16))
        .draw()
        .map_err(err)?;
    for &(i, server, value) in &bars {
        let i = i as i32;
        let above = (FONT, 15)
            .into_font()
            .color(&BLACK)
            .pos(Pos::new(HPos::Center, VPos::Bottom));
        let Some(spread) = value else {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no data",
                    (SegmentValue::CenterOf(i), 0.0),
                    above,
                )))
                .map_err(err)?;
            continue;
        };
        let v = spread.median;
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), v * scale),
            ],
            colour(server).filled(),
        );
        bar.set_margin(0, 0, 36, 36);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        chart
            .draw_series(std::iter::once(ErrorBar::new_vertical(
                SegmentValue::CenterOf(i),
                spread.min * scale,
                v * scale,
                spread.max * scale,
                RGBColor(0x33, 0x33, 0x33).stroke_width(2),
                12,
            )))
            .map_err(err)?;
        let mut text = target.metric.format(v);
        if server != Server::MqActix {
            if let Some(r) = outcome.ratio(server) {
                text = format!("{text} (mq-actix {})", tables::ratio(r));
            }
        }
        chart
            .draw_series(std::iter::once(
                // Clear of the whisker's cap and of the median's circle.
                EmptyElement::at((SegmentValue::CenterOf(i), spread.max * scale))
                    + Text::new(text, (0, -9), above),
            ))
            .map_err(err)?;
    }
    if let Some((b, text)) = bound {
        let grey = RGBColor(0x55, 0x55, 0x55);
        chart
            .draw_series(DashedLineSeries::new(
                [(SegmentValue::Exact(0), b), (SegmentValue::Exact(n), b)],
                10,
                6,
                grey.stroke_width(2),
            ))
            .map_err(err)?
            .label(format!("mq-actix must stay {text}"))
            .legend(legend_mark(grey.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
    }
    root.present().map_err(err)?;
    Ok(true)
}

/// A white canvas of [`SIZE`] that writes its SVG to `path`.
fn canvas(path: &Path) -> anyhow::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    canvas_of(path, SIZE.0)
}

/// A white canvas `width` wide and as high as [`SIZE`].
fn canvas_of(path: &Path, width: u32) -> anyhow::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, (width, SIZE.1)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// Writes `title` and, under it in smaller grey type, `subtitle` (where the
/// figures come from) at the top of `root`, and returns the area left for
/// the chart.
fn heading<'b>(
    root: &DrawingArea<SVGBackend<'b>, Shift>,
    title: &str,
    subtitle: &str,
) -> anyhow::Result<DrawingArea<SVGBackend<'b>, Shift>> {
    let (head, body) = root.split_vertically(64);
    let centre = (root.dim_in_pixel().0 / 2) as i32;
    let centred = |size: u32, colour: RGBColor| {
        (FONT, size)
            .into_font()
            .color(&colour)
            .pos(Pos::new(HPos::Center, VPos::Top))
    };
    head.draw(&Text::new(title, (centre, 12), centred(21, BLACK)))
        .map_err(err)?;
    let grey = RGBColor(0x55, 0x55, 0x55);
    head.draw(&Text::new(subtitle, (centre, 42), centred(13, grey)))
        .map_err(err)?;
    Ok(body)
}

/// A chart on `area` with `x_label_area` pixels under its x axis, in the
/// margins every chart shares, so that the charts line up side by side in
/// the README.
fn builder<'a, 'b>(
    area: &'a DrawingArea<SVGBackend<'b>, Shift>,
    x_label_area: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder
        .margin(16)
        .margin_top(4)
        .x_label_area_size(x_label_area)
        .y_label_area_size(80);
    builder
}

/// A legend entry's mark: a short stroke in the line's own style.
fn legend_mark(style: ShapeStyle) -> impl Fn((i32, i32)) -> PathElement<(i32, i32)> {
    move |(x, y)| PathElement::new([(x, y), (x + 24, y)], style)
}

/// Draws the legend at `position` with labels in `size` points, on a
/// translucent box so that it stays readable over a line it covers.
fn draw_legend<'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, CT>,
    position: SeriesLabelPosition,
    size: u32,
) -> anyhow::Result<()> {
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, size))
        .background_style(WHITE.mix(0.9))
        .border_style(BLACK.mix(0.4))
        .draw()
        .map_err(err)
}

/// Which metric a chart of `outcome` shows, for the README's alt text.
pub fn alt_text(outcome: &Outcome) -> String {
    let (axis, _) = outcome.target.metric.axis();
    let what = if outcome.target.metric == Metric::DeliveryRate {
        "deliveries per second"
    } else {
        axis
    };
    format!(
        "{}: {what} of mq-actix, Redis and NATS",
        outcome.target.what
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::summarize;
    use crate::data::tests::{report_json, run};

    /// Fanout runs at 1 and 100 subscribers only, mq-actix three times at
    /// 100, Redis once.
    fn fanout_summaries() -> Vec<Summary> {
        let mut runs = Vec::new();
        for (n, rate) in [(1, 300.0), (2, 100.0), (3, 200.0)] {
            let json = report_json("fanout", 100, rate, 5.0);
            runs.push(run("fanout-100", Server::MqActix, n, &json, None));
        }
        let json = report_json("fanout", 1, 50.0, 1.0);
        runs.push(run("fanout-1", Server::Redis, 1, &json, None));
        summarize(&runs)
    }

    #[test]
    fn only_measured_subscriber_counts_are_drawn() {
        let groups = fanout_groups(&fanout_summaries());
        let labels: Vec<&str> = groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(labels, ["1 subscriber", "100 subscribers"]);
        // mq-actix was not run at 1 subscriber, nor Redis at 100, NATS never.
        let measured = |g: &Group| g.spreads.iter().map(Option::is_some).collect::<Vec<_>>();
        assert_eq!(measured(&groups[0]), [false, true, false]);
        assert_eq!(measured(&groups[1]), [true, false, false]);
        let mq = groups[1].spreads[0].unwrap();
        assert_eq!((mq.min, mq.median, mq.max), (100.0, 200.0, 300.0));
    }

    #[test]
    fn a_fanout_over_tls_is_not_drawn_as_the_plain_one() {
        let mut runs = Vec::new();
        let plain = report_json("fanout", 100, 300.0, 5.0);
        runs.push(run("fanout-100", Server::MqActix, 1, &plain, None));
        let tls = report_json("fanout", 100, 200.0, 5.0)
            .replace(r#""timeout_s":5.0"#, r#""timeout_s":5.0,"tls":true"#);
        runs.push(run("fanout-100-tls", Server::MqActix, 1, &tls, None));
        let groups = fanout_groups(&summarize(&runs));
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].spreads[0].map(|s| s.median), Some(300.0));
    }

    #[test]
    fn no_variant_is_drawn_as_a_plain_fanout() {
        let mut runs = Vec::new();
        for (case, rate) in [
            ("fanout-100", 300.0),
            ("fanout-100-1k", 200.0),
            ("fanout-100-fsync-batch", 100.0),
            ("fanout-100-fsync-always", 50.0),
            ("fanout-1000-x", 10.0),
        ] {
            let json = report_json("fanout", 100, rate, 5.0);
            runs.push(run(case, Server::MqActix, 1, &json, None));
        }
        let groups = fanout_groups(&summarize(&runs));
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].label, "100 subscribers");
        assert_eq!(groups[0].spreads[0].map(|s| s.median), Some(300.0));
    }

    #[test]
    fn the_cpu_chart_has_the_throughput_cases_and_their_sizes() {
        let with_cpu = |cpu: f64| {
            report_json("fanout", 100, 1e6, 5.0).replace(
                r#""violations":0"#,
                &format!(r#""server_cpu_s_per_delivery":{cpu},"violations":0"#),
            )
        };
        let mut runs = Vec::new();
        for case in [
            "queue-16k",
            "fanout-1",
            "fanout-100-fsync-batch",
            "fanout-100-tls",
            "pairs",
            "fanout-100",
            "queue",
            "fanout-100-1k",
            "conns",
        ] {
            runs.push(run(case, Server::MqActix, 1, &with_cpu(2e-7), None));
        }
        runs.push(run("queue", Server::Nats, 1, &with_cpu(5e-7), None));
        // A case whose runs report no CPU time takes no group.
        let json = report_json("fanout", 1000, 1e6, 5.0);
        runs.push(run("fanout-1000", Server::Redis, 1, &json, None));
        let groups = cpu_groups(&summarize(&runs));
        let labels: Vec<&str> = groups.iter().map(|g| g.label.as_str()).collect();
        assert_eq!(
            labels,
            ["fanout-100", "fanout-100-1k", "pairs", "queue", "queue-16k"]
        );
        // In microseconds, per server (rounded to whole nanoseconds).
        let queue: Vec<Option<f64>> = groups[3]
            .spreads
            .iter()
            .map(|s| s.map(|s| (s.median * 1e3).round()))
            .collect();
        assert_eq!(queue, [Some(200.0), None, Some(500.0)]);
    }

    #[test]
    fn the_fanout_1_latency_chart_has_p50_and_p99_per_server() {
        let runs = [
            run(
                "fanout-1",
                Server::Redis,
                1,
                &report_json("fanout", 1, 5e5, 700.0),
                None,
            ),
            run(
                "fanout-1",
                Server::Nats,
                1,
                &report_json("fanout", 1, 5e5, 500.0),
                None,
            ),
            run(
                "fanout-100",
                Server::MqActix,
                1,
                &report_json("fanout", 100, 5e6, 3.0),
                None,
            ),
        ];
        let groups = fanout_1_latency_groups(&summarize(&runs));
        let medians = |g: &Group| -> Vec<Option<f64>> {
            g.spreads.iter().map(|s| s.map(|s| s.median)).collect()
        };
        assert_eq!(groups[0].label, "p50");
        // The fixture's p50 is always 10 µs.
        assert_eq!(medians(&groups[0]), [None, Some(10.0), Some(10.0)]);
        assert_eq!(groups[1].label, "p99");
        assert_eq!(medians(&groups[1]), [None, Some(700.0), Some(500.0)]);
        let dir = std::env::temp_dir().join(format!("results-render-f1-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let none = fanout_1_latency(&[], "", &dir.join("none.svg")).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(!none, "drawn without data");
    }

    #[test]
    fn the_charts_draw_marks_and_whiskers_but_no_line() {
        let dir =
            std::env::temp_dir().join(format!("results-render-charts-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fanout.svg");
        assert!(fanout(&fanout_summaries(), "mq-actix abc1234 · today", &path).unwrap());
        let svg = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        // plotters draws a line through points as a polyline, as it draws
        // the black axes; bars, dots and whiskers are rects, circles and
        // lines.
        let polylines: Vec<&str> = svg.lines().filter(|l| l.contains("<polyline")).collect();
        assert!(!polylines.is_empty());
        for line in polylines {
            assert!(
                line.contains(r##"stroke="#000000""##),
                "a line is drawn: {line}"
            );
        }
        assert!(svg.contains("\n1 subscriber\n"), "{svg}");
        assert!(svg.contains("\n100 subscribers\n"));
        assert!(!svg.contains("\n10 subscribers\n"));
        assert!(svg.contains("mq-actix abc1234 · today · median of 3 runs"));
    }

    #[test]
    fn a_server_measured_nowhere_takes_no_room() {
        let groups = fanout_groups(&fanout_summaries());
        let series = Server::ALL
            .iter()
            .map(|&s| (s.label().to_string(), colour(s)))
            .collect();
        let (groups, series) = measured_series(groups, series);
        let labels: Vec<&str> = series.iter().map(|s| s.0.as_str()).collect();
        assert_eq!(labels, ["mq-actix", "Redis"]);
        assert_eq!(groups[0].spreads.len(), 2);
        assert_eq!(groups[0].spreads[1].map(|s| s.median), Some(50.0));
    }

    #[test]
    fn each_group_is_labelled_once_under_its_middle_mark() {
        let slots = Slots::new(2, 3);
        // Group 0: slots 0-2, spacer 3; group 1: slots 4-6.
        assert_eq!((slots.of(0, 0), slots.of(1, 2)), (0, 6));
        assert_eq!(slots.count(), 7);
        let labelled: Vec<Option<usize>> = (0..7).map(|i| slots.labelled(i)).collect();
        assert_eq!(labelled, [None, Some(0), None, None, None, Some(1), None]);
    }

    #[test]
    fn axis_values_are_short() {
        assert_eq!(short(0.0), "0");
        assert_eq!(short(950.0), "950");
        assert_eq!(short(12_000.0), "12k");
        assert_eq!(short(12_500.0), "12.5k");
        assert_eq!(short(1_500_000.0), "1.5M");
        assert_eq!(short(250_000.0), "250k");
        assert_eq!(short(0.5), "0.5");
        assert_eq!(duration(500.0), "500 µs");
        assert_eq!(duration(12_000.0), "12 ms");
        assert_eq!(duration(1_500_000.0), "1.5 s");
    }
}
