//! Replies: the success line and every error, each reason string written
//! once, in one table, from which both the reason and its whole reply line
//! are made at compile time.

use std::fmt;

use bytes::Bytes;

/// The reply to every command that was carried out.
pub const OK: &[u8] = b"{\"success\": true}\r\n";

/// Declares [`ProtocolError`] from one table of `Variant => "reason"`.
macro_rules! protocol_errors {
    ($($(#[$doc:meta])* $variant:ident => $reason:literal,)*) => {
        /// Every failure a client can see, each with the exact `reason`
        /// string that clients of the existing servers rely on (and, for our
        /// extensions, the one docs/PROTOCOL.md gives).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub enum ProtocolError {
            $($(#[$doc])* $variant,)*
        }

        impl ProtocolError {
            /// Every error, for tests and documentation.
            pub const ALL: &'static [ProtocolError] = &[$(ProtocolError::$variant,)*];

            pub fn reason(self) -> &'static str {
                match self {
                    $(ProtocolError::$variant => $reason,)*
                }
            }

            /// The whole reply line, built without allocating.
            pub fn reply(self) -> Bytes {
                Bytes::from_static(match self {
                    $(ProtocolError::$variant => concat!(
                        "{\"success\": false, \"reason\": \"", $reason, "\"}\r\n"
                    ).as_bytes(),)*
                })
            }
        }
    };
}

protocol_errors! {
    /// The line is not valid UTF-8.
    NotUtf8 => "Could not decode input as UTF-8",
    /// The line is not one JSON value.
    NotJson => "Could not parse json",
    /// JSON, but not a command: wrong keys or wrongly typed values.
    Malformed => "Malformed json message",
    /// Longer than `--max-line`.
    LineTooLong => "Line too long",
    /// Sent to a connection refused for `--max-connections`.
    TooManyConnections => "Too many connections",
    /// A command could not reach its topic (never expected).
    Internal => "Internal exception",
    /// Extension: a `send` refused because `--max-memory` is reached.
    OutOfMemory => "Server out of memory",
    /// Extension: with `--users`, any command before a successful `auth`.
    AuthenticationRequired => "Authentication required",
    /// Extension: an `auth` whose user or password is wrong.
    AuthenticationFailed => "Authentication failed",
    /// Extension: a command on a topic the user has no permission for.
    PermissionDenied => "Permission denied",
    /// Extension: with `--cluster`, a `send` or `subscribe` Redis did not
    /// take (unreachable, or no answer in time).
    ClusterUnavailable => "Cluster unavailable",
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for ProtocolError {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    #[test]
    fn error_replies_carry_their_reason() {
        for &e in ProtocolError::ALL {
            let reply: Value = serde_json::from_slice(&e.reply()).unwrap();
            assert_eq!(reply, json!({"success": false, "reason": e.reason()}));
            assert!(e.reply().ends_with(b"\r\n"));
        }
        let ok: Value = serde_json::from_slice(OK).unwrap();
        assert_eq!(ok, json!({"success": true}));
    }
}
