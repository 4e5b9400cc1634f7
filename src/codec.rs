//! Line framing for the client side of a connection.
//!
//! A too-long line is an *item* ([`Framed::TooLong`]), not a decoder error:
//! with `tokio-util` a decoder `Err` ends the stream, and a bad line must be
//! answered, never end the session.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use crate::config::MAX_READ_BUFFER;

/// One frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Framed {
    /// A complete line without its `\n` (a `\r` before it is left for the
    /// parser, which trims white space anyway).
    Line(BytesMut),
    /// A line over the limit. Reported as soon as the limit is passed; the rest
    /// of that line, up to its `\n`, is discarded without being buffered.
    TooLong,
}

/// Splits the input on `\n` with a bound on line length, so a client can never
/// make the server buffer more than `max_line` bytes of one line.
#[derive(Debug)]
pub struct LineCodec {
    max_line: usize,
    /// Where to resume the search for `\n`, so a line arriving in many reads
    /// is scanned once, not once per read.
    scanned: usize,
    /// Inside an over-long line whose `TooLong` was already emitted.
    discarding: bool,
}

impl LineCodec {
    /// `max_line` counts the bytes before the line ending (`\n` or `\r\n`).
    pub fn new(max_line: usize) -> Self {
        LineCodec {
            max_line,
            scanned: 0,
            discarding: false,
        }
    }
}

impl Decoder for LineCodec {
    type Item = Framed;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, Self::Error> {
        loop {
            let Some(offset) = memchr::memchr(b'\n', &buf[self.scanned..]) else {
                if self.discarding {
                    buf.clear();
                    self.scanned = 0;
                    return Ok(None);
                }
                // One byte of slack for a `\r` that may precede the `\n`.
                if buf.len() > self.max_line + 1 {
                    buf.clear();
                    self.scanned = 0;
                    self.discarding = true;
                    return Ok(Some(Framed::TooLong));
                }
                self.scanned = buf.len();
                grow_if_full(buf);
                return Ok(None);
            };
            let newline = self.scanned + offset;
            self.scanned = 0;
            let mut line = buf.split_to(newline + 1);
            if self.discarding {
                self.discarding = false;
                continue;
            }
            line.truncate(newline);
            let content = if line.last() == Some(&b'\r') {
                newline - 1
            } else {
                newline
            };
            if content > self.max_line {
                return Ok(Some(Framed::TooLong));
            }
            return Ok(Some(Framed::Line(line)));
        }
    }

    /// Bytes after the last `\n` when the client closes are ignored.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, Self::Error> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.advance(buf.len());
        }
        Ok(frame)
    }
}

/// A connection starts with a small read buffer, so idle ones cost little;
/// one whose last read filled the buffer is sending a lot, so the buffer
/// doubles (up to [`MAX_READ_BUFFER`]) and each read takes more lines.
fn grow_if_full(buf: &mut BytesMut) {
    let capacity = buf.capacity();
    if buf.len() == capacity && capacity < MAX_READ_BUFFER {
        buf.reserve(capacity.max(64));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(codec: &mut LineCodec, buf: &mut BytesMut) -> Vec<Framed> {
        let mut out = Vec::new();
        while let Some(frame) = codec.decode(buf).unwrap() {
            out.push(frame);
        }
        out
    }

    fn line(s: &str) -> Framed {
        Framed::Line(BytesMut::from(s))
    }

    #[test]
    fn splits_on_newline_keeping_cr() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from("a\nbb\r\n\nc");
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            vec![line("a"), line("bb\r"), line("")]
        );
        assert_eq!(&buf[..], b"c");
    }

    #[test]
    fn a_line_split_across_reads_is_one_line() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::new();
        for chunk in ["{\"com", "mand\"", ": 1}", "\r", "\n"] {
            buf.extend_from_slice(chunk.as_bytes());
            let frames = decode_all(&mut codec, &mut buf);
            if chunk == "\n" {
                assert_eq!(frames, vec![line("{\"command\": 1}\r")]);
            } else {
                assert!(frames.is_empty());
            }
        }
    }

    #[test]
    fn limit_counts_content_without_line_ending() {
        let mut codec = LineCodec::new(3);
        let mut buf = BytesMut::from("abc\r\nabc\nabcd\nab\n");
        assert_eq!(
            decode_all(&mut codec, &mut buf),
            vec![line("abc\r"), line("abc"), Framed::TooLong, line("ab")]
        );
    }

    #[test]
    fn over_long_line_is_reported_early_and_discarded_to_newline() {
        let mut codec = LineCodec::new(4);
        let mut buf = BytesMut::from("abcdefgh");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![Framed::TooLong]);
        assert!(buf.is_empty(), "discarded bytes are not kept");
        buf.extend_from_slice(b"ijklmnop");
        assert!(decode_all(&mut codec, &mut buf).is_empty());
        buf.extend_from_slice(b"qr\nok\n");
        assert_eq!(decode_all(&mut codec, &mut buf), vec![line("ok")]);
    }

    #[test]
    fn a_full_buffer_grows_for_the_next_read() {
        let mut codec = LineCodec::new(1 << 20);
        let mut buf = BytesMut::with_capacity(512);
        buf.extend_from_slice(&[b'a'; 512]);
        assert_eq!(codec.decode(&mut buf).unwrap(), None);
        assert!(buf.capacity() >= 1024);
    }

    #[test]
    fn trailing_bytes_at_eof_are_ignored() {
        let mut codec = LineCodec::new(100);
        let mut buf = BytesMut::from("a\npartial");
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), Some(line("a")));
        assert_eq!(codec.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }
}
