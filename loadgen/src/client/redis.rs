//! Redis pub/sub over RESP3 (after `HELLO 3`), where one connection may both
//! subscribe and publish: deliveries arrive as push frames, replies as
//! ordinary ones, and the integer reply to PUBLISH is its ack.

use std::borrow::Cow;

use super::{garbled, line_end, trim_line, Reply};
use crate::ascii::push_decimal;

/// Switches the connection to RESP3.
pub const HELLO: &[u8] = b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n";

/// Deepest nesting accepted in a reply, so a hostile server cannot exhaust
/// the stack.
const MAX_DEPTH: usize = 32;

/// Queues a command as an array of bulk strings.
pub fn command(out: &mut Vec<u8>, parts: &[&[u8]]) {
    out.push(b'*');
    push_decimal(out, parts.len() as u64);
    out.extend_from_slice(b"\r\n");
    for part in parts {
        out.push(b'$');
        push_decimal(out, part.len() as u64);
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(part);
        out.extend_from_slice(b"\r\n");
    }
}

/// The little of a RESP3 value loadgen needs.
#[derive(Debug)]
enum Value<'a> {
    /// A simple, bulk or verbatim string.
    Text(&'a [u8]),
    /// A simple or bulk error.
    Error(&'a [u8]),
    /// A push frame: the text of its first elements (`None` where one is
    /// not text), which is all loadgen reads, and how many it has. Kept in
    /// place rather than in a vector, since every delivery is one.
    Push {
        texts: [Option<&'a [u8]>; PUSH_TEXTS],
        len: usize,
    },
    /// Anything else: numbers, nulls, arrays, maps, sets.
    Other,
}

/// Elements of a push frame kept: a message is `message`, channel, payload.
const PUSH_TEXTS: usize = 3;

/// A frame that breaks RESP.
struct Malformed;

/// Decodes the first frame of `buf`; returns it with the bytes it used, or
/// `None` until all of it is there.
pub fn decode(buf: &[u8]) -> Option<(Reply<'_>, usize)> {
    let (value, used) = match parse(buf, 0, 0) {
        Ok(parsed) => parsed?,
        Err(Malformed) => {
            let used = line_end(buf).map_or(buf.len(), |end| end + 1);
            return Some((garbled(&buf[..used]), used));
        }
    };
    let reply = match value {
        Value::Text(_) | Value::Other => Reply::Ack,
        Value::Error(reason) => Reply::Refused(String::from_utf8_lossy(reason).into_owned().into()),
        Value::Push { texts, len } => push(texts, len),
    };
    Some((reply, used))
}

/// What a push frame means: a message, a subscribe confirmation, or
/// nothing loadgen asked about.
fn push(texts: [Option<&[u8]>; PUSH_TEXTS], len: usize) -> Reply<'_> {
    match texts {
        [Some(kind), channel, payload] if kind.eq_ignore_ascii_case(b"message") => {
            match (channel, payload) {
                (Some(channel), Some(payload)) if len == 3 => {
                    match (std::str::from_utf8(channel), std::str::from_utf8(payload)) {
                        (Ok(topic), Ok(msg)) => Reply::Delivery {
                            topic: Cow::Borrowed(topic),
                            msg: Cow::Borrowed(msg),
                            index: None,
                        },
                        _ => garbled(payload),
                    }
                }
                _ => garbled(b"a message push without channel and payload"),
            }
        }
        [Some(kind), ..] if kind.eq_ignore_ascii_case(b"subscribe") => Reply::Ack,
        _ => Reply::Notice,
    }
}

/// Parses the value starting at `pos`: `Ok(None)` when it is not all there
/// yet, otherwise the value and where the next one starts.
fn parse(buf: &[u8], pos: usize, depth: usize) -> Result<Option<(Value<'_>, usize)>, Malformed> {
    if depth > MAX_DEPTH {
        return Err(Malformed);
    }
    let Some(&kind) = buf.get(pos) else {
        return Ok(None);
    };
    let Some(end) = line_end(&buf[pos..]) else {
        return Ok(None);
    };
    let next = pos + end + 1;
    let head = trim_line(&buf[pos + 1..next]);
    let value = match kind {
        b'+' => Value::Text(head),
        b'-' => Value::Error(head),
        b':' | b'_' | b',' | b'#' | b'(' => Value::Other,
        b'$' | b'=' | b'!' => {
            let Ok(length) = usize::try_from(number(head)?) else {
                return Ok(Some((Value::Other, next)));
            };
            let stop = next + length;
            if buf.len() < stop + 2 {
                return Ok(None);
            }
            if &buf[stop..stop + 2] != b"\r\n" {
                return Err(Malformed);
            }
            let data = &buf[next..stop];
            let value = match kind {
                b'!' => Value::Error(data),
                // Verbatim strings start with their format, as "txt:".
                b'=' => Value::Text(data.get(4..).unwrap_or_default()),
                _ => Value::Text(data),
            };
            return Ok(Some((value, stop + 2)));
        }
        b'*' | b'~' | b'>' | b'%' | b'|' => {
            let Ok(count) = usize::try_from(number(head)?) else {
                return Ok(Some((Value::Other, next)));
            };
            let count = if matches!(kind, b'%' | b'|') {
                count * 2
            } else {
                count
            };
            let mut texts = [None; PUSH_TEXTS];
            let mut at = next;
            for i in 0..count {
                let Some((item, after)) = parse(buf, at, depth + 1)? else {
                    return Ok(None);
                };
                if let (Some(slot), Value::Text(text)) = (texts.get_mut(i), item) {
                    *slot = Some(text);
                }
                at = after;
            }
            return match kind {
                b'>' => Ok(Some((Value::Push { texts, len: count }, at))),
                // Attributes come before the value they describe.
                b'|' => parse(buf, at, depth + 1),
                _ => Ok(Some((Value::Other, at))),
            };
        }
        _ => return Err(Malformed),
    };
    Ok(Some((value, next)))
}

fn number(text: &[u8]) -> Result<i64, Malformed> {
    std::str::from_utf8(text)
        .ok()
        .and_then(|t| t.parse().ok())
        .ok_or(Malformed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_commands_as_bulk_strings() {
        let mut out = Vec::new();
        command(&mut out, &[b"PUBLISH", b"foo", b"hi there"]);
        assert_eq!(
            out,
            b"*3\r\n$7\r\nPUBLISH\r\n$3\r\nfoo\r\n$8\r\nhi there\r\n"
        );
    }

    #[test]
    fn tells_deliveries_from_replies() {
        let message = b">3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$2\r\nhi\r\n";
        assert_eq!(
            decode(message),
            Some((
                Reply::Delivery {
                    topic: "foo".into(),
                    msg: "hi".into(),
                    index: None
                },
                message.len()
            ))
        );
        assert_eq!(decode(b":3\r\n"), Some((Reply::Ack, 4)));
        assert_eq!(decode(b"+PONG\r\n"), Some((Reply::Ack, 7)));
        let subscribed = b">3\r\n$9\r\nsubscribe\r\n$3\r\nfoo\r\n:1\r\n";
        assert_eq!(decode(subscribed), Some((Reply::Ack, subscribed.len())));
        assert_eq!(
            decode(b"-ERR unknown command 'HELLO'\r\n").map(|r| r.0),
            Some(Reply::Refused("ERR unknown command 'HELLO'".into()))
        );
    }

    #[test]
    fn skips_a_whole_hello_map() {
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nmodules\r\n*0\r\n:1\r\n";
        assert_eq!(decode(hello), Some((Reply::Ack, hello.len() - 4)));
    }

    #[test]
    fn waits_for_whole_frames() {
        let message = b">3\r\n$7\r\nmessage\r\n$3\r\nfoo\r\n$2\r\nhi\r\n";
        for cut in 0..message.len() {
            assert_eq!(decode(&message[..cut]), None, "cut at {cut}");
        }
    }

    #[test]
    fn rejects_what_is_not_resp() {
        assert!(matches!(
            decode(b"hello\r\nmore"),
            Some((Reply::Garbled(_), 7))
        ));
    }
}
