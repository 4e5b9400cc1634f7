//! What travels through Redis, decoded: the records a publish script
//! publishes on a topic's channel, and the entries of a topic's cache. Pure
//! functions over bytes Redis sent, so a malformed payload is an error the
//! caller logs, never a panic.

use bytes::Bytes;

/// One message as published on a topic's channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub index: u64,
    /// `None` for `delivery: "all"`; for `one`, the node that delivers it.
    pub target: Option<u64>,
    /// The sender's `cache`: whether a `one` nobody takes waits in the cache.
    pub cache: bool,
    /// The delivered line, byte for byte what the single server sends.
    pub line: Bytes,
}

/// A cached message, as a subscribe's replay returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub index: u64,
    /// A `delivery: "one"` message (the replay that returned it consumed it).
    pub one: bool,
    pub line: Bytes,
}

/// Decodes a channel payload: `INDEX TARGET CACHE LENGTH\n` then LENGTH bytes of
/// line, repeated (see `common.lua` `record`).
pub fn parse_records(payload: &Bytes) -> Result<Vec<Record>, &'static str> {
    let mut records = Vec::new();
    let mut at = 0;
    while at < payload.len() {
        let header_end = memchr::memchr(b'\n', &payload[at..])
            .map(|n| at + n)
            .ok_or("record without a header")?;
        let header = std::str::from_utf8(&payload[at..header_end]).map_err(|_| "bad header")?;
        let mut fields = header.split(' ');
        let index = number(fields.next())?;
        let target = match fields.next() {
            Some("-") => None,
            other => Some(number(other)?),
        };
        let cache = match fields.next() {
            Some("1") => true,
            Some("0") => false,
            _ => return Err("bad cache flag"),
        };
        let len = usize::try_from(number(fields.next())?).map_err(|_| "bad length")?;
        let start = header_end + 1;
        let end = start.checked_add(len).ok_or("bad length")?;
        if end > payload.len() {
            return Err("truncated record");
        }
        records.push(Record {
            index,
            target,
            cache,
            line: payload.slice(start..end),
        });
        at = end;
    }
    Ok(records)
}

/// Decodes a cache entry: `a` or `o`, the index, a space, the line.
pub fn parse_entry(entry: Bytes) -> Result<Entry, &'static str> {
    let one = match entry.first() {
        Some(b'a') => false,
        Some(b'o') => true,
        _ => return Err("bad entry kind"),
    };
    let space = memchr::memchr(b' ', &entry).ok_or("entry without a line")?;
    let index = std::str::from_utf8(&entry[1..space]).map_err(|_| "bad index")?;
    Ok(Entry {
        index: number(Some(index))?,
        one,
        line: entry.slice(space + 1..),
    })
}

fn number(field: Option<&str>) -> Result<u64, &'static str> {
    field
        .and_then(|f| f.parse().ok())
        .ok_or("bad number in a record")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_with_any_bytes_in_the_line() {
        let line_a = "{\"msg\": \"a\\nb 3 4\"}\r\n";
        let payload = format!("7 - 1 {}\n{line_a}8 42 0 3\nxyz", line_a.len());
        let records = parse_records(&Bytes::from(payload)).expect("valid");
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].index, 7);
        assert_eq!(records[0].target, None);
        assert_eq!(&records[0].line[..], line_a.as_bytes());
        assert_eq!(records[1].target, Some(42));
        assert!(records[0].cache && !records[1].cache);
        assert_eq!(&records[1].line[..], b"xyz");
    }

    #[test]
    fn malformed_payloads_are_errors() {
        for bad in [
            "7 - 1 10\nshort",
            "x - 1 1\na",
            "7 - 1 1",
            "7 q 1 1\na",
            "7 - x 1\na",
        ] {
            assert!(parse_records(&Bytes::from(bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn entries_carry_their_kind_and_index() {
        let entry = parse_entry(Bytes::from_static(b"o12 line with spaces")).expect("valid");
        assert_eq!((entry.index, entry.one), (12, true));
        assert_eq!(&entry.line[..], b"line with spaces");
        assert!(parse_entry(Bytes::from_static(b"x1 l")).is_err());
        assert!(parse_entry(Bytes::from_static(b"a1")).is_err());
    }
}
