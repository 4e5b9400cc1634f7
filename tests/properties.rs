//! Property tests on the pure layers: the line codec and the protocol.
//!
//! - Any byte stream, cut into any chunks, gets the same replies as the same
//!   stream in one piece (TCP may split a client's writes anywhere).
//! - No input panics.
//! - Valid commands round-trip: what a client serializes is what the server
//!   parses, and a delivered line is the sent object plus its index.

use bytes::BytesMut;
use mq_actix::codec::{Framed, LineCodec};
use mq_actix::protocol::{self, Command, Delivery, DeliveryTemplate, Line};
use proptest::prelude::*;
use serde_json::{json, Map, Value};
use tokio_util::codec::Decoder;

/// What the server answers to a stream, as the session would: one reply per
/// non-empty line, nothing after `quit`.
fn replies(chunks: &[&[u8]], max_line: usize) -> Vec<Vec<u8>> {
    let mut codec = LineCodec::new(max_line);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    let mut quit = false;
    let mut answer = |frame: Framed, out: &mut Vec<Vec<u8>>| {
        if quit {
            return;
        }
        match frame {
            Framed::TooLong => out.push(protocol::ProtocolError::LineTooLong.reply().to_vec()),
            Framed::Line(line) => match protocol::parse_line(&line) {
                Ok(Line::Empty) => {}
                Ok(Line::Quit) => quit = true,
                Ok(Line::Command(_)) => out.push(protocol::OK.to_vec()),
                // A broker without --users, where `auth` is no command.
                Ok(Line::Auth(_)) => out.push(protocol::ProtocolError::Malformed.reply().to_vec()),
                Err(e) => out.push(e.reply().to_vec()),
            },
        }
    };
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(frame) = codec.decode(&mut buf).expect("decoding never fails") {
            answer(frame, &mut out);
        }
    }
    while let Some(frame) = codec.decode_eof(&mut buf).expect("decoding never fails") {
        answer(frame, &mut out);
    }
    out
}

/// Bytes that look like protocol traffic often enough to hit every branch.
fn stream() -> impl Strategy<Value = Vec<u8>> {
    let piece = prop_oneof![
        Just(b"\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"quit".to_vec()),
        Just(br#"{"command": "subscribe", "topic": "t"}"#.to_vec()),
        Just(br#"{"command": "send", "topic": "t", "msg": "m", "delivery": "one"}"#.to_vec()),
        Just(b"{\"x\": \xff}".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ];
    proptest::collection::vec(piece, 0..20).prop_map(|pieces| pieces.concat())
}

fn split_at_points(bytes: &[u8], mut cuts: Vec<usize>) -> Vec<&[u8]> {
    cuts.iter_mut().for_each(|c| *c %= bytes.len() + 1);
    cuts.sort_unstable();
    let mut chunks = Vec::new();
    let mut start = 0;
    for cut in cuts {
        chunks.push(&bytes[start..cut]);
        start = cut;
    }
    chunks.push(&bytes[start..]);
    chunks
}

fn arbitrary_string() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "[a-z\"\\\\ ]{0,12}"]
}

proptest! {
    #[test]
    fn chunking_never_changes_the_replies(
        bytes in stream(),
        cuts in proptest::collection::vec(any::<usize>(), 0..30),
        max_line in 8usize..200,
    ) {
        let whole = replies(&[&bytes], max_line);
        let chunked = replies(&split_at_points(&bytes, cuts), max_line);
        prop_assert_eq!(whole, chunked);
    }

    #[test]
    fn byte_at_a_time_is_the_same_as_one_piece(bytes in stream()) {
        let single: Vec<&[u8]> = bytes.chunks(1).collect();
        prop_assert_eq!(replies(&[&bytes], 64), replies(&single, 64));
    }

    #[test]
    fn no_line_panics_the_parser(line in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = protocol::parse_line(&line);
    }

    #[test]
    fn no_json_value_panics_the_parser(text in any::<String>()) {
        let _ = protocol::parse_line(text.as_bytes());
        let _ = protocol::parse_line(json!({"command": "send", "topic": text, "msg": text}).to_string().as_bytes());
    }

    #[test]
    fn send_round_trips_into_its_delivery(
        topic in arbitrary_string(),
        msg in arbitrary_string(),
        one in any::<bool>(),
        cache in proptest::option::of(any::<bool>()),
        index in any::<u64>(),
    ) {
        let mut object = Map::new();
        object.insert("command".into(), json!("send"));
        object.insert("topic".into(), json!(topic));
        object.insert("msg".into(), json!(msg));
        object.insert("delivery".into(), json!(if one { "one" } else { "all" }));
        if let Some(cache) = cache {
            object.insert("cache".into(), json!(cache));
        }
        let line = Value::Object(object.clone()).to_string();
        let Ok(Line::Command(Command::Send(send))) = protocol::parse_line(line.as_bytes()) else {
            return Err(TestCaseError::fail(format!("not a send: {line}")));
        };
        prop_assert_eq!(&*send.topic, topic.as_str());
        prop_assert_eq!(&*send.msg, msg.as_str());
        prop_assert_eq!(send.delivery, if one { Delivery::One } else { Delivery::All });
        prop_assert_eq!(send.cache, cache);

        let delivered = DeliveryTemplate::new(&send).into_line(index);
        let delivered: Value = serde_json::from_slice(&delivered).expect("a delivery is JSON");
        object.insert("index".into(), json!(index));
        prop_assert_eq!(delivered, Value::Object(object));
    }

    #[test]
    fn subscribe_round_trips(
        topic in arbitrary_string(),
        last_seen in proptest::option::of(any::<i64>()),
        cache in proptest::option::of(any::<bool>()),
    ) {
        let mut object = Map::new();
        object.insert("command".into(), json!("subscribe"));
        object.insert("topic".into(), json!(topic));
        if let Some(last_seen) = last_seen {
            object.insert("last_seen".into(), json!(last_seen));
        }
        if let Some(cache) = cache {
            object.insert("cache".into(), json!(cache));
        }
        let line = Value::Object(object).to_string();
        let Ok(Line::Command(Command::Subscribe(sub))) = protocol::parse_line(line.as_bytes()) else {
            return Err(TestCaseError::fail(format!("not a subscribe: {line}")));
        };
        prop_assert_eq!(&*sub.topic, topic.as_str());
        prop_assert_eq!(sub.last_seen, last_seen.unwrap_or(-1));
        prop_assert_eq!(sub.cache, cache.unwrap_or(true));
    }
}
