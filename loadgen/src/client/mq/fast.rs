//! The fast path for the line an mq server sends most: a delivery, a flat
//! JSON object of plain strings, integers and booleans, such as
//! `{"command": "send", "topic": "t", "msg": "...", "delivery": "all", "index": 7}`.
//!
//! Decoding each delivery with serde_json cost loadgen more CPU than the
//! server spent delivering it, and on a shared machine every microsecond
//! loadgen spends is taken from the server it measures. This scanner reads
//! such a line in one pass over the bytes, without allocating, and gives up
//! (`None`) on anything it does not fully understand: escapes, control
//! characters, numbers other than plain non-negative integers, nested values,
//! a field given twice, replies (`success`), a line not yet complete. The
//! caller then decodes the line with serde_json as before, so the fast path
//! only answers where serde_json would give the very same answer; the tests
//! hold it to that on many shapes of line.
//!
//! A server writes every delivery of a topic the same way, so most lines
//! differ from the last only in the message text and the index: a line whose
//! other bytes are those of the last one is read by comparing them (see
//! [`Shape`]), which costs a fraction of scanning it again.

use std::borrow::Cow;
use std::ops::Range;

use super::Reply;
use crate::ascii::{ascii_text, decimal, plain_len};

/// Decodes a delivery at the start of `buf`, ending with `\n`; returns it with
/// the bytes used (the `\n` included), or `None` to leave the line to the
/// general decoder. A line of the same `shape` as the last is read by
/// comparing bytes; any other is scanned, and its shape kept for the next.
pub fn delivery<'a>(buf: &'a [u8], shape: &mut Option<Shape>) -> Option<(Reply<'a>, usize)> {
    if let Some(read) = shape.as_ref().and_then(|shape| shape.read(buf)) {
        return Some(read);
    }
    let scanned = scan(buf)?;
    if let Some(learnt) = Shape::of(buf, &scanned) {
        *shape = Some(learnt);
    }
    let reply = Reply::Delivery {
        topic: Cow::Borrowed(scanned.topic),
        msg: Cow::Borrowed(scanned.msg),
        index: Some(scanned.index),
    };
    Some((reply, scanned.used))
}

/// A delivery line as [`scan`] read it: its fields, and where they start.
struct Scanned<'a> {
    topic: &'a str,
    topic_at: usize,
    msg: &'a str,
    msg_at: usize,
    index: u64,
    index_at: usize,
    /// Whether `index` is the last field.
    index_last: bool,
    /// Length of the line, its `\n` included.
    used: usize,
}

/// Reads a delivery field by field.
fn scan(buf: &[u8]) -> Option<Scanned<'_>> {
    let mut cursor = Cursor { buf, pos: 0 };
    cursor.expect(b'{')?;
    let (mut topic, mut msg, mut index) = (None, None, None);
    let mut index_last;
    loop {
        cursor.skip_space();
        // Keys loadgen reads are ASCII; any other must be valid UTF-8 to
        // serde_json, which this does not check, so it is left to serde_json.
        let (key, true) = cursor.string()? else {
            return None;
        };
        cursor.expect(b':')?;
        cursor.skip_space();
        let at = cursor.pos;
        index_last = key == b"index";
        match key {
            // The text starts after the quote.
            b"topic" => set_once(&mut topic, (cursor.text()?, at + 1))?,
            b"msg" => set_once(&mut msg, (cursor.text()?, at + 1))?,
            b"index" => set_once(&mut index, (cursor.integer()?, at))?,
            // A reply, or a field serde_json would read: not a delivery.
            b"success" | b"reason" => return None,
            _ => cursor.skip_scalar()?,
        }
        cursor.skip_space();
        match cursor.next()? {
            b',' => {}
            b'}' => break,
            _ => return None,
        }
    }
    cursor.expect(b'\n')?;
    let ((topic, topic_at), (msg, msg_at), (index, index_at)) = (topic?, msg?, index?);
    Some(Scanned {
        topic,
        topic_at,
        msg,
        msg_at,
        index,
        index_at,
        index_last,
        used: cursor.pos,
    })
}

/// The bytes around the message text and the index of a delivery, which are
/// the same in every delivery of a topic from a given server. A line that
/// has them is a delivery exactly as [`scan`] would read it, since `scan`
/// reads those bytes the same way every time; comparing them costs a
/// fraction of reading them field by field.
#[derive(Debug, Clone)]
pub struct Shape {
    /// From the start of the line to the message text, after its quote.
    head: Vec<u8>,
    /// Where the topic's text lies within `head`.
    topic: Range<usize>,
    /// Whether that text is all ASCII.
    topic_ascii: bool,
    /// From the quote closing the message text to the index's first digit.
    middle: Vec<u8>,
}

impl Shape {
    /// The shape of a scanned line, if its fields come in an order that one
    /// can describe: the topic, then the message, then the index last.
    fn of(buf: &[u8], scanned: &Scanned<'_>) -> Option<Shape> {
        let topic = scanned.topic_at..scanned.topic_at + scanned.topic.len();
        let msg_end = scanned.msg_at + scanned.msg.len();
        let in_order = topic.end < scanned.msg_at && msg_end < scanned.index_at;
        (in_order && scanned.index_last).then(|| Shape {
            head: buf[..scanned.msg_at].to_vec(),
            topic_ascii: scanned.topic.is_ascii(),
            topic,
            middle: buf[msg_end..scanned.index_at].to_vec(),
        })
    }

    /// Reads a delivery of this shape at the start of `buf`.
    fn read<'a>(&self, buf: &'a [u8]) -> Option<(Reply<'a>, usize)> {
        let rest = buf.strip_prefix(self.head.as_slice())?;
        let (msg_len, msg_ascii) = string_len(rest)?;
        let after_msg = rest[msg_len..].strip_prefix(self.middle.as_slice())?;
        let mut cursor = Cursor {
            buf,
            pos: buf.len() - after_msg.len(),
        };
        let index = cursor.integer()?;
        cursor.expect(b'}')?;
        cursor.expect(b'\n')?;
        // The topic's bytes are those of `head`, checked when it was learnt.
        let reply = Reply::Delivery {
            topic: Cow::Borrowed(text(&buf[self.topic.clone()], self.topic_ascii)?),
            msg: Cow::Borrowed(text(&rest[..msg_len], msg_ascii)?),
            index: Some(index),
        };
        Some((reply, cursor.pos))
    }
}

/// `bytes` as text, checked unless known to be ASCII.
fn text(bytes: &[u8], ascii: bool) -> Option<&str> {
    if ascii {
        Some(ascii_text(bytes))
    } else {
        std::str::from_utf8(bytes).ok()
    }
}

/// Length of the string text at the start of `bytes`, up to its closing
/// quote, and whether it is all ASCII; `None` if it has an escape or a
/// control character, or does not end.
fn string_len(bytes: &[u8]) -> Option<(usize, bool)> {
    let mut len = 0;
    let mut ascii = true;
    loop {
        len += plain_len(&bytes[len..]);
        match *bytes.get(len)? {
            b'"' => return Some((len, ascii)),
            0x80.. => {
                ascii = false;
                len += 1;
            }
            _ => return None,
        }
    }
}

/// Stores a field's value, failing if it was already there: serde_json
/// rejects a duplicate field, so the fast path must not pick one.
fn set_once<T>(slot: &mut Option<T>, value: T) -> Option<()> {
    match slot {
        Some(_) => None,
        None => {
            *slot = Some(value);
            Some(())
        }
    }
}

/// A position in the bytes of one line.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    /// The next byte, consumed.
    fn next(&mut self) -> Option<u8> {
        let byte = *self.buf.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    /// Skips JSON whitespace within the line; `\n` is not skipped, being the
    /// end of the line.
    fn skip_space(&mut self) {
        // Tested as `==`, which compiles to fewer branches than a match on
        // these three here.
        while let Some(&b) = self.buf.get(self.pos) {
            if !(b == b' ' || b == b'\t' || b == b'\r') {
                break;
            }
            self.pos += 1;
        }
    }

    /// Consumes `byte` after any whitespace.
    fn expect(&mut self, byte: u8) -> Option<()> {
        self.skip_space();
        (self.next()? == byte).then_some(())
    }

    /// Consumes a string without escapes or control characters, returning
    /// its bytes (not yet checked to be UTF-8) and whether they are all ASCII.
    fn string(&mut self) -> Option<(&'a [u8], bool)> {
        if self.next()? != b'"' {
            return None;
        }
        let rest = &self.buf[self.pos..];
        let (len, ascii) = string_len(rest)?;
        self.pos += len + 1;
        Some((&rest[..len], ascii))
    }

    /// Consumes a string as [`Cursor::string`] does, returning it as text.
    fn text(&mut self) -> Option<&'a str> {
        let (bytes, ascii) = self.string()?;
        text(bytes, ascii)
    }

    /// Consumes a non-negative integer as JSON writes it (no sign, no leading
    /// zero), that fits in a `u64`. What follows is checked by the caller, so
    /// a fraction or an exponent makes the line fail there.
    fn integer(&mut self) -> Option<u64> {
        let (value, digits) = decimal(&self.buf[self.pos..])?;
        self.pos += digits;
        Some(value)
    }

    /// Consumes the value of a field loadgen does not read (`command`,
    /// `delivery`, `cache`): a string, an integer, a boolean or null.
    fn skip_scalar(&mut self) -> Option<()> {
        match self.buf.get(self.pos)? {
            // ASCII only, which is valid UTF-8 whether or not serde_json
            // checks ignored strings.
            b'"' => self.string()?.1.then_some(()),
            b'0'..=b'9' => self.integer().map(drop),
            _ => ["true", "false", "null"]
                .iter()
                .any(|word| self.literal(word))
                .then_some(()),
        }
    }

    /// Consumes `word` if the line continues with it.
    fn literal(&mut self, word: &str) -> bool {
        let found = self.buf[self.pos..].starts_with(word.as_bytes());
        if found {
            self.pos += word.len();
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::super::decode_line;
    use super::*;
    use crate::client::{line_end, trim_line};
    use crate::testing::XorShift;

    /// The first line of `buf` as the general decoder reads it.
    fn by_serde(buf: &[u8]) -> Option<(Reply<'_>, usize)> {
        let end = line_end(buf)? + 1;
        Some((decode_line(trim_line(&buf[..end])), end))
    }

    /// Panics unless `fast`, if any, is serde_json's reading of `buf`.
    fn same_as_serde(fast: Option<(Reply<'_>, usize)>, buf: &[u8]) -> bool {
        let Some(fast) = fast else {
            return false;
        };
        let slow = by_serde(buf);
        let line = String::from_utf8_lossy(buf);
        assert_eq!(Some(&fast), slow.as_ref(), "{line:?}");
        true
    }

    /// Whether the fast path answered, after a line of `shape`; panics if
    /// its answer, or that of the shape alone, differs from serde_json's.
    fn agrees_after(shape: &Option<Shape>, buf: &[u8]) -> bool {
        if let Some(shape) = shape {
            same_as_serde(shape.read(buf), buf);
        }
        same_as_serde(delivery(buf, &mut shape.clone()), buf)
    }

    /// Whether the fast path answered, knowing no shape; panics if its
    /// answer differs from serde_json's.
    fn agrees(buf: &[u8]) -> bool {
        agrees_after(&None, buf)
    }

    /// The shape learnt from `line`.
    fn shape_of(line: &[u8]) -> Option<Shape> {
        let mut shape = None;
        delivery(line, &mut shape);
        shape
    }

    /// Lines the fast path must take, as servers write them.
    const FAST: &[&str] = &[
        // mq-actix
        "{\"command\": \"send\", \"topic\": \"foo\", \"msg\": \"0000abcd:0:12:3456789:...........................................\", \"delivery\": \"all\", \"index\": 7}\r\n",
        "{\"command\": \"send\", \"topic\": \"t\", \"msg\": \"m\", \"delivery\": \"one\", \"cache\": false, \"index\": 0}\r\n",
        "{\"command\": \"send\", \"topic\": \"t\", \"msg\": \"m\", \"delivery\": \"all\", \"cache\": true, \"index\": 18446744073709551615}\n",
        // serde_json's compact form, keys sorted (the fake server)
        "{\"command\":\"send\",\"delivery\":\"all\",\"index\":3,\"msg\":\"m\",\"topic\":\"t\"}\n",
        // spacing of every kind, other orders, only the fields needed
        "  {  \"index\" :\t12 ,\"msg\"\t:\"\" , \"topic\":\"\"  }  \r\r\n",
        "{\"msg\":\"m\",\"topic\":\"t\",\"index\":1,\"extra\":null}\n",
        "{\"topic\":\"t\",\"msg\":\"m\",\"index\":1,\"n\":10,\"f\":false}\n",
        // text beyond ASCII, unescaped
        "{\"topic\": \"thé\", \"msg\": \"日本語 ✓\", \"index\": 5}\n",
    ];

    /// Lines the fast path must leave to serde_json, which may accept them
    /// or not.
    const SLOW: &[&str] = &[
        // escapes, in values and keys
        "{\"topic\": \"a\\\"b\", \"msg\": \"m\", \"index\": 7}\n",
        "{\"topic\": \"t\", \"msg\": \"tab\\there\", \"index\": 7}\n",
        "{\"topic\": \"t\", \"msg\": \"\\u00e9\", \"index\": 7}\n",
        "{\"top\\u0069c\": \"t\", \"msg\": \"m\", \"index\": 7}\n",
        // a raw control character
        "{\"topic\": \"t\", \"msg\": \"a\tb\", \"index\": 7}\n",
        // numbers serde_json reads differently or not at all
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": -1}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1.0}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1e3}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 07}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 18446744073709551616}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": null}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": \"7\"}\n",
        // missing, repeated or extra fields
        "{\"topic\": \"t\", \"msg\": \"m\"}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1, \"index\": 2}\n",
        "{\"topic\": \"t\", \"topic\": \"u\", \"msg\": \"m\", \"index\": 1}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1, \"success\": true}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1, \"x\": [1]}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1, \"x\": {}}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1, \"x\": -2}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1, \"x\": tru}\n",
        // replies
        "{\"success\": true}\r\n",
        "{\"success\": false, \"reason\": \"Malformed json message\"}\r\n",
        // not one object, or not only one
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1} x\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1}{}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1,}\n",
        "{\"topic\": \"t\" \"msg\": \"m\", \"index\": 1}\n",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1\n",
        "[\"t\", \"m\", 1]\n",
        "{}\n",
        "\n",
        "\r\n{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1}\n",
        "garbage\n",
        // not yet a whole line
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1}",
        "{\"topic\": \"t\", \"msg\": \"m\", \"index\": 1}\r",
        "{\"topic\": \"t\", \"msg\": \"m\", \"ind",
    ];

    #[test]
    fn takes_the_usual_deliveries_as_serde_json_reads_them() {
        for line in FAST {
            assert!(agrees(line.as_bytes()), "not taken: {line:?}");
        }
    }

    #[test]
    fn leaves_anything_unusual_to_serde_json() {
        for line in SLOW {
            assert!(!agrees(line.as_bytes()), "taken: {line:?}");
        }
    }

    #[test]
    fn learns_the_shape_of_a_delivery_with_the_index_last() {
        let shape = shape_of(FAST[0].as_bytes()).expect("a shape");
        let next = FAST[0]
            .replace("0000abcd:0:12:", "0000abcd:0:13:")
            .replace("7}", "8}");
        assert!(same_as_serde(shape.read(next.as_bytes()), next.as_bytes()));
        for other in [
            FAST[0].replace("7}", "7 \t}  "),
            FAST[0].replace("0000abcd", "日本"),
            FAST[0].replace("0000abcd:0:12:3456789:", ""),
        ] {
            assert!(same_as_serde(
                shape.read(other.as_bytes()),
                other.as_bytes()
            ));
        }
        let sorted = FAST[3].as_bytes();
        assert!(agrees(sorted) && shape_of(sorted).is_none());
    }

    #[test]
    fn a_known_shape_still_reads_every_byte() {
        let shape = shape_of(FAST[0].as_bytes());
        let taken_by_scan = [
            FAST[0].replace("7}", "7, \"x\": 1}"),
            FAST[0].replace("\"foo\"", "\"bar\""),
        ];
        for line in &taken_by_scan {
            let read = shape.as_ref().unwrap().read(line.as_bytes());
            assert!(read.is_none(), "{line:?}");
            assert!(agrees_after(&shape, line.as_bytes()), "{line:?}");
        }
        let left_to_serde = [
            FAST[0].replace("7}", "07}"),
            FAST[0].replace("7}", "7.0}"),
            FAST[0].replace("7}", "-7}"),
            FAST[0].replace("7}", "7}}"),
            FAST[0].replace("7}", "7, \"index\": 8}"),
            FAST[0].replace("0000abcd", "\\\""),
            FAST[0].replace("0000abcd", "\t"),
            FAST[0].replace("0000abcd", "\u{1}"),
            FAST[0].replace("\"all\"", "\"a\\ll\""),
            FAST[0].replace("\r\n", ""),
        ];
        for line in &left_to_serde {
            assert!(!agrees_after(&shape, line.as_bytes()), "{line:?}");
        }
    }

    #[test]
    fn reads_only_the_first_line() {
        let two = b"{\"topic\":\"t\",\"msg\":\"m\",\"index\":1}\r\n{\"success\": true}\n";
        let (_, used) = delivery(two, &mut None).unwrap();
        assert_eq!(used, two.iter().position(|&b| b == b'\n').unwrap() + 1);
        assert!(agrees(two));
    }

    #[test]
    fn non_utf8_text_is_left_to_serde_json() {
        let line = b"{\"topic\": \"t\", \"msg\": \"\xff\xfe\", \"index\": 1}\n";
        assert!(!agrees(line));
    }

    #[test]
    fn agrees_with_serde_json_on_mangled_lines() {
        /// Bytes that matter to JSON, and some that do not.
        const ALPHABET: &[u8] =
            b" \t\r\n\"\\{}[]:,-+.eE0123456789tfnulrsamixdgcopqy\x00\x1f\x7f\xc3\xa9\xff";
        let shapes: Vec<_> = FAST.iter().map(|line| shape_of(line.as_bytes())).collect();
        let mut rng = XorShift(0x2545_f491_4f6c_dd1d);
        let (mut taken, mut by_shape) = (0, 0);
        let tries = 50_000;
        for _ in 0..tries {
            let original = rng.below(FAST.len());
            let mut line = FAST[original].as_bytes().to_vec();
            for _ in 0..1 + rng.below(3) {
                let at = rng.below(line.len());
                let byte = ALPHABET[rng.below(ALPHABET.len())];
                match rng.below(3) {
                    0 => line[at] = byte,
                    1 => line.insert(at, byte),
                    _ => {
                        line.remove(at);
                    }
                }
                if line.is_empty() {
                    line.push(b'\n');
                }
            }
            // Each line with the shape of its original, which it most
            // resembles, as a server's next line would.
            let shape = &shapes[original];
            taken += usize::from(agrees_after(shape, &line));
            by_shape += usize::from(shape.as_ref().is_some_and(|s| s.read(&line).is_some()));
        }
        // Most mangled lines are broken, but the fast path, and its reading
        // by shape, must still have been put to the test on many that are
        // not.
        assert!(taken > tries / 20, "only {taken} of {tries} taken");
        assert!(
            by_shape > tries / 50,
            "only {by_shape} of {tries} read by shape"
        );
    }
}
