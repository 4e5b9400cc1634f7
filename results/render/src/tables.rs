//! Markdown tables and the number formats used in them. Figures keep enough
//! digits to compare, with units always written out.

/// How a column's cells line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    Right,
}

/// A Markdown table, padded so that it also reads well as plain text. Rows
/// shorter than the header are padded with empty cells; `|` inside a cell is
/// escaped.
pub fn markdown_table(headers: &[&str], align: &[Align], rows: &[Vec<String>]) -> String {
    let columns = headers.len();
    let cell = |row: &[String], i: usize| -> String {
        row.get(i)
            .map(|c| c.replace('|', "\\|"))
            .unwrap_or_default()
    };
    let mut widths: Vec<usize> = headers.iter().map(|h| width(h).max(3)).collect();
    for row in rows {
        for (i, w) in widths.iter_mut().enumerate() {
            *w = (*w).max(width(&cell(row, i)));
        }
    }
    let align_of = |i: usize| align.get(i).copied().unwrap_or(Align::Left);
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| pad(c, widths[i], align_of(i)))
            .collect();
        format!("| {} |\n", padded.join(" | "))
    };
    let mut out = line(headers.iter().map(|h| h.to_string()).collect());
    let rule: Vec<String> = (0..columns)
        .map(|i| match align_of(i) {
            Align::Left => format!(":{}", "-".repeat(widths[i] - 1)),
            Align::Right => format!("{}:", "-".repeat(widths[i] - 1)),
        })
        .collect();
    out.push_str(&format!("| {} |\n", rule.join(" | ")));
    for row in rows {
        out.push_str(&line((0..columns).map(|i| cell(row, i)).collect()));
    }
    out
}

/// Display width: characters, not bytes (µ, ×, → are one column).
fn width(text: &str) -> usize {
    text.chars().count()
}

fn pad(text: &str, to: usize, align: Align) -> String {
    let fill = " ".repeat(to.saturating_sub(width(text)));
    match align {
        Align::Left => format!("{text}{fill}"),
        Align::Right => format!("{fill}{text}"),
    }
}

/// A whole number with thousands separators: 1,234,567.
pub fn count(n: f64) -> String {
    let rounded = n.round();
    let digits = format!("{}", rounded.abs() as u64);
    let mut out = String::new();
    if rounded < 0.0 {
        out.push('-');
    }
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A rate per second with its unit: `1,234,567/s`.
pub fn rate(per_second: f64) -> String {
    format!("{}/s", count(per_second))
}

/// A step of a unit ladder: the least value it is for, what to divide the
/// value by, how many decimals to show, and the unit.
type Rung = (f64, f64, usize, &'static str);

/// `value` on the first rung of `ladder` it reaches, or on the last rung
/// when it reaches none: each unit's choice of scale and precision is a
/// table, and the writing is done once, here.
fn on_ladder(value: f64, ladder: &[Rung]) -> String {
    let rung = ladder.iter().find(|r| value >= r.0).or(ladder.last());
    let Some(&(_, divisor, decimals, unit)) = rung else {
        return value.to_string();
    };
    format!("{:.*} {unit}", decimals, value / divisor)
}

/// Microseconds in the unit that reads best: `850 µs`, `1.25 ms`, `2.10 s`.
pub fn micros(us: f64) -> String {
    on_ladder(
        us,
        &[
            (1e6, 1e6, 2, "s"),
            (1e3, 1e3, 2, "ms"),
            (100.0, 1.0, 0, "µs"),
            (10.0, 1.0, 1, "µs"),
            (0.0, 1.0, 2, "µs"),
        ],
    )
}

/// Nanoseconds in the unit that reads best: `42.1 ns`, `1.25 µs`.
pub fn nanos(ns: f64) -> String {
    if ns >= 1e3 {
        micros(ns / 1e3)
    } else {
        on_ladder(ns, &[(100.0, 1.0, 0, "ns"), (0.0, 1.0, 1, "ns")])
    }
}

/// Bytes in decimal units (1 KB = 1,000 bytes, 1 MB = 1,000,000 bytes), the
/// units the targets are written in.
pub fn bytes(n: f64) -> String {
    on_ladder(
        n,
        &[
            (1e9, 1e9, 2, "GB"),
            (1e6, 1e6, 1, "MB"),
            (1e3, 1e3, 2, "KB"),
            (0.0, 1.0, 0, "B"),
        ],
    )
}

/// A message size: `64 B`, `1,000 B`, and in KiB when it is a whole number
/// of them (`16 KiB`), as the script's `--size 16384` means it.
pub fn size(bytes: usize) -> String {
    if bytes >= 1024 && bytes % 1024 == 0 {
        format!("{} KiB", count((bytes / 1024) as f64))
    } else {
        format!("{} B", count(bytes as f64))
    }
}

/// A ratio such as mq-actix / Redis: `2.31×`.
pub fn ratio(r: f64) -> String {
    if r >= 100.0 {
        format!("{r:.0}×")
    } else {
        format!("{r:.2}×")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_are_padded_and_aligned() {
        let table = markdown_table(
            &["server", "rate"],
            &[Align::Left, Align::Right],
            &[
                vec!["mq-actix".into(), "1,000/s".into()],
                vec!["nats".into(), "5/s".into()],
            ],
        );
        assert_eq!(
            table,
            "| server   |    rate |\n\
             | :------- | ------: |\n\
             | mq-actix | 1,000/s |\n\
             | nats     |     5/s |\n"
        );
    }

    #[test]
    fn short_rows_and_pipes_are_handled() {
        let table = markdown_table(&["a", "b"], &[], &[vec!["x|y".into()]]);
        assert_eq!(table, "| a    | b   |\n| :--- | :-- |\n| x\\|y |     |\n");
    }

    #[test]
    fn wide_characters_count_as_one_column() {
        let table = markdown_table(&["µs"], &[Align::Right], &[vec!["1 µs".into()]]);
        assert_eq!(table, "|   µs |\n| ---: |\n| 1 µs |\n");
    }

    #[test]
    fn numbers_read_at_a_glance() {
        assert_eq!(count(0.0), "0");
        assert_eq!(count(999.4), "999");
        assert_eq!(count(1_234_567.0), "1,234,567");
        assert_eq!(count(-1234.0), "-1,234");
        assert_eq!(rate(12_345.6), "12,346/s");
        assert_eq!(micros(5.31), "5.31 µs");
        assert_eq!(micros(42.25), "42.2 µs");
        assert_eq!(micros(850.0), "850 µs");
        assert_eq!(micros(1_250.0), "1.25 ms");
        assert_eq!(micros(2_100_000.0), "2.10 s");
        assert_eq!(nanos(42.14), "42.1 ns");
        assert_eq!(nanos(420.0), "420 ns");
        assert_eq!(nanos(1_250.0), "1.25 µs");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3_200.0), "3.20 KB");
        assert_eq!(bytes(28_400_000.0), "28.4 MB");
        assert_eq!(size(64), "64 B");
        assert_eq!(size(1000), "1,000 B");
        assert_eq!(size(1024), "1 KiB");
        assert_eq!(size(16384), "16 KiB");
        assert_eq!(ratio(2.314), "2.31×");
        assert_eq!(ratio(0.5), "0.50×");
        assert_eq!(ratio(123.4), "123×");
    }
}
