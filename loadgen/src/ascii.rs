//! Byte-level helpers for the path every message takes: finding the end of
//! plain JSON text, reading and writing decimal numbers, checking padding.
//!
//! At a million deliveries per second on a machine shared with the server,
//! each nanosecond here is taken from the server being measured, so these
//! look at eight bytes at a time where a delivery has many, and skip checks
//! that cannot fail.

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_ne_bytes([0x01; 8]);

/// `0x80` in every byte of a word.
const HIGH: u64 = u64::from_ne_bytes([0x80; 8]);

/// Decimal digits that always fit in a `u64`.
const SAFE_DIGITS: usize = 19;

/// The high bit of each byte of `word` that is below `n` (for `n` up to
/// 0x80). Exact up to the first such byte; above it a borrow may mark more,
/// so only the lowest mark may be relied on.
fn bytes_below(word: u64, n: u8) -> u64 {
    word.wrapping_sub(ONES * u64::from(n)) & !word & HIGH
}

/// The high bit of each byte of `word` equal to `byte`, exact up to the first.
fn bytes_equal(word: u64, byte: u8) -> u64 {
    bytes_below(word ^ (ONES * u64::from(byte)), 1)
}

/// Whether `b` ends plain JSON text: a quote, a backslash, a control
/// character, or a byte beyond ASCII.
fn ends_plain(b: u8) -> bool {
    b == b'"' || b == b'\\' || !(0x20..0x80).contains(&b)
}

/// Length of the plain text at the start of `bytes`: up to the first byte
/// for which [`ends_plain`] holds, or all of it.
pub fn plain_len(bytes: &[u8]) -> usize {
    let mut at = 0;
    while let Some(chunk) = bytes.get(at..at + 8) {
        let word = u64::from_le_bytes(chunk.try_into().unwrap_or_default());
        let stops = bytes_equal(word, b'"')
            | bytes_equal(word, b'\\')
            | bytes_below(word, 0x20)
            | (word & HIGH);
        if stops != 0 {
            // Little-endian: the lowest mark is the first byte.
            return at + stops.trailing_zeros() as usize / 8;
        }
        at += 8;
    }
    let rest = &bytes[at..];
    at + rest
        .iter()
        .position(|&b| ends_plain(b))
        .unwrap_or(rest.len())
}

/// Whether every byte of `bytes` is `byte`.
pub fn all_are(bytes: &[u8], byte: u8) -> bool {
    let pattern = ONES * u64::from(byte);
    let word_at = |at: usize| {
        let chunk = bytes.get(at..at + 8).and_then(|c| c.try_into().ok());
        u64::from_ne_bytes(chunk.unwrap_or_default())
    };
    if bytes.len() < 8 {
        return bytes.iter().all(|&b| b == byte);
    }
    // Whole words, then the last eight bytes, which may overlap the last
    // word checked.
    (0..bytes.len() / 8).all(|i| word_at(i * 8) == pattern) && word_at(bytes.len() - 8) == pattern
}

/// Reads the decimal number at the start of `bytes` as JSON and loadgen
/// write it (no sign, no leading zero), if it fits in a `u64`; returns it
/// with the count of its digits, leaving what follows to the caller.
///
/// A delivery carries some thirty digits, so the first [`SAFE_DIGITS`] are
/// taken without checking for overflow, which they cannot cause.
#[inline]
pub fn decimal(bytes: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    let mut digits = 0;
    let safe = bytes.len().min(SAFE_DIGITS);
    while digits < safe {
        let digit = bytes[digits].wrapping_sub(b'0');
        if digit > 9 {
            break;
        }
        value = value * 10 + u64::from(digit);
        digits += 1;
    }
    if digits == SAFE_DIGITS {
        for &b in &bytes[digits..] {
            let digit = b.wrapping_sub(b'0');
            if digit > 9 {
                break;
            }
            value = value.checked_mul(10)?.checked_add(u64::from(digit))?;
            digits += 1;
        }
    }
    let leading_zero = digits > 1 && bytes[0] == b'0';
    (digits > 0 && !leading_zero).then_some((value, digits))
}

/// Writes `value` in decimal without going through `fmt`, which matters at
/// millions of messages per second.
pub fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[at..]);
}

/// `bytes` as text, when every byte is known to be ASCII: checking UTF-8 again
/// was a visible share of decoding a delivery.
pub fn ascii_text(bytes: &[u8]) -> &str {
    debug_assert!(bytes.is_ascii());
    // SAFETY: ASCII is valid UTF-8, and every caller has checked each byte
    // (with `plain_len`, whose tests compare it with a byte-by-byte check).
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::XorShift;

    #[test]
    fn plain_len_stops_where_a_byte_by_byte_scan_does() {
        let mut rng = XorShift(0x9e37_79b9_7f4a_7c15);
        for _ in 0..20_000 {
            let len = rng.below(40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(8) {
                    0 => rng.below(256) as u8,
                    _ => b'a' + rng.below(26) as u8,
                })
                .collect();
            let expected = bytes.iter().position(|&b| ends_plain(b)).unwrap_or(len);
            assert_eq!(plain_len(&bytes), expected, "{bytes:?}");
        }
        for b in 0..=255u8 {
            let mut bytes = [b'x'; 19];
            bytes[13] = b;
            assert_eq!(plain_len(&bytes) == 13, ends_plain(b), "{b:#x}");
            // Every byte before a stop, and a stop borrowing from the next.
            bytes[12] = 0;
            assert_eq!(plain_len(&bytes), 12, "{b:#x}");
        }
    }

    #[test]
    fn all_are_checks_every_byte() {
        for len in 0..40 {
            let dots = vec![b'.'; len];
            assert!(all_are(&dots, b'.'));
            for at in 0..len {
                let mut other = dots.clone();
                other[at] = b'-';
                assert!(!all_are(&other, b'.'), "{len} {at}");
            }
        }
    }

    /// `decimal`, one byte at a time.
    fn decimal_by_bytes(bytes: &[u8]) -> Option<(u64, usize)> {
        let digits = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
        if digits == 0 || (digits > 1 && bytes[0] == b'0') {
            return None;
        }
        let value = std::str::from_utf8(&bytes[..digits]).ok()?.parse().ok()?;
        Some((value, digits))
    }

    #[test]
    fn decimal_agrees_with_a_byte_by_byte_reading() {
        let mut rng = XorShift(0x1234_5678_9abc_def1);
        for _ in 0..100_000 {
            let len = rng.below(26);
            let mut bytes: Vec<u8> = (0..len)
                .map(|_| match rng.below(20) {
                    0 => rng.below(256) as u8,
                    1 => b'0',
                    2 => b'9',
                    _ => b'0' + rng.below(10) as u8,
                })
                .collect();
            if rng.below(4) == 0 {
                // Near the top of a u64.
                bytes.splice(0..0, *b"1844674407370955161");
            }
            assert_eq!(decimal(&bytes), decimal_by_bytes(&bytes), "{bytes:?}");
        }
        for n in [
            0,
            1,
            9,
            10,
            99_999_999,
            100_000_000,
            u64::MAX / 10,
            u64::MAX,
        ] {
            for tail in ["", ":", ":.........", "}\r\n"] {
                let text = format!("{n}{tail}");
                let digits = n.to_string().len();
                assert_eq!(decimal(text.as_bytes()), Some((n, digits)), "{text}");
            }
        }
    }

    #[test]
    fn push_decimal_writes_what_decimal_reads() {
        for n in [0, 7, 10, 12_345, u64::MAX] {
            let mut out = b"x".to_vec();
            push_decimal(&mut out, n);
            assert_eq!(out, format!("x{n}").as_bytes());
            assert_eq!(decimal(&out[1..]), Some((n, out.len() - 1)));
        }
    }

    #[test]
    fn decimal_reads_what_json_writes() {
        for (text, expected) in [
            ("0", Some((0, 1))),
            ("7,", Some((7, 1))),
            (
                "1234567890123456789}",
                Some((1_234_567_890_123_456_789, 19)),
            ),
            ("9999999999999999999", Some((9_999_999_999_999_999_999, 19))),
            ("18446744073709551615", Some((u64::MAX, 20))),
            ("18446744073709551616", None),
            ("99999999999999999999", None),
            ("100000000000000000000", None),
            ("", None),
            ("-1", None),
            ("+1", None),
            ("01", None),
            ("00", None),
            ("x1", None),
        ] {
            assert_eq!(decimal(text.as_bytes()), expected, "{text:?}");
        }
    }
}
