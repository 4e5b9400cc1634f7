//! The delivered line: a `send` encoded once, with the index its topic
//! assigns appended, and shared by every subscriber.

use std::io::Write;

use bytes::{BufMut, Bytes, BytesMut};

use super::parse::Send;

/// What the topic's index follows in a delivered line.
const INDEX_KEY: &[u8] = b", \"index\": ";

/// Digits of the largest index, `u64::MAX`.
const MAX_INDEX_DIGITS: usize = 20;

/// What ends a delivered line, after its index.
const LINE_END: &[u8] = b"}\r\n";

/// Room a template keeps for the largest index and the line's end.
const TAIL: usize = MAX_INDEX_DIGITS + LINE_END.len();

/// A `send` encoded once, up to the index that only its topic can assign:
/// the topic appends `"index": N` and shares the resulting bytes with every
/// subscriber instead of serializing per subscriber.
///
/// Its buffer has room for the index and the line's end, so that a topic
/// can finish the line in place ([`DeliveryTemplate::into_line`]): a
/// message then costs one allocation and one copy from the read buffer on
/// its whole way to the sockets.
#[derive(Debug, Clone)]
pub struct DeliveryTemplate {
    head: BytesMut,
}

impl DeliveryTemplate {
    /// The sender's own text when the parser kept it (most lines), so that
    /// the hot path copies one slice; otherwise the fields written afresh.
    pub fn new(send: &Send<'_>) -> Self {
        if let Some(object) = send.verbatim {
            let mut head = BytesMut::with_capacity(object.len() + INDEX_KEY.len() + TAIL);
            head.put_slice(object.as_bytes());
            head.put_slice(INDEX_KEY);
            return DeliveryTemplate { head };
        }
        let mut head = BytesMut::with_capacity(send.topic.len() + send.msg.len() + 96 + TAIL);
        head.put_slice(b"{\"command\": \"send\", \"topic\": ");
        write_json_string(&mut head, &send.topic);
        head.put_slice(b", \"msg\": ");
        write_json_string(&mut head, &send.msg);
        head.put_slice(b", \"delivery\": \"");
        head.put_slice(send.delivery.as_str().as_bytes());
        head.put_u8(b'"');
        match send.cache {
            Some(true) => head.put_slice(b", \"cache\": true"),
            Some(false) => head.put_slice(b", \"cache\": false"),
            None => {}
        }
        head.put_slice(INDEX_KEY);
        DeliveryTemplate { head }
    }

    /// The delivered line up to its index, for whoever assigns the index
    /// elsewhere (`--cluster`: a script in Redis).
    pub fn into_head(self) -> Bytes {
        self.head.freeze()
    }

    /// Bytes of the delivered line without its index and ending: what the
    /// send costs while it waits for one.
    pub fn len(&self) -> usize {
        self.head.len()
    }

    /// The most bytes [`DeliveryTemplate::write_line`] can append.
    pub fn max_line_len(&self) -> usize {
        self.head.len() + TAIL
    }

    /// Never true: every delivered line has at least its keys.
    pub fn is_empty(&self) -> bool {
        self.head.is_empty()
    }

    /// The complete delivered line for message number `index`, finished in
    /// the template's own buffer.
    pub fn into_line(mut self, index: u64) -> BytesMut {
        end_line(index, &mut self.head);
        self.head
    }

    /// Appends the delivered line to `out`, so that many lines can share one
    /// buffer (and one write) on their way to the subscribers.
    pub fn write_line(&self, index: u64, out: &mut BytesMut) {
        out.reserve(self.max_line_len());
        out.put_slice(&self.head);
        end_line(index, out);
    }
}

/// Appends what follows a line's head: its index and the line's end.
fn end_line(index: u64, out: &mut BytesMut) {
    let mut digits = itoa::Buffer::new();
    out.put_slice(digits.format(index).as_bytes());
    out.put_slice(LINE_END);
}

/// Writes `s` as a JSON string. Most messages need no escaping, and for
/// them the bytes between the quotes are `s` itself: one pass without
/// branches (which the compiler vectorizes) and one copy, instead of
/// serde_json's byte-by-byte escaper.
fn write_json_string(out: &mut BytesMut, s: &str) {
    if !s
        .bytes()
        .fold(false, |escape, byte| escape | needs_escape(byte))
    {
        out.reserve(s.len() + 2);
        out.put_u8(b'"');
        out.put_slice(s.as_bytes());
        out.put_u8(b'"');
        return;
    }
    let mut writer = out.writer();
    // Writing a &str into memory cannot fail: serde_json only errors on I/O.
    if serde_json::to_writer(&mut writer, s).is_err() {
        unreachable!("serializing a string into memory failed");
    }
    let _ = writer.flush();
}

/// The bytes serde_json escapes inside a string: control characters, the
/// quote and the backslash (it leaves everything else, `/` and non-ASCII
/// included, as it is).
fn needs_escape(byte: u8) -> bool {
    byte < 0x20 || byte == b'"' || byte == b'\\'
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{parse_line, Command, Line};
    use serde_json::{json, Value};

    fn command(line: &str) -> Command<'_> {
        match parse_line(line.as_bytes()) {
            Ok(Line::Command(c)) => c,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn delivery_is_the_send_plus_index() {
        let original = r#"{"command": "send", "topic": "t\"q", "msg": "h\u00e9\n", "delivery": "one", "cache": true}"#;
        let Command::Send(send) = command(original) else {
            panic!("not a send");
        };
        let line = DeliveryTemplate::new(&send).into_line(7);
        assert!(line.ends_with(b"}\r\n"));
        let delivered: Value = serde_json::from_slice(&line).unwrap();
        let mut expected: Value = serde_json::from_str(original).unwrap();
        expected["index"] = json!(7);
        assert_eq!(delivered, expected);
    }

    #[test]
    fn a_plain_line_is_delivered_as_the_sender_wrote_it() {
        let original =
            r#"{ "msg":"a/b é","topic": "t" ,"delivery":"all" , "command":"send","cache":true }"#;
        let Command::Send(send) = command(original) else {
            panic!("not a send");
        };
        assert!(send.verbatim.is_some());
        let line = DeliveryTemplate::new(&send).into_line(12);
        let expected = r#"{ "msg":"a/b é","topic": "t" ,"delivery":"all" , "command":"send","cache":true, "index": 12}"#;
        assert_eq!(&line[..], format!("{expected}\r\n").as_bytes());
    }

    #[test]
    fn strings_are_written_as_serde_json_writes_them() {
        let strings = [
            "",
            "plain",
            "é/ü 😀",
            "q\"uote",
            "back\\slash",
            "nl\n",
            "\u{0}",
            "\u{1f}",
            "\u{7f}",
            " ",
        ];
        for s in strings {
            let mut out = BytesMut::new();
            write_json_string(&mut out, s);
            assert_eq!(
                &out[..],
                serde_json::to_string(s).unwrap().as_bytes(),
                "{s:?}"
            );
        }
    }
}
