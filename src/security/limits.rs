//! `--max-connections-per-ip`: how many connections one address may hold, so
//! that a single client (or a single host running many) cannot take every
//! slot under `--max-connections` and lock everyone else out.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};

/// Open connections per address. A plain `std` mutex: it is taken twice per
/// connection (accept and close), never across an `.await`, and never on the
/// per-message path.
#[derive(Debug)]
pub struct PerIp {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place under its address's limit, given back when
/// dropped, so no path that ends a connection can forget to release it.
#[derive(Debug)]
pub struct IpSlot {
    limits: Arc<PerIp>,
    ip: IpAddr,
}

impl PerIp {
    pub fn new(max: usize) -> Arc<PerIp> {
        Arc::new(PerIp {
            max,
            open: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, unless it already holds `max`.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<IpSlot> {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(ip).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(IpSlot {
            limits: self.clone(),
            ip,
        })
    }

    /// Connections `ip` holds now.
    pub fn open_from(&self, ip: IpAddr) -> usize {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        open.get(&ip).copied().unwrap_or(0)
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut open = self
            .limits
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.ip) {
            *count -= 1;
            // An address that left costs nothing: the map holds only
            // addresses with open connections.
            if *count == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_address_has_its_own_limit_and_slots_come_back() {
        let limits = PerIp::new(2);
        let a: IpAddr = [127, 0, 0, 1].into();
        let b: IpAddr = [127, 0, 0, 2].into();
        let first = limits.admit(a).expect("first");
        let _second = limits.admit(a).expect("second");
        assert!(limits.admit(a).is_none());
        assert!(limits.admit(b).is_some());
        drop(first);
        assert_eq!(limits.open_from(a), 1);
        assert!(limits.admit(a).is_some());
    }

    #[test]
    fn an_address_that_left_is_forgotten() {
        let limits = PerIp::new(1);
        let a: IpAddr = [10, 0, 0, 1].into();
        drop(limits.admit(a));
        assert!(limits.open.lock().unwrap().is_empty());
    }
}
