//! Parsing: one framed line in, a [`Line`] or a [`ProtocolError`] out.
//!
//! Parsing is strict in the way the protocol asks: a command's key set must be
//! exact and each value must have exactly the right JSON type. A key given twice
//! keeps its last value, like most JSON parsers. A line that fails the strict
//! parse is parsed again as untyped JSON only to pick the right error string,
//! so the common path reads each line once. The commonest shape of all, a
//! flat object of plain strings, is read by hand ([`flat`]) and everything
//! else by serde_json.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde::Deserialize;
use serde_json::value::RawValue;

use super::reply::ProtocolError;

mod flat;

/// One line of client input after framing.
#[derive(Debug, PartialEq, Eq)]
pub enum Line<'a> {
    /// Empty after trimming: no reply.
    Empty,
    /// `quit`: flush and close, no reply.
    Quit,
    /// A valid command, to be carried out and answered with
    /// [`OK`](super::OK).
    Command(Command<'a>),
    /// Extension: `{"command": "auth", "user": U, "password": P}`, which
    /// names no topic; meaningful only when the broker has `--users`.
    Auth(Auth<'a>),
}

/// The credentials of an `auth` line.
#[derive(Debug, PartialEq, Eq)]
pub struct Auth<'a> {
    pub user: Cow<'a, str>,
    pub password: Password<'a>,
}

/// A password, whose `Debug` does not show it, so that no log line or panic
/// message can carry one.
#[derive(PartialEq, Eq)]
pub struct Password<'a>(pub Cow<'a, str>);

impl fmt::Debug for Password<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

/// A valid command. Strings borrow from the input line where they need no
/// unescaping, so the common `send` allocates nothing while parsing.
#[derive(Debug, PartialEq, Eq)]
pub enum Command<'a> {
    Subscribe(Subscribe<'a>),
    Unsubscribe { topic: Cow<'a, str> },
    Send(Send<'a>),
}

impl Command<'_> {
    /// The topic every command names.
    pub fn topic(&self) -> &str {
        match self {
            Command::Subscribe(s) => &s.topic,
            Command::Unsubscribe { topic } => topic,
            Command::Send(s) => &s.topic,
        }
    }
}

#[derive(Debug, PartialEq, Eq)]
pub struct Subscribe<'a> {
    pub topic: Cow<'a, str>,
    /// Replay only cached messages with a greater index; -1 (the default) replays all.
    pub last_seen: i64,
    /// `false` skips the replay entirely.
    pub cache: bool,
}

#[derive(Debug, PartialEq, Eq)]
pub struct Send<'a> {
    pub topic: Cow<'a, str>,
    pub msg: Cow<'a, str>,
    pub delivery: Delivery,
    /// Kept as given (or absent) because the delivered line carries it along.
    pub cache: Option<bool>,
    /// The sender's object as it came, without its closing brace, when it
    /// was read by the flat path (plain strings, every key once): the
    /// delivered line is then this text with the index added, since the
    /// protocol delivers "the sender's command object with `index`
    /// added", and nothing is serialized again. `None` for a line serde
    /// read, whose strings are written out afresh.
    pub verbatim: Option<&'a str>,
}

/// How many subscribers receive a `send`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    All,
    One,
}

impl Delivery {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Delivery::All => "all",
            Delivery::One => "one",
        }
    }
}

/// Classifies one framed line (without its `\n`).
pub fn parse_line(raw: &[u8]) -> Result<Line<'_>, ProtocolError> {
    let text = std::str::from_utf8(raw).map_err(|_| ProtocolError::NotUtf8)?;
    let text = text.trim();
    if text.is_empty() {
        return Ok(Line::Empty);
    }
    if text == "quit" {
        return Ok(Line::Quit);
    }
    let fields = match flat::read(text) {
        Some(fields) => Ok(fields),
        None => parse_fields(text).or_else(|_| parse_fields_deep(text)),
    };
    match fields {
        Ok(fields) => fields.into_line().ok_or(ProtocolError::Malformed),
        Err(_) if is_json(text) => Err(ProtocolError::Malformed),
        Err(_) => Err(ProtocolError::NotJson),
    }
}

/// Whether `text` is one JSON value, however deeply nested: the nesting only
/// costs heap (via `serde_stacker`), never the thread's stack.
fn is_json(text: &str) -> bool {
    let mut json = serde_json::Deserializer::from_str(text);
    json.disable_recursion_limit();
    let value = IgnoredAny::deserialize(serde_stacker::Deserializer::new(&mut json));
    value.is_ok() && json.end().is_ok()
}

/// The keys a command may have, each holding the last value given for it.
/// A value of the wrong type is kept as such rather than failing the parse,
/// because a later value for the same key may still make the command valid.
#[derive(Default)]
struct Fields<'a> {
    command: Option<Value<'a>>,
    topic: Option<Value<'a>>,
    msg: Option<Value<'a>>,
    delivery: Option<Value<'a>>,
    /// `None` inside: present but not an integer.
    last_seen: Option<Option<i64>>,
    cache: Option<Value<'a>>,
    user: Option<Value<'a>>,
    password: Option<Value<'a>>,
    /// Set by the flat path only; see [`Send::verbatim`].
    verbatim: Option<&'a str>,
}

/// A JSON value reduced to what a command can use.
enum Value<'a> {
    Str(Cow<'a, str>),
    Bool(bool),
    Other,
}

impl<'a> Value<'a> {
    fn into_str(self) -> Option<Cow<'a, str>> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    fn into_bool(self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(b),
            _ => None,
        }
    }
}

impl<'a> Fields<'a> {
    fn into_line(self) -> Option<Line<'a>> {
        let Fields {
            command,
            topic,
            msg,
            delivery,
            last_seen,
            cache,
            user,
            password,
            verbatim,
        } = self;
        let command = command?.into_str()?;
        if command == "auth" {
            if topic.is_some()
                || msg.is_some()
                || delivery.is_some()
                || last_seen.is_some()
                || cache.is_some()
            {
                return None;
            }
            return Some(Line::Auth(Auth {
                user: user?.into_str()?,
                password: Password(password?.into_str()?),
            }));
        }
        if user.is_some() || password.is_some() {
            return None;
        }
        let topic = topic?.into_str()?;
        let cache = match cache {
            Some(value) => Some(value.into_bool()?),
            None => None,
        };
        let last_seen = match last_seen {
            Some(value) => Some(value?),
            None => None,
        };
        let command = match command.as_ref() {
            "subscribe" if msg.is_none() && delivery.is_none() => {
                Some(Command::Subscribe(Subscribe {
                    topic,
                    last_seen: last_seen.unwrap_or(-1),
                    cache: cache.unwrap_or(true),
                }))
            }
            "unsubscribe"
                if msg.is_none()
                    && delivery.is_none()
                    && last_seen.is_none()
                    && cache.is_none() =>
            {
                Some(Command::Unsubscribe { topic })
            }
            "send" if last_seen.is_none() => {
                let delivery = match delivery?.into_str()?.as_ref() {
                    "all" => Delivery::All,
                    "one" => Delivery::One,
                    _ => return None,
                };
                Some(Command::Send(Send {
                    topic,
                    msg: msg?.into_str()?,
                    delivery,
                    cache,
                    verbatim,
                }))
            }
            _ => None,
        };
        command.map(Line::Command)
    }
}

/// Reads the command keys of one JSON object. A line that fails this fast
/// path (an unknown key, a value nested deeper than serde_json's default
/// limit) is read again by [`parse_fields_deep`] before it is judged.
fn parse_fields(text: &str) -> serde_json::Result<Fields<'_>> {
    serde_json::from_str(text)
}

/// Like [`parse_fields`] with no nesting limit; nesting costs heap, not stack.
fn parse_fields_deep(text: &str) -> serde_json::Result<Fields<'_>> {
    let mut json = serde_json::Deserializer::from_str(text);
    json.disable_recursion_limit();
    let fields = Fields::deserialize(serde_stacker::Deserializer::new(&mut json))?;
    json.end()?;
    Ok(fields)
}

impl<'de> Deserialize<'de> for Fields<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(FieldsVisitor)
    }
}

struct FieldsVisitor;

impl<'de> Visitor<'de> for FieldsVisitor {
    type Value = Fields<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a command object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::default();
        while let Some(key) = map.next_key::<Value>()? {
            let Value::Str(key) = key else {
                return Err(de::Error::custom("a key is a string"));
            };
            match key.as_ref() {
                "command" => fields.command = Some(map.next_value()?),
                "topic" => fields.topic = Some(map.next_value()?),
                "msg" => fields.msg = Some(map.next_value()?),
                "delivery" => fields.delivery = Some(map.next_value()?),
                "last_seen" => {
                    let raw = map.next_value::<&RawValue>()?;
                    fields.last_seen = Some(parse_integer(raw.get()));
                }
                "cache" => fields.cache = Some(map.next_value()?),
                "user" => fields.user = Some(map.next_value()?),
                "password" => fields.password = Some(map.next_value()?),
                _ => return Err(de::Error::custom("unknown key")),
            }
        }
        Ok(fields)
    }
}

/// A JSON number written without fraction or exponent that fits in an `i64`,
/// read from its text: `-0` is the integer 0 (serde_json would read it as a
/// float), while `2.0` and `1e2` are not integers.
fn parse_integer(text: &str) -> Option<i64> {
    let digits = text.strip_prefix('-').unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

impl<'de> Deserialize<'de> for Value<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ValueVisitor)
    }
}

/// Keeps strings (borrowed from the input unless they had escapes; serde's
/// own `Cow<str>` always copies) and booleans, and skips anything else.
struct ValueVisitor;

impl<'de> Visitor<'de> for ValueVisitor {
    type Value = Value<'de>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Value::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Value::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Value::Str(Cow::Owned(v)))
    }

    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Value::Other)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Value::Other)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(line: &str) -> Command<'_> {
        match parse_line(line.as_bytes()) {
            Ok(Line::Command(c)) => c,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    fn error(line: &[u8]) -> ProtocolError {
        match parse_line(line) {
            Err(e) => e,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn blank_and_quit_lines() {
        assert_eq!(parse_line(b""), Ok(Line::Empty));
        assert_eq!(parse_line(b" \t\r"), Ok(Line::Empty));
        assert_eq!(parse_line(b"quit"), Ok(Line::Quit));
        assert_eq!(parse_line(b"  quit \r"), Ok(Line::Quit));
        assert_eq!(error(b"quit now"), ProtocolError::NotJson);
    }

    #[test]
    fn subscribe_defaults_and_options() {
        assert_eq!(
            command(r#"{"command": "subscribe", "topic": "foo"}"#),
            Command::Subscribe(Subscribe {
                topic: "foo".into(),
                last_seen: -1,
                cache: true
            })
        );
        assert_eq!(
            command(r#"{"cache": false, "last_seen": 41, "topic": "f", "command": "subscribe"}"#),
            Command::Subscribe(Subscribe {
                topic: "f".into(),
                last_seen: 41,
                cache: false
            })
        );
    }

    #[test]
    fn send_keeps_cache_as_given() {
        let Command::Send(send) = command(
            r#"{"command": "send", "topic": "jobs", "msg": "job 7", "delivery": "one", "cache": false}"#,
        ) else {
            panic!("not a send");
        };
        assert_eq!(send.delivery, Delivery::One);
        assert_eq!(send.cache, Some(false));
        let Command::Send(send) =
            command(r#"{"command": "send", "topic": "t", "msg": "m", "delivery": "all"}"#)
        else {
            panic!("not a send");
        };
        assert_eq!(send.cache, None);
    }

    #[test]
    fn unescaped_strings_are_borrowed() {
        let Command::Send(send) =
            command(r#"{"command": "send", "topic": "t", "msg": "plain", "delivery": "all"}"#)
        else {
            panic!("not a send");
        };
        assert!(matches!(send.msg, Cow::Borrowed("plain")));
        assert_eq!(
            command(r#"{"command": "unsubscribe", "topic": "a\"b\u00e9"}"#).topic(),
            "a\"bé"
        );
    }

    #[test]
    fn last_duplicate_key_wins() {
        assert_eq!(
            command(r#"{"command": "send", "topic": "a", "command": "unsubscribe"}"#),
            Command::Unsubscribe { topic: "a".into() }
        );
    }

    #[test]
    fn a_wrong_typed_value_overridden_by_a_valid_one_counts() {
        assert_eq!(
            command(r#"{"command": 1, "topic": ["x"], "topic": "a", "command": "unsubscribe"}"#),
            Command::Unsubscribe { topic: "a".into() }
        );
        assert_eq!(
            command(
                r#"{"command": "subscribe", "topic": "a", "last_seen": 2.5, "last_seen": 3, "cache": {}, "cache": false}"#
            ),
            Command::Subscribe(Subscribe {
                topic: "a".into(),
                last_seen: 3,
                cache: false
            })
        );
        assert_eq!(
            error(br#"{"command": "unsubscribe", "topic": "a", "topic": 5}"#),
            ProtocolError::Malformed
        );
    }

    #[test]
    fn escaped_keys_are_recognised() {
        assert_eq!(
            command(r#"{"comm\u0061nd": "unsubscribe", "topic": "x"}"#).topic(),
            "x"
        );
    }

    #[test]
    fn error_kinds() {
        assert_eq!(error(b"\xff\xfe"), ProtocolError::NotUtf8);
        assert_eq!(error(b"{\"topic\": \"\xc0\xaf\"}"), ProtocolError::NotUtf8);
        assert_eq!(error(b"hello"), ProtocolError::NotJson);
        assert_eq!(error(b"{\"command\": "), ProtocolError::NotJson);
        assert_eq!(error(b"{\"foo\": 1,"), ProtocolError::NotJson);
        assert_eq!(error(b"{} {}"), ProtocolError::NotJson);
        assert_eq!(error(b"[1, 2]"), ProtocolError::Malformed);
        assert_eq!(error(b"42"), ProtocolError::Malformed);
        assert_eq!(error(b"null"), ProtocolError::Malformed);
        assert_eq!(error(b"{}"), ProtocolError::Malformed);
    }

    #[test]
    fn malformed_commands() {
        for line in [
            r#"{"command": "publish", "topic": "a"}"#,
            r#"{"command": "subscribe"}"#,
            r#"{"command": "subscribe", "topic": 5}"#,
            r#"{"command": "subscribe", "topic": null}"#,
            r#"{"command": "subscribe", "topic": "a", "extra": 1}"#,
            r#"{"command": "subscribe", "topic": "a", "last_seen": 2.0}"#,
            r#"{"command": "subscribe", "topic": "a", "last_seen": 1e2}"#,
            r#"{"command": "subscribe", "topic": "a", "last_seen": true}"#,
            r#"{"command": "subscribe", "topic": "a", "last_seen": "3"}"#,
            r#"{"command": "subscribe", "topic": "a", "last_seen": 9223372036854775808}"#,
            r#"{"command": "subscribe", "topic": "a", "cache": 1}"#,
            r#"{"command": "subscribe", "topic": "a", "msg": "m"}"#,
            r#"{"command": "subscribe", "topic": "a", "delivery": "all"}"#,
            r#"{"command": "unsubscribe", "topic": "a", "cache": true}"#,
            r#"{"command": "unsubscribe", "topic": "a", "last_seen": 1}"#,
            r#"{"command": "send", "topic": "a", "msg": "m"}"#,
            r#"{"command": "send", "topic": "a", "delivery": "all"}"#,
            r#"{"command": "send", "msg": "m", "delivery": "all"}"#,
            r#"{"command": "send", "topic": "a", "msg": "m", "delivery": "some"}"#,
            r#"{"command": "send", "topic": "a", "msg": 1, "delivery": "all"}"#,
            r#"{"command": "send", "topic": "a", "msg": "m", "delivery": "all", "last_seen": 1}"#,
            r#"{"command": "send", "topic": "a", "msg": "m", "delivery": "all", "cache": "no"}"#,
            r#"{"command": ["send"], "topic": "a"}"#,
            r#"{"Command": "subscribe", "topic": "a"}"#,
        ] {
            assert_eq!(error(line.as_bytes()), ProtocolError::Malformed, "{line}");
        }
    }

    fn auth(line: &str) -> Auth<'_> {
        match parse_line(line.as_bytes()) {
            Ok(Line::Auth(auth)) => auth,
            other => panic!("{line:?} gave {other:?}"),
        }
    }

    #[test]
    fn auth_lines() {
        let a = auth(r#"{"command": "auth", "user": "alice", "password": "p\u00e4ss"}"#);
        assert_eq!(a.user, "alice");
        assert_eq!(a.password, Password("päss".into()));
        assert_eq!(
            auth(r#"{"password": "", "user": "", "command": "auth"}"#).user,
            ""
        );
        assert!(!format!("{a:?}").contains("päss"));
        for line in [
            r#"{"command": "auth", "user": "a"}"#,
            r#"{"command": "auth", "password": "p"}"#,
            r#"{"command": "auth", "user": 1, "password": "p"}"#,
            r#"{"command": "auth", "user": "a", "password": null}"#,
            r#"{"command": "auth", "user": "a", "password": "p", "topic": "t"}"#,
            r#"{"command": "auth", "user": "a", "password": "p", "cache": true}"#,
            r#"{"command": "subscribe", "topic": "a", "user": "u"}"#,
            r#"{"command": "send", "topic": "a", "msg": "m", "delivery": "all", "password": "p"}"#,
            r#"{"command": "unsubscribe", "topic": "a", "user": "u", "password": "p"}"#,
            r#"{"command": "Auth", "user": "a", "password": "p"}"#,
        ] {
            assert_eq!(error(line.as_bytes()), ProtocolError::Malformed, "{line}");
        }
    }

    #[test]
    fn integers_at_the_edges() {
        for (text, want) in [("-9223372036854775808", i64::MIN), ("-0", 0), ("-5", -5)] {
            let line = format!(r#"{{"command": "subscribe", "topic": "a", "last_seen": {text}}}"#);
            let Command::Subscribe(s) = command(&line) else {
                panic!("not a subscribe");
            };
            assert_eq!(s.last_seen, want);
        }
    }

    #[test]
    fn numbers_beyond_f64_are_still_json() {
        assert_eq!(
            error(br#"{"command": "subscribe", "topic": "a", "last_seen": 1e400}"#),
            ProtocolError::Malformed
        );
        assert_eq!(error(b"[1e400, -1e400]"), ProtocolError::Malformed);
        assert_eq!(
            error(br#"{"command": "subscribe", "topic": "a", "last_seen": 123456789012345678901234567890}"#),
            ProtocolError::Malformed
        );
    }

    #[test]
    fn deeply_nested_json_is_malformed_not_a_crash() {
        let depth = 200_000;
        let line = format!("{}{}", "[".repeat(depth), "]".repeat(depth));
        assert_eq!(error(line.as_bytes()), ProtocolError::Malformed);
        let line = "[".repeat(depth);
        assert_eq!(error(line.as_bytes()), ProtocolError::NotJson);
    }
}
