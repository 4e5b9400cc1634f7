//! The `msg` text loadgen publishes: which run and publisher sent it, in what
//! order, and when.
//!
//! Everything the receiving side needs to check a delivery and time it
//! travels inside the message itself, so loadgen needs nothing from the
//! server beyond what the protocol already returns.

use crate::ascii::{all_are, decimal, push_decimal};

/// Byte used to pad a message up to `--size`; plain ASCII so no JSON escaping
/// is ever needed on the way out.
const PAD: u8 = b'.';

/// The fields carried at the start of every published message, as
/// `RUN:PUBLISHER:SEQ:STAMP:` followed by padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Payload {
    /// Random tag of this loadgen run, so messages of another run (or another
    /// client) on the same topic are recognised as foreign, not as ours.
    pub run: u32,
    /// Which publisher sent it; each publisher numbers its own messages.
    pub publisher: u32,
    /// The publisher's sequence number, from 0, in sending order.
    pub seq: u64,
    /// Nanoseconds since the run's shared epoch at which the message was sent
    /// (closed loop) or scheduled to be sent (open loop).
    pub stamp_ns: u64,
}

impl Payload {
    /// Appends the message text, padded to at least `size` bytes.
    pub fn write(&self, size: usize, out: &mut Vec<u8>) {
        let start = out.len();
        push_hex(out, self.run);
        out.push(b':');
        push_decimal(out, u64::from(self.publisher));
        out.push(b':');
        push_decimal(out, self.seq);
        out.push(b':');
        push_decimal(out, self.stamp_ns);
        out.push(b':');
        let written = out.len() - start;
        out.resize(out.len() + size.saturating_sub(written), PAD);
    }

    /// Reads a message back; `None` for anything loadgen did not write,
    /// including a correct header followed by altered padding, and numbers
    /// written otherwise than [`Payload::write`] writes them (a sign, a
    /// leading zero, upper-case hex).
    ///
    /// Byte by byte, without `str::split` or `str::parse`: this runs once per
    /// delivery, and they cost loadgen more than the server spent delivering
    /// it.
    pub fn parse(msg: &str) -> Option<Payload> {
        let mut rest = msg.as_bytes();
        let run = hex_field(&mut rest)?;
        let publisher = u32::try_from(decimal_field(&mut rest)?).ok()?;
        let seq = decimal_field(&mut rest)?;
        let stamp_ns = decimal_field(&mut rest)?;
        if !all_are(rest, PAD) {
            return None;
        }
        Some(Payload {
            run,
            publisher,
            seq,
            stamp_ns,
        })
    }
}

/// Each byte's value as a lowercase hex digit, or [`NOT_HEX`].
const HEX_VALUES: [u8; 256] = {
    let mut values = [NOT_HEX; 256];
    let mut digit = 0;
    while digit < 16 {
        values[b"0123456789abcdef"[digit] as usize] = digit as u8;
        digit += 1;
    }
    values
};

/// Marks a byte that is not a lowercase hex digit in [`HEX_VALUES`].
const NOT_HEX: u8 = 0xff;

/// Takes eight lowercase hex digits and a `:` off the front of `rest`.
fn hex_field(rest: &mut &[u8]) -> Option<u32> {
    let (digits, after) = rest.split_first_chunk::<8>()?;
    let (&b':', after) = after.split_first()? else {
        return None;
    };
    let mut value = 0u32;
    let mut invalid = 0u8;
    for &digit in digits {
        let nibble = HEX_VALUES[usize::from(digit)];
        invalid |= nibble & 0xf0;
        value = value << 4 | u32::from(nibble & 0x0f);
    }
    if invalid != 0 {
        return None;
    }
    *rest = after;
    Some(value)
}

/// Takes a decimal number without sign or leading zero, and a `:`, off the
/// front of `rest`.
#[inline]
fn decimal_field(rest: &mut &[u8]) -> Option<u64> {
    let (value, digits) = decimal(rest)?;
    let (&b':', after) = rest[digits..].split_first()? else {
        return None;
    };
    *rest = after;
    Some(value)
}

/// Writes `value` as eight lowercase hex digits.
fn push_hex(out: &mut Vec<u8>, value: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Payload {
        Payload {
            run: 0xdead_beef,
            publisher: 7,
            seq: 12_345_678_901,
            stamp_ns: u64::MAX,
        }
    }

    #[test]
    fn round_trips_and_pads_to_size() {
        let mut out = Vec::new();
        sample().write(64, &mut out);
        assert_eq!(out.len(), 64);
        let text = String::from_utf8(out).unwrap();
        assert!(text.starts_with("deadbeef:7:12345678901:18446744073709551615:"));
        assert_eq!(Payload::parse(&text), Some(sample()));
    }

    #[test]
    fn a_long_header_is_not_cut() {
        let mut out = Vec::new();
        sample().write(4, &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(Payload::parse(&text), Some(sample()));
    }

    #[test]
    fn every_field_round_trips_at_its_limits() {
        for (run, publisher, seq, stamp_ns) in [
            (0, 0, 0, 0),
            (u32::MAX, u32::MAX, u64::MAX, u64::MAX),
            (0x0123_4567, 10, 100, 1_000_000_007),
        ] {
            let payload = Payload {
                run,
                publisher,
                seq,
                stamp_ns,
            };
            for size in [0, 64, 200] {
                let mut out = Vec::new();
                payload.write(size, &mut out);
                let text = String::from_utf8(out).unwrap();
                assert_eq!(Payload::parse(&text), Some(payload), "{text:?}");
            }
        }
    }

    #[test]
    fn rejects_foreign_text() {
        for text in [
            "",
            "hello",
            "deadbeef:1:2",
            "deadbeef:1:2:3:..x",
            "zz:1:2:3:",
            "deadbee:1:2:3:",
            "DEADBEEF:1:2:3:",
            "0deadbeef:1:2:3:",
            "deadbeef:+1:2:3:",
            "deadbeef:01:2:3:",
            "deadbeef:1:2:-3:",
            "deadbeef:4294967296:2:3:",
            "deadbeef:1:2:18446744073709551616:",
            "deadbeef:1:2:3",
            "deadbeef:1:2:3:.:",
            "deadbeef::2:3:",
        ] {
            assert_eq!(Payload::parse(text), None, "{text:?}");
        }
    }
}
