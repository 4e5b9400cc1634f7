//! Who may connect and what they may do; all of it opt-in, so that a broker
//! started without these flags behaves as the plain protocol says.
//!
//! - [`tls`]: the TLS listener's configuration and handshake, and the
//!   plain-or-TLS [`Connection`](tls::Connection) a session runs on;
//! - [`users`]: `--users FILE`, password checks, `--hash-password`;
//! - [`permissions`]: which topics a user may subscribe to, publish to and
//!   replay;
//! - [`limits`]: the `--max-connections-per-ip` bound.

pub mod limits;
pub mod permissions;
pub mod tls;
pub mod users;

/// How a broker is reachable, for [`exposure_warning`].
#[derive(Debug, Clone, Copy)]
pub struct Exposure {
    /// The listening address is not a loopback one.
    pub public: bool,
    /// The plain (non-TLS) listener is open.
    pub plain: bool,
    /// The TLS listener is open.
    pub tls: bool,
    /// TLS clients need a certificate signed by `--tls-client-ca`.
    pub client_ca: bool,
    /// `--users` is given: clients must authenticate.
    pub users: bool,
}

/// What an operator should be told at start about who can reach the
/// broker, or `None` when only authenticated clients over TLS (or only
/// this machine) can.
pub fn exposure_warning(exposure: Exposure) -> Option<&'static str> {
    let Exposure {
        public,
        plain,
        tls,
        client_ca,
        users,
    } = exposure;
    if !public {
        return None;
    }
    if !users && (plain || (tls && !client_ca)) {
        return Some(
            "the broker listens on a non-loopback address without authentication \
             (--users): anyone who can reach the port can read and publish every topic",
        );
    }
    if plain {
        return Some(
            "the plain listener is reachable from other machines: passwords and \
             messages cross the network in clear text there (--no-plain leaves only TLS)",
        );
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn warns(public: bool, plain: bool, tls: bool, client_ca: bool, users: bool) -> bool {
        exposure_warning(Exposure {
            public,
            plain,
            tls,
            client_ca,
            users,
        })
        .is_some()
    }

    #[test]
    fn loopback_never_warns() {
        assert!(!warns(false, true, false, false, false));
    }

    #[test]
    fn a_public_broker_warns_unless_only_tls_with_authentication_is_open() {
        assert!(warns(true, true, false, false, false));
        assert!(warns(true, false, true, false, false));
        assert!(warns(true, true, true, false, true));
        assert!(warns(true, true, true, true, false));
        assert!(!warns(true, false, true, false, true));
        assert!(!warns(true, false, true, true, false));
        assert!(!warns(true, false, true, true, true));
    }
}
