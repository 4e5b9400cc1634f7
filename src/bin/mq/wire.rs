//! The connection to the broker: commands out, lines in, and what each
//! incoming line means.

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;

use crate::Failure;

/// Longest incoming line shown in a protocol error, so that a broker that
/// sends something huge does not flood the terminal.
const SHOWN: usize = 120;

/// Connects to `addr` (`HOST:PORT`, trying each address the host resolves
/// to) and splits the connection, so that a caller can send and receive at
/// once: a pipelining publisher must read replies while it writes, or both
/// sides end up waiting on full buffers.
pub async fn connect(addr: &str) -> Result<(Incoming, Outgoing), Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|error| Failure::Io(format!("cannot connect to {addr}: {}", describe(&error))))?;
    // Small commands should leave at once; they are batched by BufWriter.
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    Ok((
        Incoming {
            reader: BufReader::new(read),
            addr: addr.to_owned(),
        },
        Outgoing {
            writer: BufWriter::new(write),
            addr: addr.to_owned(),
        },
    ))
}

/// An I/O error without the "(os error N)" that Rust adds: a person wants to
/// read "Connection refused", the number is noise.
pub fn describe(error: &std::io::Error) -> String {
    let text = error.to_string();
    match error.raw_os_error() {
        Some(code) => text
            .strip_suffix(&format!(" (os error {code})"))
            .map_or_else(|| text.clone(), str::to_owned),
        None => text,
    }
}

/// What the broker sends.
pub struct Incoming {
    reader: BufReader<OwnedReadHalf>,
    addr: String,
}

/// One line from the broker, understood.
#[derive(Debug, PartialEq)]
pub enum Line {
    /// The reply to a command: `Ok` for `{"success": true}`, else the reason.
    Reply(Result<(), String>),
    /// A message of a subscribed topic: the line as sent, and its `msg`.
    Delivery { line: String, msg: String },
}

impl Incoming {
    /// The next line, or `None` when the broker closed the connection.
    pub async fn next(&mut self) -> Result<Option<Line>, Failure> {
        let mut bytes = Vec::new();
        let read = self
            .reader
            .read_until(b'\n', &mut bytes)
            .await
            .map_err(|error| {
                Failure::Io(format!(
                    "connection to {} broke: {}",
                    self.addr,
                    describe(&error)
                ))
            })?;
        if read == 0 || bytes.last() != Some(&b'\n') {
            return Ok(None);
        }
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
        let text = String::from_utf8(bytes).map_err(|_| {
            Failure::Protocol(format!("{} sent a line that is not UTF-8", self.addr))
        })?;
        parse(&text).map(Some).ok_or_else(|| self.unexpected(&text))
    }

    /// The error for a line that is valid but not what the caller waits for
    /// (a delivery where only replies can come, or the reverse).
    pub fn unexpected(&self, line: &str) -> Failure {
        let shown: String = line.chars().take(SHOWN).collect();
        let more = if shown.len() < line.len() { "..." } else { "" };
        Failure::Protocol(format!(
            "{} sent a line an mq broker does not send here: {shown}{more}",
            self.addr
        ))
    }

    /// The error for a connection the broker closed while `mq` still
    /// waited for something.
    pub fn closed(&self, waiting_for: &str) -> Failure {
        Failure::Io(format!(
            "{} closed the connection while {waiting_for}",
            self.addr
        ))
    }
}

/// Understands one line from the broker; `None` for anything that is not a
/// reply or a delivery.
pub fn parse(line: &str) -> Option<Line> {
    let value: Value = serde_json::from_str(line).ok()?;
    let object = value.as_object()?;
    if let Some(success) = object.get("success") {
        return match success.as_bool()? {
            true => Some(Line::Reply(Ok(()))),
            false => {
                let reason = object.get("reason").and_then(Value::as_str);
                let reason = reason.unwrap_or("the broker gave no reason");
                Some(Line::Reply(Err(reason.to_owned())))
            }
        };
    }
    if object.get("command").and_then(Value::as_str) != Some("send") {
        return None;
    }
    let msg = object.get("msg").and_then(Value::as_str)?;
    Some(Line::Delivery {
        line: line.to_owned(),
        msg: msg.to_owned(),
    })
}

/// What `mq` sends: commands, buffered until [`Outgoing::flush`].
pub struct Outgoing {
    writer: BufWriter<OwnedWriteHalf>,
    addr: String,
}

impl Outgoing {
    /// Queues one command line.
    pub async fn send(&mut self, command: &Value) -> Result<(), Failure> {
        let mut line = command.to_string();
        line.push('\n');
        let written = self.writer.write_all(line.as_bytes()).await;
        written.map_err(|error| self.broke(&error))
    }

    /// Sends everything queued.
    pub async fn flush(&mut self) -> Result<(), Failure> {
        let flushed = self.writer.flush().await;
        flushed.map_err(|error| self.broke(&error))
    }

    fn broke(&self, error: &std::io::Error) -> Failure {
        Failure::Io(format!(
            "connection to {} broke: {}",
            self.addr,
            describe(error)
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::{parse, Line};

    #[test]
    fn replies_and_deliveries_are_told_apart() {
        assert_eq!(parse(r#"{"success": true}"#), Some(Line::Reply(Ok(()))));
        assert_eq!(
            parse(r#"{"success": false, "reason": "Line too long"}"#),
            Some(Line::Reply(Err("Line too long".to_owned())))
        );
        let line =
            r#"{"command": "send", "topic": "t", "msg": "hi", "delivery": "all", "index": 0}"#;
        assert_eq!(
            parse(line),
            Some(Line::Delivery {
                line: line.to_owned(),
                msg: "hi".to_owned()
            })
        );
    }

    #[test]
    fn anything_else_is_not_the_protocol() {
        for line in [
            "HTTP/1.1 400 Bad Request",
            "[]",
            r#"{"success": "yes"}"#,
            r#"{"command": "subscribe", "topic": "t"}"#,
            r#"{"command": "send", "topic": "t", "msg": 7}"#,
        ] {
            assert_eq!(parse(line), None, "{line}");
        }
    }
}
