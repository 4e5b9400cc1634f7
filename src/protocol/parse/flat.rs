//! The fast path of parsing: the shape nearly every line has, read without
//! serde.
//!
//! A command is almost always one flat object whose keys are known and
//! given once, and whose values are strings without escapes, booleans or
//! integers. Such a line is read here in one pass over its bytes, into the
//! same [`Fields`] the serde path fills, and judged by the same
//! [`Fields::into_line`]. Anything else (an escape, a duplicate or unknown
//! key, `null`, a fraction, nesting, bad JSON) makes [`read`] give up, and
//! the serde path reads the line from the start and decides. So this path
//! can only ever agree with the serde path; the tests below check that it
//! does on generated lines.

use std::borrow::Cow;

use super::{parse_integer, Fields, Value};

/// The fields of `text` when it has the common shape, `None` otherwise.
pub(super) fn read(text: &str) -> Option<Fields<'_>> {
    // One pass without branches (vectorized) instead of a check per
    // string: with no backslash and no control character anywhere (tabs
    // and line ends between tokens included), every string ends at its
    // next quote.
    if text
        .bytes()
        .fold(false, |odd, b| odd | (b < 0x20) | (b == b'\\'))
    {
        return None;
    }
    let mut at = Cursor {
        text,
        bytes: text.as_bytes(),
        pos: 0,
    };
    let mut fields = Fields::default();
    at.skip_space();
    at.eat(b'{')?;
    at.skip_space();
    if at.eat(b'}').is_some() {
        return at.done().then_some(fields);
    }
    loop {
        let key = at.string()?;
        at.skip_space();
        at.eat(b':')?;
        at.skip_space();
        match key {
            "command" => set(&mut fields.command, at.value()?)?,
            "topic" => set(&mut fields.topic, at.value()?)?,
            "msg" => set(&mut fields.msg, at.value()?)?,
            "delivery" => set(&mut fields.delivery, at.value()?)?,
            "cache" => set(&mut fields.cache, at.value()?)?,
            "user" => set(&mut fields.user, at.value()?)?,
            "password" => set(&mut fields.password, at.value()?)?,
            "last_seen" => {
                if fields.last_seen.is_some() {
                    return None;
                }
                fields.last_seen = Some(parse_integer(at.integer()?));
            }
            _ => return None,
        }
        at.skip_space();
        match at.next()? {
            b',' => at.skip_space(),
            b'}' => {
                fields.verbatim = Some(text[..at.pos - 1].trim_end_matches(' '));
                return at.done().then_some(fields);
            }
            _ => return None,
        }
    }
}

/// Fills a key seen for the first time; a second time, the serde path
/// decides (the last value wins there).
fn set<'a>(slot: &mut Option<Value<'a>>, value: Value<'a>) -> Option<()> {
    if slot.is_some() {
        return None;
    }
    *slot = Some(value);
    Some(())
}

/// Where the first `"` of `bytes` is. Most strings of a command are a few
/// bytes long (keys, `send`, a topic), where memchr's set-up cost more than
/// the search: eight bytes at a time in a `u64` instead, the first quote
/// found by the classic zero-byte test on `word ^ "\"\"\"..."`, whose lowest
/// flagged byte is always a real match.
fn find_quote(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const QUOTES: u64 = u64::from_ne_bytes([b'"'; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        let x = u64::from_le_bytes(word) ^ QUOTES;
        let found = x.wrapping_sub(ONES) & !x & HIGHS;
        if found != 0 {
            return Some(at + (found.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter().position(|&b| b == b'"').map(|i| at + i)
}

struct Cursor<'a> {
    text: &'a str,
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn next(&mut self) -> Option<u8> {
        let byte = *self.bytes.get(self.pos)?;
        self.pos += 1;
        Some(byte)
    }

    fn eat(&mut self, expected: u8) -> Option<()> {
        (self.bytes.get(self.pos) == Some(&expected)).then(|| self.pos += 1)
    }

    /// JSON's whitespace, which is narrower than Unicode's (and here only
    /// spaces: `read` left lines with tabs or line ends to serde).
    fn skip_space(&mut self) {
        while let Some(b' ') = self.bytes.get(self.pos) {
            self.pos += 1;
        }
    }

    fn done(&mut self) -> bool {
        self.skip_space();
        self.pos == self.bytes.len()
    }

    /// A string, borrowed: `read` has made sure it has no escapes or
    /// control characters.
    fn string(&mut self) -> Option<&'a str> {
        self.eat(b'"')?;
        let start = self.pos;
        let end = start + find_quote(&self.bytes[start..])?;
        self.pos = end + 1;
        // Both ends are ASCII quotes, so both are character boundaries.
        self.text.get(start..end)
    }

    fn value(&mut self) -> Option<Value<'a>> {
        match self.bytes.get(self.pos)? {
            b'"' => self.string().map(|s| Value::Str(Cow::Borrowed(s))),
            b't' => self.word("true").map(|()| Value::Bool(true)),
            b'f' => self.word("false").map(|()| Value::Bool(false)),
            b'-' | b'0'..=b'9' => self.integer().map(|_| Value::Other),
            _ => None,
        }
    }

    fn word(&mut self, word: &str) -> Option<()> {
        let rest = self.bytes.get(self.pos..)?;
        rest.starts_with(word.as_bytes())
            .then(|| self.pos += word.len())
    }

    /// The text of a JSON number without fraction or exponent: `-?(0|[1-9][0-9]*)`.
    fn integer(&mut self) -> Option<&'a str> {
        let start = self.pos;
        let _ = self.eat(b'-');
        let first = self.pos;
        while self.bytes.get(self.pos).is_some_and(u8::is_ascii_digit) {
            self.pos += 1;
        }
        let digits = &self.bytes[first..self.pos];
        if digits.is_empty() || (digits.len() > 1 && digits[0] == b'0') {
            return None;
        }
        if let Some(b'.' | b'e' | b'E') = self.bytes.get(self.pos) {
            return None;
        }
        self.text.get(start..self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::super::{parse_fields, parse_fields_deep, Command, Line, Send};
    use super::*;
    use proptest::prelude::*;

    /// What the serde path makes of `text`, as `into_line` judges it.
    fn slow(text: &str) -> Option<Option<Line<'_>>> {
        parse_fields(text)
            .or_else(|_| parse_fields_deep(text))
            .ok()
            .map(Fields::into_line)
    }

    /// What this path makes of `text`, without the verbatim object text
    /// (which only this path keeps).
    fn fast(text: &str) -> Option<Option<Line<'_>>> {
        read(text).map(|fields| match fields.into_line() {
            Some(Line::Command(Command::Send(send))) => Some(Line::Command(Command::Send(Send {
                verbatim: None,
                ..send
            }))),
            line => line,
        })
    }

    proptest! {
        #[test]
        fn find_quote_finds_the_first_quote(bytes in proptest::collection::vec(
            prop_oneof![Just(b'"'), Just(0x22 ^ 0x80), Just(0x21), Just(0x23), any::<u8>()], 0..40)) {
            prop_assert_eq!(find_quote(&bytes), bytes.iter().position(|&b| b == b'"'));
        }
    }

    #[test]
    fn the_common_shapes_take_the_fast_path() {
        let lines = [
            r#"{"command": "send", "topic": "t", "msg": "m", "delivery": "all"}"#,
            r#"{"delivery":"one","msg":"é 😀","topic":"t","command":"send","cache":false}"#,
            r#"{"command": "subscribe", "topic": "t", "last_seen": -1, "cache": true}"#,
            r#" { "command" : "unsubscribe" , "topic" : "t" } "#,
            r#"{"command": "send", "topic": "t", "msg": "a/b", "delivery": "one", "cache": true}"#,
            r#"{"command": "auth", "user": "u", "password": "p"}"#,
            r#"{"command": "subscribe", "topic": "t", "last_seen": 99999999999999999999}"#,
            "{}",
        ];
        for line in lines {
            assert!(read(line).is_some(), "{line}");
            assert_eq!(fast(line), slow(line), "{line}");
        }
    }

    #[test]
    fn everything_unusual_is_left_to_serde() {
        let lines = [
            r#"{"command": "send", "topic": "t\"", "msg": "m", "delivery": "all"}"#,
            r#"{"command": "send", "topic": "t", "topic": "u", "msg": "m", "delivery": "all"}"#,
            r#"{"command": "subscribe", "topic": "t", "last_seen": 1.0}"#,
            r#"{"command": "subscribe", "topic": "t", "last_seen": 1e2}"#,
            r#"{"command": "subscribe", "topic": "t", "last_seen": 01}"#,
            r#"{"command": "subscribe", "topic": "t", "cache": null}"#,
            r#"{"command": "subscribe", "topic": ["t"]}"#,
            r#"{"command": "subscribe", "topic": "t", "extra": 1}"#,
            r#"{"command": "subscribe", "topic": "t",}"#,
            r#"{"command": "subscribe", "topic": "t"} x"#,
            "{\"command\": \"send\", \"topic\": \"t\u{1}\"}",
            "{\"command\":\t\"subscribe\", \"topic\": \"t\"}",
            r#"{"command": "subscribe", "topic": "t", "cache": trueish}"#,
            "[]",
        ];
        for line in lines {
            assert!(read(line).is_none(), "{line}");
        }
    }

    /// Pieces of command objects, valid and not, to be put together in any
    /// order and spacing.
    fn member() -> impl Strategy<Value = String> {
        let key = prop_oneof![
            Just("command"),
            Just("topic"),
            Just("msg"),
            Just("delivery"),
            Just("last_seen"),
            Just("cache"),
            Just("user"),
            Just("password"),
            Just("other"),
            Just("t\\u006fpic"),
        ];
        let value = prop_oneof![
            Just("\"send\"".to_owned()),
            Just("\"subscribe\"".to_owned()),
            Just("\"unsubscribe\"".to_owned()),
            Just("\"auth\"".to_owned()),
            Just("\"all\"".to_owned()),
            Just("\"one\"".to_owned()),
            Just("true".to_owned()),
            Just("false".to_owned()),
            Just("null".to_owned()),
            Just("[1, \"x\"]".to_owned()),
            Just("{\"a\": {}}".to_owned()),
            Just("\"a\\\"b\"".to_owned()),
            Just("\"a\\u00e9\"".to_owned()),
            "-?(0|[1-9][0-9]{0,20})(\\.[0-9])?(e[0-9])?",
            "\"[a-zé😀 /]{0,8}\"",
            "[0-9tfn\"{}\\[\\],:.-]{1,4}",
        ];
        let space = "[ \t\r\n]{0,2}";
        (space, key, space, space, value, space)
            .prop_map(|(a, k, b, c, v, d)| format!("{a}\"{k}\"{b}:{c}{v}{d}"))
    }

    fn object() -> impl Strategy<Value = String> {
        (
            proptest::collection::vec(member(), 0..7),
            "[ ,]{0,1}",
            "[ \t]{0,2}",
        )
            .prop_map(|(members, sep, tail)| format!("{{{}{sep}}}{tail}", members.join(",")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(4096))]

        #[test]
        fn the_fast_path_agrees_with_serde(text in object()) {
            if let Some(line) = fast(&text) {
                prop_assert_eq!(Some(line), slow(&text), "{}", text);
            }
        }
    }
}
