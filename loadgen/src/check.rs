//! Correctness bookkeeping: what each receiver was owed and what it got.
//!
//! Every delivery is classified as it arrives; what never arrived is counted
//! once publishing has ended and the publishers' final counts are known. A
//! correct run costs a few integers per receiver and publisher, so the checks
//! stay on at full load instead of being sampled.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};

use serde::Serialize;

use crate::payload::Payload;

/// How many violations are kept word for word; the rest are only counted, so
/// a broken server cannot flood the report.
pub const EXAMPLES_KEPT: usize = 5;

/// Most gap ranges one stream keeps before it writes the oldest off as
/// missing, which bounds memory against a server that drops every other
/// message.
const MAX_GAPS: usize = 10_000;

/// The kinds of broken promise loadgen detects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// An acknowledged message that a receiver was owed never arrived.
    Missing,
    /// A message arrived at a receiver (or, for `queue`, at any worker) twice.
    Duplicate,
    /// A message arrived after a later one: a lower index, or a lower
    /// sequence number from the same publisher.
    OutOfOrder,
    /// A message arrived where it was not owed: wrong topic, wrong receiver,
    /// another run's message, or any delivery to a connection that should get
    /// none.
    Misrouted,
    /// A line that is not what was sent: unparsable, altered message text,
    /// a wrong index, or a message number that was never sent.
    Corrupt,
    /// The server answered a valid command with `"success": false`.
    Refused,
    /// A command that never got its reply.
    Unacked,
    /// An idle connection that did not answer at the end of `conns`.
    Unresponsive,
}

/// Counts of every violation seen, and the first few in words.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize)]
pub struct Violations {
    pub missing: u64,
    pub duplicate: u64,
    pub out_of_order: u64,
    pub misrouted: u64,
    pub corrupt: u64,
    pub refused: u64,
    pub unacked: u64,
    pub unresponsive: u64,
    /// The first few violations described, in the order they were seen.
    pub first: Vec<String>,
}

impl Violations {
    /// Counts `count` violations of one kind; `detail` is only called while
    /// fewer than [`EXAMPLES_KEPT`] are kept, so it costs nothing in a flood.
    pub fn add(&mut self, kind: Kind, count: u64, detail: impl FnOnce() -> String) {
        if count == 0 {
            return;
        }
        *self.counter(kind) += count;
        if self.first.len() < EXAMPLES_KEPT {
            self.first.push(detail());
        }
    }

    /// All violations of every kind.
    pub fn total(&self) -> u64 {
        self.missing
            + self.duplicate
            + self.out_of_order
            + self.misrouted
            + self.corrupt
            + self.refused
            + self.unacked
            + self.unresponsive
    }

    /// Adds another tally to this one, keeping the first examples.
    pub fn merge(&mut self, other: Violations) {
        self.missing += other.missing;
        self.duplicate += other.duplicate;
        self.out_of_order += other.out_of_order;
        self.misrouted += other.misrouted;
        self.corrupt += other.corrupt;
        self.refused += other.refused;
        self.unacked += other.unacked;
        self.unresponsive += other.unresponsive;
        let room = EXAMPLES_KEPT.saturating_sub(self.first.len());
        self.first.extend(other.first.into_iter().take(room));
    }

    /// Each kind with its count, for printing.
    pub fn counts(&self) -> [(&'static str, u64); 8] {
        [
            ("missing", self.missing),
            ("duplicate", self.duplicate),
            ("out of order", self.out_of_order),
            ("misrouted", self.misrouted),
            ("corrupt", self.corrupt),
            ("refused", self.refused),
            ("unacked", self.unacked),
            ("unresponsive", self.unresponsive),
        ]
    }

    fn counter(&mut self, kind: Kind) -> &mut u64 {
        match kind {
            Kind::Missing => &mut self.missing,
            Kind::Duplicate => &mut self.duplicate,
            Kind::OutOfOrder => &mut self.out_of_order,
            Kind::Misrouted => &mut self.misrouted,
            Kind::Corrupt => &mut self.corrupt,
            Kind::Refused => &mut self.refused,
            Kind::Unacked => &mut self.unacked,
            Kind::Unresponsive => &mut self.unresponsive,
        }
    }
}

/// Positions skipped over so far, as ranges, so that a correct run keeps
/// none and a reordering is told apart from a duplicate.
#[derive(Debug, Default)]
struct Gaps {
    /// Start to end (exclusive) of each run of skipped positions.
    ranges: BTreeMap<u64, u64>,
    /// Positions in all ranges together.
    len: u64,
    /// Positions dropped from `ranges` to bound memory, already counted as
    /// missing.
    written_off: u64,
}

impl Gaps {
    /// Records `start..end`, which lies above every range already held.
    fn add(&mut self, start: u64, end: u64) {
        self.ranges.insert(start, end);
        self.len += end - start;
        if self.ranges.len() > MAX_GAPS {
            if let Some((start, end)) = self.ranges.pop_first() {
                self.len -= end - start;
                self.written_off += end - start;
            }
        }
    }

    /// Removes `pos` if it was a gap, reporting whether it was.
    fn take(&mut self, pos: u64) -> bool {
        let Some((&start, &end)) = self.ranges.range(..=pos).next_back() else {
            return false;
        };
        if pos >= end {
            return false;
        }
        self.ranges.remove(&start);
        if start < pos {
            self.ranges.insert(start, pos);
        }
        if pos + 1 < end {
            self.ranges.insert(pos + 1, end);
        }
        self.len -= 1;
        true
    }

    /// Gap positions below `limit`.
    fn below(&self, limit: u64) -> u64 {
        self.ranges
            .range(..limit)
            .map(|(&start, &end)| end.min(limit) - start)
            .sum()
    }
}

/// What the publishers did, per publisher: the messages the server
/// acknowledged are owed; those sent but never acknowledged may arrive or
/// not (their missing reply is its own violation); any other is corrupt.
#[derive(Debug, Clone, Default)]
pub struct Published {
    pub acked: Vec<u64>,
    pub sent: Vec<u64>,
}

impl Published {
    /// Publisher `p`'s acknowledged and sent counts.
    fn of(&self, p: usize) -> (u64, u64) {
        let acked = self.acked.get(p).copied().unwrap_or(0);
        let sent = self.sent.get(p).copied().unwrap_or(0);
        (acked.min(sent), sent)
    }
}

/// How a delivery relates to what its receiver was owed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Owed, first time, nothing later seen before it.
    InOrder,
    /// Owed, first time, but after a later message of the same publisher.
    Late,
    /// Already received.
    Duplicate,
    /// Never owed to this receiver.
    NotOwed,
}

/// One publisher's messages as one receiver should see them: every
/// `stride`-th sequence number from `first` (all of them for fanout, one
/// peer's share for pairs, a suffix for replay).
#[derive(Debug)]
pub struct Stream {
    first: u64,
    stride: u64,
    /// The position (not sequence number) expected next.
    next: u64,
    gaps: Gaps,
}

impl Stream {
    /// A stream owed sequence numbers `first`, `first + stride`, ...
    pub fn new(first: u64, stride: u64) -> Stream {
        Stream {
            first,
            stride: stride.max(1),
            next: 0,
            gaps: Gaps::default(),
        }
    }

    /// Classifies the arrival of sequence number `seq`.
    pub fn arrive(&mut self, seq: u64) -> Arrival {
        let Some(pos) = self.position(seq) else {
            return Arrival::NotOwed;
        };
        if pos >= self.next {
            if pos > self.next {
                self.gaps.add(self.next, pos);
            }
            self.next = pos + 1;
            Arrival::InOrder
        } else if self.gaps.take(pos) {
            Arrival::Late
        } else {
            Arrival::Duplicate
        }
    }

    /// The position of sequence number `seq` in the stream, if it is owed.
    fn position(&self, seq: u64) -> Option<u64> {
        let offset = seq.checked_sub(self.first)?;
        // Most streams take every message; a division per delivery was a
        // visible share of loadgen's time.
        if self.stride == 1 {
            return Some(offset);
        }
        (offset % self.stride == 0).then_some(offset / self.stride)
    }

    /// How many of a publisher's first `sent` messages this stream is owed.
    pub fn owed(&self, sent: u64) -> u64 {
        if sent <= self.first {
            0
        } else {
            (sent - self.first).div_ceil(self.stride)
        }
    }

    /// Counts what was acknowledged but never arrived, and what arrived but
    /// was never sent, once the publisher's counts are final.
    fn tally(&self, publisher: u32, (acked, sent): (u64, u64), violations: &mut Violations) {
        let owed = self.owed(acked);
        let missing = owed - self.next.min(owed) + self.gaps.below(owed) + self.gaps.written_off;
        violations.add(Kind::Missing, missing, || {
            format!("{missing} message(s) of publisher {publisher} never arrived")
        });
        let possible = self.owed(sent);
        if self.next > possible {
            let beyond = (self.next - possible) - (self.gaps.len - self.gaps.below(possible));
            violations.add(Kind::Corrupt, beyond, || {
                format!("{beyond} message(s) numbered past the {sent} publisher {publisher} sent")
            });
        }
    }
}

/// Which messages reached any worker of a `queue` run, one bit per message,
/// shared by all workers because "exactly once" is a property of the whole
/// group.
#[derive(Debug)]
pub struct Ledger {
    /// Per publisher, a bit per sequence number.
    bits: Vec<Vec<u64>>,
}

impl Ledger {
    /// A ledger for publishers `0..publishers`.
    pub fn new(publishers: usize) -> Ledger {
        Ledger {
            bits: vec![Vec::new(); publishers],
        }
    }

    /// Marks a message as delivered; `None` when the publisher is unknown,
    /// otherwise whether this was the first delivery.
    fn mark(&mut self, publisher: u32, seq: u64) -> Option<bool> {
        let bits = self.bits.get_mut(publisher as usize)?;
        let word = usize::try_from(seq / 64).ok()?;
        if bits.len() <= word {
            bits.resize(word + 1, 0);
        }
        let mask = 1u64 << (seq % 64);
        let first = bits[word] & mask == 0;
        bits[word] |= mask;
        Some(first)
    }

    /// Counts acknowledged messages no worker got, and deliveries of
    /// messages never sent.
    pub fn tally(&self, published: &Published) -> Violations {
        let mut violations = Violations::default();
        for (publisher, bits) in self.bits.iter().enumerate() {
            let (acked, sent) = published.of(publisher);
            let mut got = 0u64;
            let mut beyond = 0u64;
            for (word, &w) in bits.iter().enumerate() {
                let base = word as u64 * 64;
                for bit in 0..64 {
                    if w & (1 << bit) != 0 {
                        if base + bit < acked {
                            got += 1;
                        } else if base + bit >= sent {
                            beyond += 1;
                        }
                    }
                }
            }
            let missing = acked - got;
            violations.add(Kind::Missing, missing, || {
                format!("{missing} message(s) of publisher {publisher} reached no worker")
            });
            violations.add(Kind::Corrupt, beyond, || {
                format!("{beyond} message(s) numbered past the {sent} publisher {publisher} sent")
            });
        }
        violations
    }
}

/// Values keyed by publisher number, looked up once per delivery: a vector
/// sorted by publisher, since a receiver hears from few publishers (one in
/// most runs), and a binary search of a short vector costs less than hashing.
#[derive(Debug, Clone)]
pub struct ByPublisher<V>(Vec<(u32, V)>);

impl<V> Default for ByPublisher<V> {
    fn default() -> Self {
        ByPublisher(Vec::new())
    }
}

impl<V> ByPublisher<V> {
    fn find(&self, publisher: u32) -> Result<usize, usize> {
        self.0.binary_search_by_key(&publisher, |&(p, _)| p)
    }

    /// The value of `publisher`, if it has one.
    pub fn get_mut(&mut self, publisher: u32) -> Option<&mut V> {
        let at = self.find(publisher).ok()?;
        Some(&mut self.0[at].1)
    }

    /// Sets the value of `publisher`, returning the one it replaces.
    pub fn insert(&mut self, publisher: u32, value: V) -> Option<V> {
        match self.find(publisher) {
            Ok(at) => Some(std::mem::replace(&mut self.0[at].1, value)),
            Err(at) => {
                self.0.insert(at, (publisher, value));
                None
            }
        }
    }

    /// Every publisher with its value, in increasing order of publisher.
    pub fn iter(&self) -> impl Iterator<Item = (u32, &V)> {
        self.0.iter().map(|(p, v)| (*p, v))
    }
}

impl<V> FromIterator<(u32, V)> for ByPublisher<V> {
    /// As a map would: a later value for a publisher replaces an earlier one.
    fn from_iter<I: IntoIterator<Item = (u32, V)>>(pairs: I) -> Self {
        let mut map = ByPublisher::default();
        for (publisher, value) in pairs {
            map.insert(publisher, value);
        }
        map
    }
}

/// What one receiving connection is owed.
#[derive(Debug)]
pub enum Expect {
    /// Given streams of given publishers, keyed by publisher (fanout, pairs,
    /// replay).
    Streams(ByPublisher<Stream>),
    /// Some share of every publisher's messages, the other workers getting
    /// the rest (queue).
    Share {
        ledger: Arc<Mutex<Ledger>>,
        /// Highest sequence number seen per publisher, for order.
        last_seq: ByPublisher<u64>,
    },
}

impl Expect {
    /// Every message of publishers `0..publishers`.
    pub fn all_of(publishers: u32) -> Expect {
        Expect::Streams((0..publishers).map(|p| (p, Stream::new(0, 1))).collect())
    }

    fn arrive(&mut self, publisher: u32, seq: u64) -> Arrival {
        match self {
            Expect::Streams(streams) => streams
                .get_mut(publisher)
                .map_or(Arrival::NotOwed, |s| s.arrive(seq)),
            Expect::Share { ledger, last_seq } => {
                let first = ledger
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .mark(publisher, seq);
                match first {
                    None => Arrival::NotOwed,
                    Some(false) => Arrival::Duplicate,
                    Some(true) => match last_seq.insert(publisher, seq) {
                        Some(last) if last > seq => {
                            last_seq.insert(publisher, last);
                            Arrival::Late
                        }
                        _ => Arrival::InOrder,
                    },
                }
            }
        }
    }
}

/// The checking state of one receiving connection.
#[derive(Debug)]
pub struct Receiver {
    /// The topic it subscribed to; a delivery naming another is misrouted.
    topic: String,
    /// This run's tag; a message with another is foreign.
    run: u32,
    expect: Expect,
    /// When set, the index each message must carry is this plus its sequence
    /// number (replay, where the messages' indices were learnt beforehand).
    index_base: Option<u64>,
    /// Lowest and highest index received.
    pub first_index: Option<u64>,
    pub last_index: Option<u64>,
    /// Owed messages received for the first time.
    pub fresh: u64,
    pub violations: Violations,
}

impl Receiver {
    /// A receiver subscribed to `topic` in run `run`, owed `expect`.
    pub fn new(topic: String, run: u32, expect: Expect) -> Receiver {
        Receiver {
            topic,
            run,
            expect,
            index_base: None,
            first_index: None,
            last_index: None,
            fresh: 0,
            violations: Violations::default(),
        }
    }

    /// Requires every message to carry index `base + seq`.
    pub fn with_index_base(mut self, base: u64) -> Receiver {
        self.index_base = Some(base);
        self
    }

    /// Checks one delivery; returns its payload when it was owed and is new,
    /// so the caller can count it and time it.
    pub fn on_delivery(&mut self, topic: &str, msg: &str, index: Option<u64>) -> Option<Payload> {
        if topic != self.topic {
            let mine = &self.topic;
            self.violations.add(Kind::Misrouted, 1, || {
                format!("a message for topic {topic:?} reached a subscriber of {mine:?}")
            });
            return None;
        }
        let Some(payload) = Payload::parse(msg) else {
            self.violations.add(Kind::Corrupt, 1, || {
                format!("message text not as sent: {:?}", shorten(msg))
            });
            return None;
        };
        if payload.run != self.run {
            self.violations.add(Kind::Misrouted, 1, || {
                format!("a message of another run arrived: {:?}", shorten(msg))
            });
            return None;
        }
        let (p, s) = (payload.publisher, payload.seq);
        let arrival = self.expect.arrive(p, s);
        match arrival {
            Arrival::NotOwed => {
                self.violations.add(Kind::Misrouted, 1, || {
                    format!("message {s} of publisher {p} reached a receiver not owed it")
                });
                return None;
            }
            Arrival::Duplicate => {
                self.violations.add(Kind::Duplicate, 1, || {
                    format!("message {s} of publisher {p} arrived twice")
                });
                return None;
            }
            Arrival::Late => {
                self.violations.add(Kind::OutOfOrder, 1, || {
                    format!("message {s} of publisher {p} arrived after a later one")
                });
            }
            Arrival::InOrder => {}
        }
        if let Some(index) = index {
            self.check_index(index, payload, arrival);
        }
        self.fresh += 1;
        Some(payload)
    }

    fn check_index(&mut self, index: u64, payload: Payload, arrival: Arrival) {
        let (p, s) = (payload.publisher, payload.seq);
        if let Some(base) = self.index_base {
            if index != base + s {
                self.violations.add(Kind::Corrupt, 1, || {
                    format!(
                        "message {s} of publisher {p} came with index {index}, not {}",
                        base + s
                    )
                });
            }
        }
        match self.last_index {
            Some(last) if index <= last => {
                if arrival == Arrival::InOrder {
                    self.violations.add(Kind::OutOfOrder, 1, || {
                        format!("index {index} arrived after index {last}")
                    });
                }
            }
            _ => self.last_index = Some(index),
        }
        match self.first_index {
            Some(first) if first <= index => {}
            _ => self.first_index = Some(index),
        }
    }

    /// Counts what this receiver was owed but never got, given what each
    /// publisher did, and returns every violation it saw.
    pub fn finish(mut self, published: &Published) -> Violations {
        if let Expect::Streams(streams) = &self.expect {
            for (id, stream) in streams.iter() {
                stream.tally(id, published.of(id as usize), &mut self.violations);
            }
        }
        self.violations
    }
}

/// The start of a long text, for messages meant to be read.
pub fn shorten(text: &str) -> String {
    const KEEP: usize = 80;
    match text.char_indices().nth(KEEP) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RUN: u32 = 0x1234;

    fn msg(publisher: u32, seq: u64) -> String {
        let mut out = Vec::new();
        Payload {
            run: RUN,
            publisher,
            seq,
            stamp_ns: 0,
        }
        .write(0, &mut out);
        String::from_utf8(out).unwrap()
    }

    fn all_acked(sent: &[u64]) -> Published {
        Published {
            acked: sent.to_vec(),
            sent: sent.to_vec(),
        }
    }

    fn fanout_receiver() -> Receiver {
        Receiver::new("t".into(), RUN, Expect::all_of(1))
    }

    /// Feeds `(seq, index)` deliveries from publisher 0 and tallies with
    /// `sent` messages sent.
    fn run(receiver: &mut Receiver, deliveries: &[(u64, u64)]) {
        for &(seq, index) in deliveries {
            receiver.on_delivery("t", &msg(0, seq), Some(index));
        }
    }

    #[test]
    fn a_correct_stream_has_no_violation() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (1, 1), (2, 2)]);
        assert_eq!(r.fresh, 3);
        assert_eq!(r.finish(&all_acked(&[3])).total(), 0);
    }

    #[test]
    fn a_drop_is_missing() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (2, 2)]);
        let v = r.finish(&all_acked(&[3]));
        assert_eq!((v.missing, v.total()), (1, 1));
    }

    #[test]
    fn a_missing_tail_is_missing() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0)]);
        assert_eq!(r.finish(&all_acked(&[3])).missing, 2);
    }

    #[test]
    fn unacknowledged_messages_may_be_missing() {
        let published = Published {
            acked: vec![2],
            sent: vec![4],
        };
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (1, 1), (2, 2)]);
        assert_eq!(r.finish(&published).total(), 0);
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (3, 3), (4, 4)]);
        let v = r.finish(&published);
        assert_eq!((v.missing, v.corrupt), (1, 1), "{v:?}");
    }

    #[test]
    fn a_duplicate_is_counted_once() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (1, 1), (1, 1), (2, 2)]);
        let v = r.finish(&all_acked(&[3]));
        assert_eq!((v.duplicate, v.total()), (1, 1));
    }

    #[test]
    fn a_swap_is_out_of_order_once() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (2, 2), (1, 1), (3, 3)]);
        assert_eq!(r.fresh, 4);
        let v = r.finish(&all_acked(&[4]));
        assert_eq!((v.out_of_order, v.total()), (1, 1), "{v:?}");
    }

    #[test]
    fn a_decreasing_index_is_out_of_order() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 5), (1, 4)]);
        assert_eq!(r.finish(&all_acked(&[2])).out_of_order, 1);
    }

    #[test]
    fn wrong_topic_and_foreign_runs_are_misrouted() {
        let mut r = fanout_receiver();
        r.on_delivery("other", &msg(0, 0), Some(0));
        r.on_delivery("t", "deadbeef:0:0:0:", Some(0));
        r.on_delivery("t", &msg(9, 0), Some(0));
        assert_eq!(r.violations.misrouted, 3);
        r.on_delivery("t", "hello", Some(0));
        assert_eq!(r.violations.corrupt, 1);
        assert_eq!(r.violations.first.len(), 4);
    }

    #[test]
    fn messages_never_sent_are_corrupt() {
        let mut r = fanout_receiver();
        run(&mut r, &[(0, 0), (1, 1), (5, 2)]);
        let v = r.finish(&all_acked(&[2]));
        assert_eq!((v.corrupt, v.missing), (1, 0), "{v:?}");
    }

    #[test]
    fn a_strided_stream_takes_only_its_share() {
        let mut s = Stream::new(1, 3);
        assert_eq!(s.arrive(0), Arrival::NotOwed);
        assert_eq!(s.arrive(2), Arrival::NotOwed);
        assert_eq!(s.arrive(1), Arrival::InOrder);
        assert_eq!(s.arrive(7), Arrival::InOrder);
        assert_eq!(s.arrive(4), Arrival::Late);
        assert_eq!(s.arrive(4), Arrival::Duplicate);
        assert_eq!(s.owed(8), 3);
        assert_eq!(s.owed(1), 0);
    }

    #[test]
    fn gaps_split_and_count() {
        let mut g = Gaps::default();
        g.add(2, 6);
        assert!(g.take(4));
        assert!(!g.take(4));
        assert!(g.take(2));
        assert!(!g.take(6));
        assert_eq!(g.len, 2);
        assert_eq!(g.below(5), 1);
        assert_eq!(g.below(100), 2);
    }

    #[test]
    fn the_ledger_sees_duplicates_across_workers() {
        let ledger = Arc::new(Mutex::new(Ledger::new(1)));
        let share = || Expect::Share {
            ledger: ledger.clone(),
            last_seq: ByPublisher::default(),
        };
        let mut a = Receiver::new("t".into(), RUN, share());
        let mut b = Receiver::new("t".into(), RUN, share());
        run(&mut a, &[(0, 0), (2, 2)]);
        run(&mut b, &[(1, 1), (2, 2)]);
        assert_eq!(b.violations.duplicate, 1);
        let total = ledger.lock().unwrap().tally(&all_acked(&[4]));
        assert_eq!((total.missing, total.corrupt), (1, 0));
    }

    #[test]
    fn by_publisher_keeps_the_last_value_of_each_in_order() {
        let mut map: ByPublisher<&str> = [(5, "a"), (1, "b"), (9, "c"), (1, "d")]
            .into_iter()
            .collect();
        assert_eq!(map.insert(3, "e"), None);
        assert_eq!(map.insert(9, "f"), Some("c"));
        *map.get_mut(5).unwrap() = "g";
        assert_eq!(map.get_mut(4), None);
        let all: Vec<_> = map.iter().map(|(p, v)| (p, *v)).collect();
        assert_eq!(all, [(1, "d"), (3, "e"), (5, "g"), (9, "f")]);
    }

    #[test]
    fn examples_are_bounded() {
        let mut v = Violations::default();
        for _ in 0..100 {
            v.add(Kind::Duplicate, 1, || "dup".into());
        }
        assert_eq!((v.duplicate, v.first.len()), (100, EXAMPLES_KEPT));
    }
}
