//! Line framing for the client side of a connection.
//!
//! A too-long line is an *item* ([`Framed::TooLong`]), not a decoder error:
//! with `tokio-util` a decoder `Err` ends the stream, and a bad line must be
//! answered, never end the session.

use bytes::{Buf, BytesMut};
use tokio_util::codec::Decoder;

use crate::config::{MAX_READ_BUFFER, READ_BUFFER};

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
    reads: ReadRoom,
}

/// How much room the next read gets. A connection starts with a small
/// buffer, so idle ones cost little; one whose read took all the room it
/// had is sending a lot, so its room doubles (up to [`MAX_READ_BUFFER`])
/// and each read takes more lines.
///
/// The room is judged by what the read brought, not by the buffer's
/// capacity: lines are split off the front of the buffer, so its capacity
/// is only what is left behind them, and it is whole again only when the
/// next read reclaims the allocation.
#[derive(Debug)]
struct ReadRoom {
    /// The room every read is given at least.
    room: usize,
    /// The room the last read was given: the spare capacity when the
    /// decoder last asked for more input.
    offered: usize,
    /// Bytes buffered when the decoder last asked for more input.
    left: usize,
    /// Bytes taken off the buffer (as lines, or discarded) since then.
    taken: usize,
}

impl ReadRoom {
    /// For a buffer that starts with [`READ_BUFFER`] of capacity.
    fn new() -> Self {
        ReadRoom {
            room: READ_BUFFER,
            offered: READ_BUFFER,
            left: 0,
            taken: 0,
        }
    }

    /// The decoder needs more input: grows the room if the last read
    /// filled it, and makes sure the next read has it.
    fn ask(&mut self, buf: &mut BytesMut) {
        let read = (self.taken + buf.len()).saturating_sub(self.left);
        if read >= self.offered && self.room < MAX_READ_BUFFER {
            self.room = (self.room * 2).min(MAX_READ_BUFFER);
        }
        buf.reserve(self.room);
        self.offered = buf.capacity() - buf.len();
        self.left = buf.len();
        self.taken = 0;
    }
}

impl LineCodec {
    /// `max_line` counts the bytes before the line ending (`\n` or `\r\n`).
    pub fn new(max_line: usize) -> Self {
        LineCodec {
            max_line,
            scanned: 0,
            discarding: false,
            reads: ReadRoom::new(),
        }
    }

    /// Drops everything buffered, part of a line too long to keep; the
    /// read room counts it as taken, like a line.
    fn discard(&mut self, buf: &mut BytesMut) {
        self.reads.taken += buf.len();
        buf.clear();
        self.scanned = 0;
    }
}

impl Decoder for LineCodec {
    type Item = Framed;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Framed>, Self::Error> {
        loop {
            let Some(offset) = memchr::memchr(b'\n', &buf[self.scanned..]) else {
                if self.discarding {
                    self.discard(buf);
                    self.reads.ask(buf);
                    return Ok(None);
                }
                // One byte of slack for a `\r` that may precede the `\n`.
                if buf.len() > self.max_line + 1 {
                    self.discard(buf);
                    self.discarding = true;
                    return Ok(Some(Framed::TooLong));
                }
                self.scanned = buf.len();
                self.reads.ask(buf);
                return Ok(None);
            };
            let newline = self.scanned + offset;
            self.scanned = 0;
            self.reads.taken += newline + 1;
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

    /// Reads like `FramedRead` does: as much of `input` as the buffer has
    /// room for, then every frame that is complete. Returns the room the
    /// read had.
    fn read_and_decode(
        codec: &mut LineCodec,
        buf: &mut BytesMut,
        input: &mut &[u8],
    ) -> (usize, Vec<Framed>) {
        buf.reserve(1);
        let room = buf.capacity() - buf.len();
        let n = room.min(input.len());
        buf.extend_from_slice(&input[..n]);
        *input = &input[n..];
        (room, decode_all(codec, buf))
    }

    #[test]
    fn a_partial_line_that_fills_the_buffer_grows_it() {
        let mut codec = LineCodec::new(1 << 20);
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let line = vec![b'a'; 3 * READ_BUFFER];
        let mut input = &line[..];
        let (first, _) = read_and_decode(&mut codec, &mut buf, &mut input);
        let (second, _) = read_and_decode(&mut codec, &mut buf, &mut input);
        assert_eq!(first, READ_BUFFER);
        assert!(
            second >= 2 * READ_BUFFER,
            "second read had {second} bytes of room"
        );
    }

    /// Full reads of many short lines, each leaving a partial line behind:
    /// the buffer's capacity after the lines are split off is only that
    /// partial line, yet the room must still grow.
    #[test]
    fn reads_that_fill_the_room_with_lines_double_it_up_to_the_maximum() {
        let mut codec = LineCodec::new(1 << 20);
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        let line = b"{\"command\":\"send\",\"topic\":\"t\",\"message\":\"0123456789\"}\n";
        let input: Vec<u8> = line
            .iter()
            .copied()
            .cycle()
            .take(line.len() * 4000)
            .collect();
        let mut input = &input[..];
        let mut rooms = Vec::new();
        let mut lines = 0;
        while !input.is_empty() {
            let (room, frames) = read_and_decode(&mut codec, &mut buf, &mut input);
            rooms.push(room);
            lines += frames.len();
        }
        assert_eq!(lines, 4000);
        assert_eq!(rooms[0], READ_BUFFER);
        assert!(
            rooms.windows(2).take(5).all(|w| w[1] > w[0]),
            "rooms {rooms:?}"
        );
        let most = *rooms.iter().max().unwrap();
        assert!(
            (MAX_READ_BUFFER - line.len()..=MAX_READ_BUFFER).contains(&most),
            "rooms {rooms:?}"
        );
    }

    /// A client that sends a line at a time never fills its room, so its
    /// buffer stays small.
    #[test]
    fn reads_that_leave_room_keep_the_buffer_small() {
        let mut codec = LineCodec::new(1 << 20);
        let mut buf = BytesMut::with_capacity(READ_BUFFER);
        for _ in 0..100 {
            let mut input = &b"{\"command\":\"subscribe\",\"topic\":\"t\"}\n"[..];
            let (room, frames) = read_and_decode(&mut codec, &mut buf, &mut input);
            assert_eq!(frames.len(), 1);
            assert!(room <= READ_BUFFER, "room {room}");
        }
        assert!(buf.capacity() <= READ_BUFFER);
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
