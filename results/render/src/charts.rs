//! The SVG charts: deliveries against subscribers, latency against offered
//! rate, and one bar chart per comparison. Drawn with plotters' SVG backend
//! only, so no font library is needed: the viewer's sans-serif font draws
//! the text.

use std::path::Path;

use anyhow::anyhow;
use plotters::coord::ranged1d::{SegmentValue, ValueFormatter};
use plotters::coord::{CoordTranslate, Shift};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::data::{Server, Summary};
use crate::tables;
use crate::targets::{Metric, Outcome};

const SIZE: (u32, u32) = (860, 520);

/// A line's points, in data coordinates.
type Points = Vec<(f64, f64)>;
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

/// Deliveries per second against the number of subscribers, one line per
/// server, from the closed-loop `fanout-N` cases. `Ok(false)` when there is
/// nothing to draw.
pub fn fanout(summaries: &[Summary], path: &Path) -> anyhow::Result<bool> {
    let lines: Vec<(Server, Points)> = Server::ALL
        .iter()
        .map(|&server| {
            let points = summaries
                .iter()
                .filter(|s| s.server == server && s.case.starts_with("fanout-"))
                .filter_map(|s| Some((s.params.clients as f64, s.delivery_rate?.median)))
                .collect::<Vec<_>>();
            (server, points)
        })
        .filter(|(_, points)| !points.is_empty())
        .collect();
    let all = || lines.iter().flat_map(|(_, p)| p.iter());
    let Some(x_max) = all().map(|p| p.0).reduce(f64::max) else {
        return Ok(false);
    };
    let x_min = all().map(|p| p.0).fold(f64::INFINITY, f64::min);
    let y_max = all().map(|p| p.1).fold(0.0, f64::max) * 1.12;
    let runs = summaries.iter().map(|s| s.runs).max().unwrap_or(1);

    let root = canvas(path)?;
    let mut chart = builder(
        &root,
        "Fanout: deliveries per second against subscribers",
        24,
        56,
    )
    .build_cartesian_2d(
        ((x_min / 2.0).max(0.5)..x_max * 2.0).log_scale(),
        0.0..y_max.max(1.0),
    )
    .map_err(err)?;
    draw_axes(
        &mut chart,
        "subscribers on the topic (log scale; 1 publisher, window 64, 64-byte messages)",
        &format!("deliveries per second (median of {runs})"),
        &|v| short(*v),
        None,
    )?;
    let lines = lines
        .iter()
        .map(|(server, points)| (server.label(), colour(*server), points));
    draw_lines(&mut chart, lines)?;
    root.present().map_err(err)?;
    Ok(true)
}

/// Latency percentiles against offered rate (open loop) for mq-actix, from
/// the `latency-P` cases. `Ok(false)` when there is nothing to draw.
pub fn latency(summaries: &[Summary], path: &Path) -> anyhow::Result<bool> {
    let cases: Vec<&Summary> = summaries
        .iter()
        .filter(|s| s.server == Server::MqActix && s.case.starts_with("latency-"))
        .filter(|s| s.rate.is_some() && s.p50_us.is_some())
        .collect();
    if cases.is_empty() {
        return Ok(false);
    }
    let subscribers = cases[0].params.clients;
    let runs = cases.iter().map(|s| s.runs).max().unwrap_or(1);
    type Pick = fn(&Summary) -> Option<f64>;
    let percentiles: [(&str, Pick, RGBColor); 3] = [
        (
            "p50",
            |s| s.p50_us.map(|v| v.median),
            RGBColor(0x1f, 0x77, 0xb4),
        ),
        (
            "p99",
            |s| s.p99_us.map(|v| v.median),
            RGBColor(0xff, 0x7f, 0x0e),
        ),
        (
            "p99.9",
            |s| s.p999_us.map(|v| v.median),
            RGBColor(0x94, 0x67, 0xbd),
        ),
    ];
    let lines: Vec<(&str, RGBColor, Points)> = percentiles
        .iter()
        .map(|(name, pick, c)| {
            let mut points: Points = cases
                .iter()
                .filter_map(|s| Some((s.rate?, pick(s)?.max(0.1))))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            (*name, *c, points)
        })
        .collect();
    let all = || lines.iter().flat_map(|(_, _, p)| p.iter());
    let x_max = all().map(|p| p.0).fold(0.0, f64::max) * 1.08;
    let y_min = all().map(|p| p.1).fold(f64::INFINITY, f64::min) / 2.0;
    let y_max = all().map(|p| p.1).fold(0.0, f64::max) * 2.0;

    let root = canvas(path)?;
    let mut chart = builder(
        &root,
        format!("mq-actix latency against offered rate (open loop, fanout to {subscribers})"),
        22,
        56,
    )
    .build_cartesian_2d(0.0..x_max.max(1.0), (y_min..y_max).log_scale())
    .map_err(err)?;
    draw_axes(
        &mut chart,
        "offered rate (messages published per second, each delivered to every subscriber)",
        &format!("end-to-end latency (log scale, median of {runs})"),
        &|v| duration(*v),
        Some(12),
    )?;
    draw_lines(
        &mut chart,
        lines.iter().map(|(name, c, points)| (*name, *c, points)),
    )?;
    root.present().map_err(err)?;
    Ok(true)
}

/// One comparison as bars, one per server, with each value written above
/// its bar and the target's absolute bound as a dashed line. `Ok(false)`
/// when mq-actix has no figure.
pub fn compare(outcome: &Outcome, runs: usize, path: &Path) -> anyhow::Result<bool> {
    let target = &outcome.target;
    if outcome.value(Server::MqActix).is_none() {
        return Ok(false);
    }
    let (axis, scale) = target.metric.axis();
    let bars: Vec<(usize, Server, Option<f64>)> = Server::ALL
        .iter()
        .enumerate()
        .map(|(i, &s)| (i, s, outcome.value(s)))
        .collect();
    let bound = target.bound.map(|(b, text)| (b * scale, text));
    let y_max = bars
        .iter()
        .filter_map(|b| b.2)
        .map(|v| v * scale)
        .chain(bound.map(|b| b.0))
        .fold(0.0, f64::max)
        * 1.18;
    let better = if target.metric.lower_is_better() {
        "lower is better"
    } else {
        "higher is better"
    };

    let root = canvas(path)?;
    let n = bars.len() as i32;
    // An i32 range includes its end: 0..n - 1 makes n segments.
    let mut chart = builder(&root, target.what, 20, 48)
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
        .y_desc(format!("{axis}, {better} (median of {runs})"))
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
        let Some(v) = value else {
            chart
                .draw_series(std::iter::once(Text::new(
                    "no data",
                    (SegmentValue::CenterOf(i), 0.0),
                    above,
                )))
                .map_err(err)?;
            continue;
        };
        let mut bar = Rectangle::new(
            [
                (SegmentValue::Exact(i), 0.0),
                (SegmentValue::Exact(i + 1), v * scale),
            ],
            colour(server).filled(),
        );
        bar.set_margin(0, 0, 36, 36);
        chart.draw_series(std::iter::once(bar)).map_err(err)?;
        let mut text = target.metric.format(v);
        if server != Server::MqActix {
            if let Some(r) = outcome.ratio(server) {
                text = format!("{text} (mq-actix {})", tables::ratio(r));
            }
        }
        chart
            .draw_series(std::iter::once(Text::new(
                text,
                (SegmentValue::CenterOf(i), v * scale),
                above,
            )))
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
            .label(format!("target {text}"))
            .legend(legend_mark(grey.stroke_width(2)));
        draw_legend(&mut chart, SeriesLabelPosition::UpperRight, 15)?;
    }
    root.present().map_err(err)?;
    Ok(true)
}

/// A white canvas of [`SIZE`] that writes its SVG to `path`.
fn canvas(path: &Path) -> anyhow::Result<DrawingArea<SVGBackend<'_>, Shift>> {
    let root = SVGBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    Ok(root)
}

/// A chart on `root` with `caption` in `caption_size` points and
/// `x_label_area` pixels under its x axis, in the margins every chart shares,
/// so that the charts line up side by side in the README.
fn builder<'a, 'b>(
    root: &'a DrawingArea<SVGBackend<'b>, Shift>,
    caption: impl AsRef<str>,
    caption_size: u32,
    x_label_area: u32,
) -> ChartBuilder<'a, 'b, SVGBackend<'b>> {
    let mut builder = ChartBuilder::on(root);
    builder
        .caption(caption, (FONT, caption_size))
        .margin(16)
        .x_label_area_size(x_label_area)
        .y_label_area_size(80);
    builder
}

/// Draws the grid and the axes of a line chart, described by `x_desc` and
/// `y_desc`, with x values in [`short`] form, y values as `y_value` writes
/// them, and `y_labels` of them where plotters' default number is too few.
fn draw_axes<'a, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    x_desc: &str,
    y_desc: &str,
    y_value: &dyn Fn(&f64) -> String,
    y_labels: Option<usize>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64> + ValueFormatter<f64>,
    Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
{
    let mut mesh = chart.configure_mesh();
    mesh.x_desc(x_desc)
        .y_desc(y_desc)
        .x_label_formatter(&|v| short(*v))
        .y_label_formatter(y_value)
        .axis_desc_style((FONT, 16))
        .label_style((FONT, 14));
    if let Some(n) = y_labels {
        mesh.y_labels(n);
    }
    mesh.draw().map_err(err)
}

/// Draws each line (its legend label, colour and points) with a dot on
/// every point, then the legend in the upper left: the fanout and latency
/// charts draw their lines the same way, so that they read the same way.
fn draw_lines<'a, 'p, X, Y>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
    lines: impl IntoIterator<Item = (&'p str, RGBColor, &'p Points)>,
) -> anyhow::Result<()>
where
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (label, c, points) in lines {
        chart
            .draw_series(LineSeries::new(points.iter().copied(), c.stroke_width(3)))
            .map_err(err)?
            .label(label)
            .legend(legend_mark(c.stroke_width(3)));
        chart
            .draw_series(PointSeries::of_element(
                points.iter().copied(),
                5,
                c.filled(),
                &|p, size, style| EmptyElement::at(p) + Circle::new((0, 0), size, style),
            ))
            .map_err(err)?;
    }
    draw_legend(chart, SeriesLabelPosition::UpperLeft, 16)
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
