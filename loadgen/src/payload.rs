//! The `msg` text loadgen publishes: which run and publisher sent it, in what
//! order, and when.
//!
//! Everything the receiving side needs to check a delivery and time it
//! travels inside the message itself, so loadgen needs nothing from the
//! server beyond what the protocol already returns.

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
    /// including a correct header followed by altered padding.
    pub fn parse(msg: &str) -> Option<Payload> {
        let mut fields = msg.splitn(5, ':');
        let run = u32::from_str_radix(fields.next()?, 16).ok()?;
        let publisher = fields.next()?.parse().ok()?;
        let seq = fields.next()?.parse().ok()?;
        let stamp_ns = fields.next()?.parse().ok()?;
        let padding = fields.next()?;
        if !padding.bytes().all(|b| b == PAD) {
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

/// Writes `value` as eight lowercase hex digits.
fn push_hex(out: &mut Vec<u8>, value: u32) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for shift in (0..8).rev() {
        out.push(DIGITS[((value >> (shift * 4)) & 0xf) as usize]);
    }
}

/// Writes `value` in decimal without going through `fmt`, which matters at
/// millions of messages per second.
fn push_decimal(out: &mut Vec<u8>, mut value: u64) {
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
    fn zero_is_written() {
        let mut out = Vec::new();
        push_decimal(&mut out, 0);
        assert_eq!(out, b"0");
    }

    #[test]
    fn rejects_foreign_text() {
        for text in [
            "",
            "hello",
            "deadbeef:1:2",
            "deadbeef:1:2:3:..x",
            "zz:1:2:3:",
        ] {
            assert_eq!(Payload::parse(text), None, "{text:?}");
        }
    }
}
