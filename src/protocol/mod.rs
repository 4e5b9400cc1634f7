//! The wire protocol as pure functions: one line in, a [`Line`] or a
//! [`ProtocolError`] out; one accepted `send`, one delivered line out.
//!
//! Nothing here does I/O, so every rule of `docs/PROTOCOL.md` that concerns a
//! single line can be unit-tested without a socket.
//! - `parse`: a line into a command;
//! - `reply`: the replies, each reason string once;
//! - `delivery`: the line a subscriber receives.

mod delivery;
mod parse;
mod reply;

pub use delivery::DeliveryTemplate;
pub use parse::{parse_line, Auth, Command, Delivery, Line, Password, Send, Subscribe};
pub use reply::{ProtocolError, OK};
