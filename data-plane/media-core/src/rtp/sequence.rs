//! Reception statistics for one SSRC: loss, reordering and duplicates (RFC 3550 A.1, A.3)
//! and interarrival jitter (A.8), the inputs of an RTCP report block.

use std::time::Duration;

/// RFC 3550 A.1: a sequence number up to this far ahead is the next packet after a loss.
const MAX_DROPOUT: u16 = 3000;
/// ... and up to this far behind the highest one is reordered or duplicated.
const MAX_MISORDER: u16 = 100;
// The duplicate window must cover every packet accepted as late.
const _: () = assert!(MAX_MISORDER < 128);

/// What one sequence number meant to a [`SequenceTracker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// The first packet.
    First,
    /// Newer than all before; `lost` packets were skipped (0 when in order).
    Advanced { lost: u16 },
    /// Older than the highest and not seen before: reordered.
    Late,
    /// Seen before; should be dropped.
    Duplicate,
    /// Too far from the rest to be loss or reordering; should be dropped. If the next
    /// packet follows it, the source restarted its numbering.
    Jump,
    /// Second packet in a row after a jump: counting starts again from here.
    Restarted,
}

/// Counters for a receiver report and for the control plane.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SequenceStats {
    /// Distinct packets accepted.
    pub received: u64,
    /// Expected minus received, summed over restarts; late arrivals reduce it again.
    pub lost: u64,
    pub duplicates: u64,
    pub late: u64,
    /// Packets dropped as jumps.
    pub jumps: u64,
    /// Cycles of 2^16 in the high half, the highest sequence number in the low half.
    pub extended_highest: u32,
}

/// Loss, reordering and duplicate accounting for one SSRC (RFC 3550 A.1 and A.3), with
/// wrap-around. Source validation (probation) is left out: the RTSP session already knows the
/// SSRC's origin.
#[derive(Debug, Clone, Default)]
pub struct SequenceTracker {
    started: bool,
    /// Extended highest plus 2^16, so packets older than the first stay positive.
    max_ext: u64,
    base_ext: u64,
    /// Distinct packets in `base_ext..=max_ext`.
    received: u64,
    received_total: u64,
    lost_before: u64,
    /// Bit i set: `max_ext - i` was received.
    window: u128,
    bad_seq: Option<u16>,
    duplicates: u64,
    late: u64,
    jumps: u64,
    expected_prior: u64,
    received_prior: u64,
}

impl SequenceTracker {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn observe(&mut self, seq: u16) -> SeqEvent {
        if !self.started {
            self.started = true;
            self.reset(seq);
            return SeqEvent::First;
        }
        let delta = seq.wrapping_sub(self.max_ext as u16);
        if delta == 0 {
            self.duplicates += 1;
            SeqEvent::Duplicate
        } else if delta < MAX_DROPOUT {
            self.bad_seq = None;
            self.max_ext += u64::from(delta);
            self.window = if delta >= 128 {
                1
            } else {
                self.window << delta | 1
            };
            self.received += 1;
            self.received_total += 1;
            SeqEvent::Advanced { lost: delta - 1 }
        } else if delta <= u16::MAX - MAX_MISORDER {
            if self.bad_seq == Some(seq) {
                self.lost_before += self.lost_since_reset();
                self.reset(seq);
                SeqEvent::Restarted
            } else {
                self.bad_seq = Some(seq.wrapping_add(1));
                self.jumps += 1;
                SeqEvent::Jump
            }
        } else {
            let back = 0u16.wrapping_sub(delta); // 1..=MAX_MISORDER
            let bit = 1u128 << back;
            if self.window & bit != 0 {
                self.duplicates += 1;
                return SeqEvent::Duplicate;
            }
            self.window |= bit;
            self.received += 1;
            self.received_total += 1;
            self.late += 1;
            self.base_ext = self.base_ext.min(self.max_ext - u64::from(back));
            SeqEvent::Late
        }
    }

    fn reset(&mut self, seq: u16) {
        self.max_ext = (1 << 16) + u64::from(seq);
        self.base_ext = self.max_ext;
        self.received = 1;
        self.received_total += 1;
        self.window = 1;
        self.bad_seq = None;
    }

    fn lost_since_reset(&self) -> u64 {
        (self.max_ext - self.base_ext + 1).saturating_sub(self.received)
    }

    pub fn stats(&self) -> SequenceStats {
        SequenceStats {
            received: self.received_total,
            lost: self.lost_before + self.lost_since_reset(),
            duplicates: self.duplicates,
            late: self.late,
            jumps: self.jumps,
            extended_highest: if self.started {
                (self.max_ext - (1 << 16)) as u32
            } else {
                0
            },
        }
    }

    /// Fraction lost since the previous call, in 1/256 (RFC 3550 A.3), for a report block.
    pub fn take_fraction_lost(&mut self) -> u8 {
        let stats = self.stats();
        let expected = stats.received + stats.lost;
        let expected_interval = expected - self.expected_prior;
        let received_interval = stats.received - self.received_prior;
        self.expected_prior = expected;
        self.received_prior = stats.received;
        let lost_interval = expected_interval.saturating_sub(received_interval);
        (lost_interval << 8)
            .checked_div(expected_interval)
            .map_or(0, |f| f.min(255) as u8)
    }
}

/// Interarrival jitter (RFC 3550 A.8) in timestamp units; arrival time comes from the caller.
#[derive(Debug, Clone, Copy)]
pub struct JitterEstimator {
    clock_rate: u32,
    last_transit: Option<u32>,
    /// Jitter scaled by 16, as the RFC's integer version keeps it.
    jitter_x16: u64,
}

impl JitterEstimator {
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            last_transit: None,
            jitter_x16: 0,
        }
    }

    pub fn observe(&mut self, timestamp: u32, arrival: Duration) {
        let arrival_ticks =
            (arrival.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) % (1 << 32);
        let transit = (arrival_ticks as u32).wrapping_sub(timestamp);
        if let Some(last) = self.last_transit {
            let d = u64::from((transit.wrapping_sub(last) as i32).unsigned_abs());
            self.jitter_x16 = self.jitter_x16 + d - ((self.jitter_x16 + 8) >> 4);
        }
        self.last_transit = Some(transit);
    }

    pub fn jitter(&self) -> u32 {
        (self.jitter_x16 >> 4).min(u64::from(u32::MAX)) as u32
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn tracker_counts_loss_reorder_duplicates_across_wrap() {
        let mut t = SequenceTracker::new();
        let events: Vec<_> = [65_534, 65_535, 2, 0, 0, 3]
            .into_iter()
            .map(|s| t.observe(s))
            .collect();
        use SeqEvent::*;
        assert_eq!(
            events,
            [
                First,
                Advanced { lost: 0 },
                Advanced { lost: 2 },
                Late,
                Duplicate,
                Advanced { lost: 0 }
            ]
        );
        let s = t.stats();
        assert_eq!((s.received, s.lost, s.duplicates, s.late), (5, 1, 1, 1));
        assert_eq!(s.extended_highest, 65_536 + 3);
    }

    #[test]
    fn tracker_restarts_after_two_sequential_jumps() {
        let mut t = SequenceTracker::new();
        for s in 100..110 {
            t.observe(s);
        }
        assert_eq!(t.observe(40_000), SeqEvent::Jump);
        assert_eq!(
            t.observe(110),
            SeqEvent::Advanced { lost: 0 },
            "a stray jump is ignored"
        );
        assert_eq!(t.observe(40_000), SeqEvent::Jump);
        assert_eq!(t.observe(40_001), SeqEvent::Restarted);
        assert_eq!(t.observe(40_003), SeqEvent::Advanced { lost: 1 });
        let s = t.stats();
        assert_eq!(
            (s.received, s.lost, s.jumps, s.extended_highest),
            (13, 1, 2, 40_003)
        );
    }

    #[test]
    fn fraction_lost_covers_the_interval_only() {
        let mut t = SequenceTracker::new();
        for s in (0..100u16).filter(|s| s % 4 != 1) {
            t.observe(s);
        }
        assert_eq!(
            t.take_fraction_lost(),
            64,
            "25 of 99 expected... rounded down"
        );
        for s in 100..200 {
            t.observe(s);
        }
        assert_eq!(t.take_fraction_lost(), 0);
        assert_eq!(t.take_fraction_lost(), 0, "nothing expected, nothing lost");
    }

    #[test]
    fn jitter_follows_rfc_3550() {
        let mut j = JitterEstimator::new(90_000);
        for i in 0..50u32 {
            j.observe(i * 3000, Duration::from_micros(u64::from(i) * 33_333 + 5));
        }
        assert!(j.jitter() <= 1, "steady arrival: {}", j.jitter());
        for i in 50..200u32 {
            let wobble = if i % 2 == 0 { 10 } else { 0 };
            j.observe(
                i * 3000,
                Duration::from_millis(u64::from(i) * 100 / 3 + wobble),
            );
        }
        // |D| = 900 ticks (10 ms) every packet, plus rounding: the estimate converges near 900.
        assert!((870..=930).contains(&j.jitter()), "{}", j.jitter());
    }

    /// One step of a receive pattern, relative to the highest extended number so far.
    #[derive(Debug, Clone)]
    enum Step {
        Ahead(u64),
        Late(u64),
        Again(u64),
    }

    proptest! {
        #[test]
        fn tracker_matches_a_set_model(
            first in any::<u16>(),
            steps in prop::collection::vec(prop_oneof![
                4 => (1..60u64).prop_map(Step::Ahead),
                1 => (1..=100u64).prop_map(Step::Late),
                1 => (0..=100u64).prop_map(Step::Again),
            ], 0..400),
        ) {
            let mut tracker = SequenceTracker::new();
            // The model works on extended numbers, offset so late ones stay positive.
            let start = (1u64 << 16) + u64::from(first);
            let (mut max, mut seen, mut duplicates) = (start, BTreeSet::from([start]), 0u64);
            tracker.observe(first);
            for step in steps {
                let ext = match step {
                    Step::Ahead(n) => max + n,
                    Step::Late(n) | Step::Again(n) => max - n,
                };
                // A duplicate of the oldest packet still within the reorder window.
                let ext = if matches!(step, Step::Again(_)) { *seen.range(ext..).next().unwrap() } else { ext };
                if !seen.insert(ext) {
                    duplicates += 1;
                }
                max = max.max(ext);
                tracker.observe(ext as u16);
            }
            let min = *seen.first().unwrap();
            let stats = tracker.stats();
            prop_assert_eq!(stats.received, seen.len() as u64);
            prop_assert_eq!(stats.lost, max - min + 1 - seen.len() as u64);
            prop_assert_eq!(stats.duplicates, duplicates);
            prop_assert_eq!(u64::from(stats.extended_highest), max - (1 << 16));
        }
    }
}
