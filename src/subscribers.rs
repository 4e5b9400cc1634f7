//! A topic's subscribers in the order they subscribed, with the round-robin
//! cursor for `delivery: "one"`.
//!
//! Kept apart from the actor because the cursor arithmetic on removal (before,
//! at or after the cursor) is where round-robin goes subtly unfair.

/// Subscribers in subscription order; `cursor` is the next to receive a
/// `delivery: "one"` message.
#[derive(Debug)]
pub struct RoundRobin<T> {
    items: Vec<T>,
    cursor: usize,
}

impl<T> Default for RoundRobin<T> {
    fn default() -> Self {
        RoundRobin {
            items: Vec::new(),
            cursor: 0,
        }
    }
}

impl<T> RoundRobin<T> {
    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.items.iter()
    }

    pub fn position(&self, pred: impl FnMut(&T) -> bool) -> Option<usize> {
        self.items.iter().position(pred)
    }

    pub fn get_mut(&mut self, i: usize) -> Option<&mut T> {
        self.items.get_mut(i)
    }

    /// Appends a new subscriber: it is last in round-robin order.
    pub fn push(&mut self, item: T) {
        self.items.push(item);
    }

    /// Removes the subscriber at `i`, keeping the cursor on the subscriber it
    /// pointed at (or the one after it, if that one was removed).
    pub fn remove(&mut self, i: usize) -> T {
        let item = self.items.remove(i);
        if i < self.cursor {
            self.cursor -= 1;
        }
        if self.cursor >= self.items.len() {
            self.cursor = 0;
        }
        item
    }

    /// Keeps the subscribers for which `keep` is true, visiting all in order.
    pub fn retain(&mut self, mut keep: impl FnMut(&T) -> bool) {
        let mut i = 0;
        while i < self.items.len() {
            if keep(&self.items[i]) {
                i += 1;
            } else {
                self.remove(i);
            }
        }
    }

    /// Offers `value` to subscribers in round-robin order until one takes it.
    /// `offer` returns `Err(value)` to pass it on and says whether that
    /// subscriber is gone for good (and so removed). Gives the value back if
    /// no subscriber took it.
    pub fn offer<V>(
        &mut self,
        mut value: V,
        mut offer: impl FnMut(&T, V) -> Result<(), (V, Gone)>,
    ) -> Result<(), V> {
        let mut tries = self.items.len();
        while tries > 0 && !self.items.is_empty() {
            tries -= 1;
            let i = self.cursor % self.items.len();
            match offer(&self.items[i], value) {
                Ok(()) => {
                    self.cursor = (i + 1) % self.items.len();
                    return Ok(());
                }
                Err((back, gone)) => {
                    value = back;
                    if gone.0 {
                        self.cursor = i;
                        self.remove(i);
                    } else {
                        self.cursor = (i + 1) % self.items.len();
                    }
                }
            }
        }
        Err(value)
    }
}

/// Whether a subscriber that refused a value is gone for good.
#[derive(Debug, Clone, Copy)]
pub struct Gone(pub bool);

#[cfg(test)]
mod tests {
    use super::*;

    fn rr(n: u32) -> RoundRobin<u32> {
        let mut r = RoundRobin::default();
        for i in 0..n {
            r.push(i);
        }
        r
    }

    fn next(r: &mut RoundRobin<u32>) -> u32 {
        let mut got = None;
        r.offer((), |&s, ()| {
            got = Some(s);
            Ok(())
        })
        .unwrap();
        got.unwrap()
    }

    #[test]
    fn cycles_in_subscription_order() {
        let mut r = rr(3);
        let order: Vec<_> = (0..7).map(|_| next(&mut r)).collect();
        assert_eq!(order, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn removal_before_cursor_keeps_the_next_subscriber() {
        let mut r = rr(4);
        assert_eq!(next(&mut r), 0);
        assert_eq!(next(&mut r), 1);
        r.remove(0);
        assert_eq!(next(&mut r), 2);
        assert_eq!(next(&mut r), 3);
        assert_eq!(next(&mut r), 1);
    }

    #[test]
    fn removal_at_cursor_moves_to_the_following_subscriber() {
        let mut r = rr(4);
        assert_eq!(next(&mut r), 0);
        r.remove(1);
        assert_eq!(next(&mut r), 2);
    }

    #[test]
    fn removal_of_last_at_cursor_wraps() {
        let mut r = rr(3);
        next(&mut r);
        next(&mut r);
        r.remove(2);
        assert_eq!(next(&mut r), 0);
    }

    #[test]
    fn removal_after_cursor_changes_nothing_before_it() {
        let mut r = rr(4);
        assert_eq!(next(&mut r), 0);
        r.remove(3);
        assert_eq!(next(&mut r), 1);
        assert_eq!(next(&mut r), 2);
        assert_eq!(next(&mut r), 0);
    }

    #[test]
    fn a_gone_subscriber_passes_the_value_on() {
        let mut r = rr(3);
        let mut got = None;
        r.offer((), |&s, ()| {
            if s == 0 {
                Err(((), Gone(true)))
            } else {
                got = Some(s);
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(got, Some(1));
        assert_eq!(r.iter().copied().collect::<Vec<_>>(), [1, 2]);
        assert_eq!(next(&mut r), 2);
    }

    #[test]
    fn a_busy_subscriber_is_skipped_but_kept() {
        let mut r = rr(2);
        let mut got = None;
        r.offer((), |&s, ()| {
            if s == 0 {
                Err(((), Gone(false)))
            } else {
                got = Some(s);
                Ok(())
            }
        })
        .unwrap();
        assert_eq!(got, Some(1));
        assert_eq!(r.len(), 2);
    }

    #[test]
    fn nobody_takes_it() {
        let mut r = rr(2);
        assert_eq!(r.offer(7, |_, v| Err((v, Gone(true)))), Err(7));
        assert!(r.is_empty());
        assert_eq!(r.offer(8, |_, _| Ok(())), Err(8));
    }

    #[test]
    fn retain_keeps_cursor_on_the_same_subscriber() {
        let mut r = rr(5);
        next(&mut r);
        next(&mut r);
        r.retain(|s| *s != 0 && *s != 3);
        assert_eq!(next(&mut r), 2);
        assert_eq!(next(&mut r), 4);
        assert_eq!(next(&mut r), 1);
    }
}
