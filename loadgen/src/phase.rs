//! Where a measured run stands. The driver in `scenario` moves it forward;
//! every peer's reading and sending sides watch it. It has a module of its
//! own so that `peer` and `publish`, which both watch it, need not import
//! each other for it.

/// Where a run stands; every peer watches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Publish and receive.
    Run,
    /// Stop publishing (the server stalled); keep receiving.
    StopSending,
    /// Stop everything and report.
    Stop,
}
