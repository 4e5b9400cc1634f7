//! The NATS core protocol: text control lines; PUB and MSG carry a payload
//! whose length is given in the line before it. With `verbose` off nothing
//! but PING is answered, so a PING after a batch of publishes is their ack.

use std::borrow::Cow;

use super::{garbled, line_end, trim_line, Reply, Subscription};
use crate::ascii::push_decimal;

/// Sent once after the server's INFO.
pub const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\
\"name\":\"loadgen\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1}\r\n";

/// The queue group `queue` workers join, so that each message reaches one.
const QUEUE_GROUP: &[u8] = b"loadgen";

/// Queues a SUB with subscription id `sid`.
pub fn subscribe(out: &mut Vec<u8>, sub: &Subscription, sid: u64) {
    out.extend_from_slice(b"SUB ");
    out.extend_from_slice(sub.topic.name.as_bytes());
    if sub.shared {
        out.push(b' ');
        out.extend_from_slice(QUEUE_GROUP);
    }
    out.push(b' ');
    push_decimal(out, sid);
    out.extend_from_slice(b"\r\n");
}

/// Queues a PUB of `payload` to `subject`.
pub fn publish(out: &mut Vec<u8>, subject: &[u8], payload: &[u8]) {
    out.extend_from_slice(b"PUB ");
    out.extend_from_slice(subject);
    out.push(b' ');
    push_decimal(out, payload.len() as u64);
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(payload);
    out.extend_from_slice(b"\r\n");
}

/// Decodes the first frame of `buf`; returns it with the bytes it used, or
/// `None` until all of it is there.
pub fn decode(buf: &[u8]) -> Option<(Reply<'_>, usize)> {
    let next = line_end(buf)? + 1;
    let line = trim_line(&buf[..next]);
    let (op, args) = match line.iter().position(|b| b.is_ascii_whitespace()) {
        Some(at) => (&line[..at], &line[at + 1..]),
        None => (line, &line[line.len()..]),
    };
    // Operation names are case-insensitive; compared in place, since this
    // runs for every message.
    let is = |name: &[u8]| op.eq_ignore_ascii_case(name);
    let reply = if is(b"MSG") {
        return message(args, buf, next);
    } else if is(b"PING") {
        Reply::Ping
    } else if is(b"PONG") {
        Reply::Ack
    } else if is(b"+OK") || is(b"INFO") {
        Reply::Notice
    } else if is(b"-ERR") {
        Reply::Refused(
            String::from_utf8_lossy(args)
                .trim()
                .trim_matches('\'')
                .to_string()
                .into(),
        )
    } else {
        garbled(line)
    };
    Some((reply, next))
}

/// Decodes `MSG <subject> <sid> [reply-to] <#bytes>` and its payload, which
/// starts at `start`.
fn message<'a>(args: &'a [u8], buf: &'a [u8], start: usize) -> Option<(Reply<'a>, usize)> {
    // At most four fields, kept in place rather than collected, since this
    // runs for every message.
    let mut fields: [&[u8]; 4] = [&[]; 4];
    let mut count = 0;
    for field in args
        .split(|b| b.is_ascii_whitespace())
        .filter(|f| !f.is_empty())
    {
        if count == fields.len() {
            count += 1;
            break;
        }
        fields[count] = field;
        count += 1;
    }
    let length = match count {
        3 | 4 => std::str::from_utf8(fields[count - 1])
            .ok()?
            .parse::<usize>()
            .ok(),
        _ => None,
    };
    let Some(length) = length else {
        return Some((garbled(args), start));
    };
    let end = start + length + 2;
    if buf.len() < end {
        return None;
    }
    let payload = &buf[start..start + length];
    if &buf[start + length..end] != b"\r\n" {
        return Some((garbled(payload), end));
    }
    let (Ok(topic), Ok(msg)) = (std::str::from_utf8(fields[0]), std::str::from_utf8(payload))
    else {
        return Some((garbled(payload), end));
    };
    let delivery = Reply::Delivery {
        topic: Cow::Borrowed(topic),
        msg: Cow::Borrowed(msg),
        index: None,
    };
    Some((delivery, end))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::Topic;

    #[test]
    fn decodes_messages_with_and_without_reply_subjects() {
        let buf = b"MSG foo.1 9 5\r\nhello\r\nMSG foo 1 _INBOX.x 2\r\nhi\r\n";
        let (reply, used) = decode(buf).unwrap();
        assert_eq!(
            reply,
            Reply::Delivery {
                topic: "foo.1".into(),
                msg: "hello".into(),
                index: None
            }
        );
        let (reply, rest) = decode(&buf[used..]).unwrap();
        assert!(matches!(reply, Reply::Delivery { msg, .. } if msg == "hi"));
        assert_eq!(used + rest, buf.len());
    }

    #[test]
    fn waits_for_the_whole_payload() {
        assert_eq!(decode(b"MSG foo 1 5\r\nhel"), None);
        assert_eq!(decode(b"MSG foo 1 5\r\nhello\r"), None);
        assert_eq!(decode(b"MSG foo 1"), None);
    }

    #[test]
    fn decodes_control_lines() {
        assert_eq!(decode(b"PONG\r\n"), Some((Reply::Ack, 6)));
        assert_eq!(decode(b"PING\r\n"), Some((Reply::Ping, 6)));
        assert_eq!(
            decode(b"INFO {\"server_id\":\"x\"}\r\n").map(|r| r.0),
            Some(Reply::Notice)
        );
        assert_eq!(
            decode(b"-ERR 'Authorization Violation'\r\n").map(|r| r.0),
            Some(Reply::Refused("Authorization Violation".into()))
        );
        assert!(matches!(
            decode(b"MSG foo\r\n"),
            Some((Reply::Garbled(_), 9))
        ));
    }

    #[test]
    fn encodes_sub_and_pub() {
        let topic = Topic::new("jobs".into());
        let mut sub = Subscription::live(&topic);
        let mut out = Vec::new();
        subscribe(&mut out, &sub, 1);
        sub.shared = true;
        subscribe(&mut out, &sub, 2);
        publish(&mut out, b"jobs", b"hi");
        assert_eq!(
            out,
            b"SUB jobs 1\r\nSUB jobs loadgen 2\r\nPUB jobs 2\r\nhi\r\n"
        );
    }
}
