//! Sizes on the command line with units (`64MiB`, `1GiB`, `512k`, `4096`),
//! so that operators need not count bytes for `--max-line`, `--max-pending`
//! and the like.

/// Parses a byte size for a clap `value_parser`: a plain number of bytes,
/// or a number with a unit. Units are case-insensitive, the `B` is optional,
/// and `k`, `M`, `G`, `T` mean powers of 1024 just as `KiB`, `MiB`, `GiB`,
/// `TiB` do: a limit on memory is read in binary units whichever way it is
/// written. Fractions are allowed (`1.5MiB`) and rounded to whole bytes.
///
/// The parsing itself is the `parse-size` crate's; this adds the unit
/// convention, the range of `usize` and an error message that shows the
/// accepted forms, since clap prints it as is.
pub fn parse_byte_size(text: &str) -> Result<usize, String> {
    const FORMS: &str = "expected bytes, optionally with a unit: 4096, 512k, 64MiB, 1GiB";
    let bytes = parse_size::Config::new()
        .with_binary()
        .parse_size(text.trim())
        .map_err(|error| format!("{error}; {FORMS}"))?;
    usize::try_from(bytes).map_err(|_| format!("{bytes} bytes is too large for this machine"))
}

#[cfg(test)]
mod tests {
    use super::parse_byte_size;

    #[test]
    fn plain_numbers_are_bytes() {
        assert_eq!(parse_byte_size("0"), Ok(0));
        assert_eq!(parse_byte_size("4096"), Ok(4096));
        assert_eq!(parse_byte_size("1048576"), Ok(1 << 20));
    }

    #[test]
    fn units_are_binary_whichever_way_they_are_written() {
        for (text, want) in [
            ("512k", 512 << 10),
            ("512K", 512 << 10),
            ("512KB", 512 << 10),
            ("512KiB", 512 << 10),
            ("64MiB", 64 << 20),
            ("64mb", 64 << 20),
            ("64M", 64 << 20),
            ("1GiB", 1 << 30),
            ("1 GiB", 1 << 30),
            ("1.5MiB", 3 << 19),
            ("10B", 10),
        ] {
            assert_eq!(parse_byte_size(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn nonsense_is_refused_with_the_accepted_forms() {
        for text in ["", "lots", "12XB", "-1", "1MiBs"] {
            let error = parse_byte_size(text).expect_err(text);
            assert!(error.contains("64MiB"), "{text}: {error}");
        }
    }
}
