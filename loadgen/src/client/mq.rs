//! The mq JSON-lines protocol (`docs/PROTOCOL.md`): one JSON object per line
//! each way; replies carry `success`, deliveries are the send plus its
//! `index`.
//!
//! Deliveries, by far the most frequent line, go through [`fast`] first; any
//! line it does not fully understand is decoded with serde_json.

mod fast;

pub use fast::Shape;

use std::borrow::Cow;

use serde::Deserialize;

use super::{garbled, line_end, trim_line, Delivery, Reply, Subscription, Topic};
use crate::payload::Payload;

/// Queues a subscribe command.
pub fn subscribe(out: &mut Vec<u8>, sub: &Subscription) {
    out.extend_from_slice(br#"{"command":"subscribe","topic":"#);
    out.extend_from_slice(sub.topic.json.as_bytes());
    if let Some(last_seen) = sub.last_seen {
        out.extend_from_slice(br#","last_seen":"#);
        out.extend_from_slice(last_seen.to_string().as_bytes());
    }
    if !sub.replay {
        out.extend_from_slice(br#","cache":false"#);
    }
    out.extend_from_slice(b"}\n");
}

/// Queues a send; the payload needs no escaping, being plain ASCII.
pub fn publish(
    out: &mut Vec<u8>,
    topic: &Topic,
    delivery: Delivery,
    payload: &Payload,
    size: usize,
) {
    out.extend_from_slice(br#"{"command":"send","topic":"#);
    out.extend_from_slice(topic.json.as_bytes());
    out.extend_from_slice(br#","msg":""#);
    payload.write(size, out);
    out.extend_from_slice(match delivery {
        Delivery::All => br#"","delivery":"all"}"#.as_slice(),
        Delivery::One => br#"","delivery":"one"}"#.as_slice(),
    });
    out.push(b'\n');
}

/// Decodes the first non-empty line of `buf`; returns it with the bytes it
/// used, or `None` until a whole line is there. `shape` is the last
/// delivery's, which the next one most likely shares.
pub fn decode<'a>(buf: &'a [u8], shape: &mut Option<Shape>) -> Option<(Reply<'a>, usize)> {
    let mut used = 0;
    loop {
        if let Some((reply, len)) = fast::delivery(&buf[used..], shape) {
            return Some((reply, used + len));
        }
        let end = used + line_end(&buf[used..])? + 1;
        let line = trim_line(&buf[used..end]);
        if !line.is_empty() {
            return Some((decode_line(line), end));
        }
        used = end;
    }
}

/// The fields loadgen reads from a server line; the rest (`command`,
/// `delivery`, `cache`) are ignored.
#[derive(Deserialize)]
struct Line<S> {
    success: Option<bool>,
    reason: Option<S>,
    topic: Option<S>,
    msg: Option<S>,
    index: Option<u64>,
}

/// The protocol's success reply, byte for byte as servers of the protocol
/// write it; read without a parser, as it answers every command.
const ACK: &[u8] = br#"{"success": true}"#;

/// Decodes one line: borrowing from the buffer when no string in it has an
/// escape (every message loadgen sends), copying otherwise.
fn decode_line(line: &[u8]) -> Reply<'_> {
    if line == ACK {
        return Reply::Ack;
    }
    parse(line, Cow::Borrowed)
        .or_else(|| parse(line, Cow::<str>::Owned))
        .unwrap_or_else(|| garbled(line))
}

/// Reads `line` as a [`Line`] whose strings `cow` turns into the reply's;
/// `None` when it is not JSON of that shape.
fn parse<'a, S>(line: &'a [u8], cow: impl Fn(S) -> Cow<'a, str>) -> Option<Reply<'a>>
where
    Line<S>: Deserialize<'a>,
{
    let fields = serde_json::from_slice::<Line<S>>(line).ok()?;
    Some(classify(fields, cow, line))
}

/// Tells a reply from a delivery by the `success` key.
fn classify<'a, S>(fields: Line<S>, cow: impl Fn(S) -> Cow<'a, str>, line: &[u8]) -> Reply<'a> {
    match fields {
        Line {
            success: Some(true),
            ..
        } if is_ack(line) => Reply::Ack,
        Line {
            success: Some(false),
            reason,
            ..
        } => Reply::Refused(reason.map_or(Cow::Borrowed(""), cow)),
        Line {
            success: None,
            topic: Some(topic),
            msg: Some(msg),
            index: Some(index),
            ..
        } => Reply::Delivery {
            topic: cow(topic),
            msg: cow(msg),
            index: Some(index),
        },
        _ => garbled(line),
    }
}

/// Whether `line` is the object `{"success": true}` and nothing more, however
/// it is spaced: a success with any other key is no reply the protocol has,
/// and a server that sends one is not the server loadgen means to measure.
fn is_ack(line: &[u8]) -> bool {
    serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(line)
        .is_ok_and(|object| object.len() == 1 && object.get("success") == Some(&true.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(buf: &[u8]) -> Reply<'_> {
        let (reply, used) = decode(buf, &mut None).expect("a whole line");
        assert_eq!(used, buf.len());
        reply
    }

    #[test]
    fn decodes_replies_and_deliveries() {
        assert_eq!(one(b"{\"success\": true}\r\n"), Reply::Ack);
        assert_eq!(
            one(b"{\"success\": false, \"reason\": \"Malformed json message\"}\r\n"),
            Reply::Refused("Malformed json message".into())
        );
        let line = b"{\"command\": \"send\", \"topic\": \"a\\\"b\", \"msg\": \"m\", \"delivery\": \"all\", \"index\": 7}\n";
        assert_eq!(
            one(line),
            Reply::Delivery {
                topic: "a\"b".into(),
                msg: "m".into(),
                index: Some(7)
            }
        );
        for bad in [
            &b"nope\n"[..],
            b"{\"topic\": \"t\", \"msg\": \"m\"}\n",
            b"{\"topic\":\"t\",\"msg\":\"m\",\"index\":-1}\n",
            b"{\"ok\": true}\n",
            b"{\"success\": true, \"index\": 0}\n",
            b"{\"success\": 1}\n",
        ] {
            assert!(matches!(one(bad), Reply::Garbled(_)), "{bad:?}");
        }
    }

    #[test]
    fn a_success_however_spaced_is_an_ack() {
        for ack in [
            &b"{\"success\":true}\n"[..],
            b"{ \"success\" : true }\r\n",
            b"  {\"success\": true}\t\n",
        ] {
            assert_eq!(one(ack), Reply::Ack, "{ack:?}");
        }
    }

    #[test]
    fn waits_for_a_whole_line_and_skips_empty_ones() {
        assert_eq!(decode(b"{\"success\": tr", &mut None), None);
        assert_eq!(
            decode(b"\r\n\n{\"success\": true}\r\nrest", &mut None),
            Some((Reply::Ack, 22))
        );
    }

    #[test]
    fn borrows_plain_strings() {
        let line = b"{\"topic\": \"t\", \"msg\": \"m\", \"index\": 0}\n";
        assert!(matches!(
            one(line),
            Reply::Delivery {
                topic: Cow::Borrowed(_),
                ..
            }
        ));
    }

    #[test]
    fn encodes_commands_as_the_protocol_shows() {
        let topic = Topic::new("a\"b".into());
        let mut out = Vec::new();
        let mut sub = Subscription::live(&topic);
        subscribe(&mut out, &sub);
        sub.last_seen = Some(41);
        sub.replay = true;
        subscribe(&mut out, &sub);
        let expected = concat!(
            r#"{"command":"subscribe","topic":"a\"b","cache":false}"#,
            "\n",
            r#"{"command":"subscribe","topic":"a\"b","last_seen":41}"#,
            "\n"
        );
        assert_eq!(String::from_utf8(out).unwrap(), expected);
    }

    /// What receiving costs loadgen per delivery, kernel aside: decoding,
    /// checking and timing lines as mq-actix writes them, in CPU time, the
    /// best of a few tries. Run it under `valgrind --tool=callgrind` for a
    /// count of instructions that a busy machine does not disturb:
    ///
    ///     cargo test --release -p loadgen --bin loadgen receive_cost -- --ignored --nocapture
    #[test]
    #[ignore]
    fn receive_cost() {
        const LINES: u64 = 1000;
        const PASSES: u64 = 200;
        let run = 0xdead_beef;
        let mut buf = Vec::new();
        for seq in 0..LINES {
            let mut msg = Vec::new();
            let stamp_ns = 4_000_000_000 + seq * 1000;
            let payload = crate::payload::Payload {
                run,
                publisher: 0,
                seq,
                stamp_ns,
            };
            payload.write(64, &mut msg);
            let msg = String::from_utf8(msg).unwrap();
            let index = 1_000_000 + seq;
            buf.extend_from_slice(
                format!(
                    "{{\"command\": \"send\", \"topic\": \"foo\", \"msg\": \"{msg}\", \
                     \"delivery\": \"all\", \"index\": {index}}}\r\n"
                )
                .as_bytes(),
            );
        }
        let live = crate::stats::Live::new(crate::stats::Clock::start(), 1).unwrap();
        let mut best = std::time::Duration::MAX;
        for _ in 0..5 {
            let before = crate::stats::cpu_time().unwrap();
            for _ in 0..PASSES {
                receive_all(&buf, run, &live);
            }
            best = best.min(crate::stats::cpu_time().unwrap() - before);
        }
        let per_line = best.as_nanos() as f64 / (LINES * PASSES) as f64;
        eprintln!("receiving costs {per_line:.0} ns of CPU per delivery");
    }

    /// Decodes, checks and times every line of `buf`, as a connection of a
    /// fanout subscribed to `foo` would.
    #[inline(never)]
    fn receive_all(buf: &[u8], run: u32, live: &crate::stats::Live) {
        use crate::check::{Expect, Receiver};
        let mut recv = Receiver::new("foo".into(), run, Expect::all_of(1));
        let (mut shape, mut used, mut samples) = (None, 0, Vec::new());
        while let Some((reply, len)) = decode(&buf[used..], &mut shape) {
            used += len;
            let Reply::Delivery { topic, msg, index } = reply else {
                panic!("not a delivery");
            };
            let payload = recv.on_delivery(&topic, &msg, index).expect("owed");
            samples.push(5_000_000_000u64.saturating_sub(payload.stamp_ns));
        }
        assert_eq!(recv.violations.total(), 0);
        live.latencies.record(0, &samples);
    }
}
