//! The read side of a connection: its lines, bounded in space by the codec
//! (`max_line`) and here in time (`line_timeout`) and in the broker's memory
//! budget.
//!
//! A client that starts a line and never finishes it would otherwise hold
//! its read buffer forever; one that sends nothing at all holds only an
//! empty buffer and may idle as long as it likes (telnet users do).

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::Stream;
use tokio::io::AsyncRead;
use tokio::time::Sleep;
use tokio_util::codec::FramedRead;

use crate::codec::{Framed, LineCodec};
use crate::config::READ_BUFFER;
use crate::memory::Memory;

/// Lines from one connection, as a stream for its session.
pub struct Lines<R> {
    framed: FramedRead<R, LineCodec>,
    line_timeout: Duration,
    /// Runs while a line is unfinished; started by its first byte.
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: bool,
    memory: Arc<Memory>,
    /// Bytes of read buffer counted in `memory`.
    counted: usize,
}

impl<R: AsyncRead + Unpin> Lines<R> {
    pub fn new(read: R, max_line: usize, line_timeout: Duration, memory: Arc<Memory>) -> Self {
        Lines {
            framed: FramedRead::with_capacity(read, LineCodec::new(max_line), READ_BUFFER),
            line_timeout,
            deadline: None,
            timed_out: false,
            memory,
            counted: 0,
        }
    }

    fn count_buffer(&mut self) {
        let now = self.framed.read_buffer().capacity();
        self.memory.set(&mut self.counted, now);
    }
}

impl<R: AsyncRead + Unpin> Stream for Lines<R> {
    type Item = io::Result<Framed>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.timed_out {
            return Poll::Ready(None);
        }
        let polled = Pin::new(&mut this.framed).poll_next(cx);
        this.count_buffer();
        if polled.is_ready() {
            // A new line starts its own clock.
            this.deadline = None;
            return polled;
        }
        if this.framed.read_buffer().is_empty() {
            this.deadline = None;
            return Poll::Pending;
        }
        let timeout = this.line_timeout;
        let deadline = this
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => {
                this.timed_out = true;
                Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "a line stayed unfinished for longer than --line-timeout",
                ))))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<R> Drop for Lines<R> {
    fn drop(&mut self) {
        self.memory.sub(self.counted);
    }
}
