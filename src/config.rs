//! Settings of a running broker, with the defaults the existing servers use.

/// Port when none is given, as the existing servers.
pub const DEFAULT_PORT: u16 = 7000;
/// Messages kept per topic for replay when no size is given.
pub const DEFAULT_CACHE_SIZE: usize = 100;
/// Longest accepted line, without its line ending.
pub const DEFAULT_MAX_LINE: usize = 1024 * 1024;
/// Bytes a client may owe before it is cut off as a slow consumer.
pub const DEFAULT_MAX_PENDING: usize = 64 * 1024 * 1024;
/// Open connections before new ones are turned away.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100_000;

/// Everything a broker needs besides its listening socket.
#[derive(Debug, Clone)]
pub struct Config {
    /// Messages cached per topic; 0 disables the cache.
    pub cache_size: usize,
    /// Threads (actix arbiters) that run sessions and topics.
    pub workers: usize,
    pub limits: Limits,
}

/// The bounds that keep one client from hurting the others.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_line: usize,
    pub max_pending: usize,
    pub max_connections: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            cache_size: DEFAULT_CACHE_SIZE,
            workers: default_workers(),
            limits: Limits::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_line: DEFAULT_MAX_LINE,
            max_pending: DEFAULT_MAX_PENDING,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

/// One worker per core the process may use.
pub fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
