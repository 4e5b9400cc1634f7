//! Rewriting the generated parts of `results/README.md`: everything between
//! `<!-- BEGIN: name -->` and `<!-- END: name -->` belongs to this tool,
//! everything else is prose that people write and the tool never touches.

use anyhow::{bail, Context};

/// The comment that opens section `name`.
pub fn begin_marker(name: &str) -> String {
    format!("<!-- BEGIN: {name} -->")
}

/// The comment that closes section `name`.
pub fn end_marker(name: &str) -> String {
    format!("<!-- END: {name} -->")
}

/// `text` with the lines between the markers of section `name` replaced by
/// `body`. The markers stay, each on its own line; a missing, repeated or
/// misordered marker is an error, so that a mistyped README is noticed
/// rather than silently left stale.
pub fn replace_section(text: &str, name: &str, body: &str) -> anyhow::Result<String> {
    let (begin, end) = (begin_marker(name), end_marker(name));
    let start = find_once(text, &begin)?;
    let stop = find_once(text, &end)?;
    if stop < start {
        bail!("{end} comes before {begin}");
    }
    let body = body.trim_matches('\n');
    let mut out = String::with_capacity(text.len() + body.len());
    out.push_str(&text[..start + begin.len()]);
    out.push('\n');
    if !body.is_empty() {
        out.push_str(body);
        out.push('\n');
    }
    out.push_str(&text[stop..]);
    Ok(out)
}

/// The offset of the only occurrence of `marker` in `text`.
fn find_once(text: &str, marker: &str) -> anyhow::Result<usize> {
    let at = text
        .find(marker)
        .with_context(|| format!("no {marker} marker"))?;
    if text[at + marker.len()..].contains(marker) {
        bail!("{marker} appears more than once");
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    const README: &str = "# Results\n\nProse.\n\n<!-- BEGIN: table -->\nold line 1\nold line 2\n<!-- END: table -->\n\nMore prose.\n";

    #[test]
    fn only_the_section_changes() {
        let out = replace_section(README, "table", "| a |\n| - |\n").unwrap();
        assert_eq!(
            out,
            "# Results\n\nProse.\n\n<!-- BEGIN: table -->\n| a |\n| - |\n<!-- END: table -->\n\nMore prose.\n"
        );
    }

    #[test]
    fn rewriting_twice_changes_nothing_more() {
        let once = replace_section(README, "table", "new").unwrap();
        let twice = replace_section(&once, "table", "new").unwrap();
        assert_eq!(once, twice);
    }

    #[test]
    fn an_empty_section_keeps_its_markers() {
        let out = replace_section(README, "table", "").unwrap();
        assert!(out.contains("<!-- BEGIN: table -->\n<!-- END: table -->"));
    }

    #[test]
    fn other_sections_are_left_alone() {
        let text = format!("{README}<!-- BEGIN: other -->\nkeep\n<!-- END: other -->\n");
        let out = replace_section(&text, "table", "new").unwrap();
        assert!(out.contains("<!-- BEGIN: other -->\nkeep\n<!-- END: other -->"));
    }

    #[test]
    fn bad_markers_are_errors() {
        assert!(replace_section(README, "missing", "x").is_err());
        let reversed = "<!-- END: t -->\n<!-- BEGIN: t -->\n";
        assert!(replace_section(reversed, "t", "x").is_err());
        let twice = "<!-- BEGIN: t -->\n<!-- BEGIN: t -->\n<!-- END: t -->\n";
        assert!(replace_section(twice, "t", "x").is_err());
    }
}
