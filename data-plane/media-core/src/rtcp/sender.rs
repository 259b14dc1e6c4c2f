//! Sender reports the server generates for a track whose publisher sends none (some cameras,
//! GStreamer without RTCP, raw tools), so players can still map RTP timestamps to wall clock
//! and sync tracks (RFC 3550 §6.4.1).
//!
//! The generator remembers when (monotonic time) the latest frame of the track arrived and its
//! RTP timestamp as readers see it, and counts packets and payload octets. A report maps the
//! wall clock at `now` to that timestamp extrapolated at the track's clock rate, as gortsplib's
//! `rtcpsender` does. The first report is due with the first packet, then one every
//! [`SR_PERIOD`]; a publisher's own sender report suppresses generation for
//! [`PUBLISHER_SR_HOLD`], so readers never see two competing timestamp mappings.
//!
//! Caveat: with B-frames, RTP timestamps (presentation times) do not grow with arrival; the
//! anchor only moves forward, so video's mapping can run ahead by the reordering delay.

use std::time::Duration;

use super::{NtpTimestamp, SenderReport};
use crate::rtp::{RtpPacket, Ssrc};

/// How often a report goes out per track (MediaMTX/gortsplib use a fixed period too).
pub const SR_PERIOD: Duration = Duration::from_secs(5);
/// A publisher's report younger than this suppresses ours. Senders' RTCP intervals are
/// randomised up to 1.5 × 5 s (RFC 3550 §6.3.1), so allow two of them.
pub const PUBLISHER_SR_HOLD: Duration = Duration::from_secs(15);
/// An anchor older than this is replaced even by a timestamp behind it, so a source that
/// restarts its timestamps (same SSRC) does not freeze the mapping.
const ANCHOR_STALE: Duration = Duration::from_secs(1);

/// A frame's RTP timestamp and when (monotonic) its first packet arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Anchor {
    at: Duration,
    timestamp: u32,
}

/// Per-track state for generating sender reports. Time is an input: `now` is any monotonic
/// clock, `wall` the time since the Unix epoch read at the same moment.
#[derive(Debug, Clone)]
pub struct SenderReportGenerator {
    clock_rate: u32,
    ssrc: Option<Ssrc>,
    anchor: Option<Anchor>,
    packet_count: u32,
    octet_count: u32,
    last_sent: Option<Duration>,
    last_publisher_report: Option<Duration>,
}

impl SenderReportGenerator {
    /// `clock_rate` is the track's RTP clock (90000 for video); 0 is treated as 1.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate: clock_rate.max(1),
            ssrc: None,
            anchor: None,
            packet_count: 0,
            octet_count: 0,
            last_sent: None,
            last_publisher_report: None,
        }
    }

    /// An RTP packet as readers see it (after any rewriting), sent to them at `now`. Returns
    /// whether a report is due; build it with [`Self::report`].
    pub fn on_rtp(&mut self, packet: &RtpPacket, now: Duration) -> bool {
        self.ssrc = Some(packet.ssrc());
        self.packet_count = self.packet_count.wrapping_add(1);
        // RFC 3550: payload octets, without header or padding; the field wraps.
        self.octet_count = self.octet_count.wrapping_add(packet.payload_len() as u32);
        let timestamp = packet.timestamp();
        let advance = match self.anchor {
            None => true,
            Some(a) => {
                let ahead = timestamp.wrapping_sub(a.timestamp);
                (ahead != 0 && ahead < 1 << 31) || now.saturating_sub(a.at) >= ANCHOR_STALE
            }
        };
        if advance {
            self.anchor = Some(Anchor { at: now, timestamp });
        }
        self.due(now)
    }

    /// The publisher sent a sender report for this track at `now` (forwarded to readers).
    pub fn on_publisher_report(&mut self, now: Duration) {
        self.last_publisher_report = Some(now);
    }

    /// A new publisher took over: its first packet gets a report at once (unless it sends its
    /// own), and its reports or their absence are learnt anew. Counts continue, as the SSRC
    /// readers see does.
    pub fn source_changed(&mut self) {
        self.anchor = None;
        self.last_sent = None;
        self.last_publisher_report = None;
    }

    /// Whether the publisher's own reports currently stand in for ours.
    pub fn suppressed(&self, now: Duration) -> bool {
        self.last_publisher_report
            .is_some_and(|t| now.saturating_sub(t) < PUBLISHER_SR_HOLD)
    }

    /// Whether a report should go out at `now`.
    pub fn due(&self, now: Duration) -> bool {
        self.anchor.is_some()
            && !self.suppressed(now)
            && self
                .last_sent
                .is_none_or(|t| now.saturating_sub(t) >= SR_PERIOD)
    }

    /// The report for `now` (wall clock `wall`), and records it as sent; `None` before the
    /// first packet.
    pub fn report(&mut self, now: Duration, wall: Duration) -> Option<SenderReport> {
        let (anchor, ssrc) = (self.anchor?, self.ssrc?);
        self.last_sent = Some(now);
        let elapsed = now.saturating_sub(anchor.at);
        let ticks = elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000;
        // Only the low 32 bits matter: RTP timestamps wrap.
        let rtp_time = anchor.timestamp.wrapping_add(ticks as u32);
        Some(SenderReport {
            ssrc,
            ntp_time: NtpTimestamp::from_unix(wall),
            rtp_time,
            packet_count: self.packet_count,
            octet_count: self.octet_count,
            ..SenderReport::default()
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::rtp::RtpHeader;

    fn packet(ts: u32, payload: usize) -> RtpPacket {
        let header = RtpHeader {
            marker: true,
            payload_type: 0,
            sequence_number: 1,
            timestamp: ts,
            ssrc: Ssrc(0xabcd),
            csrcs: Vec::new(),
            extension: None,
            padding: 4,
        };
        RtpPacket::new(&header, &vec![0x55; payload]).unwrap()
    }

    const WALL: Duration = Duration::new(1_795_608_000, 0);
    fn ms(v: u64) -> Duration {
        Duration::from_millis(v)
    }

    #[test]
    fn first_report_comes_with_the_first_packet_and_maps_its_arrival() {
        let mut g = SenderReportGenerator::new(8000);
        assert!(!g.due(ms(0)), "nothing to report before a packet");
        assert!(g.report(ms(0), WALL).is_none());
        assert!(g.on_rtp(&packet(1000, 160), ms(10)));
        let sr = g.report(ms(10), WALL).unwrap();
        assert_eq!(sr.ssrc, Ssrc(0xabcd));
        assert_eq!(sr.rtp_time, 1000);
        // NTP seconds since 1900, fraction 0 for a whole second.
        assert_eq!(sr.ntp_time.0, (1_795_608_000 + 2_208_988_800) << 32);
        assert_eq!(
            (sr.packet_count, sr.octet_count),
            (1, 160),
            "padding excluded"
        );
        assert!(sr.reports.is_empty());
    }

    #[test]
    fn reports_are_periodic_and_extrapolate_from_the_latest_frame() {
        let mut g = SenderReportGenerator::new(90_000);
        assert!(g.on_rtp(&packet(0, 1000), ms(0)));
        g.report(ms(0), WALL).unwrap();
        // 30 fps for just under 5 s: nothing due; a frame's later packets keep its anchor.
        let mut due = false;
        for frame in 1..150u32 {
            let at = ms(u64::from(frame) * 100 / 3);
            due |= g.on_rtp(&packet(frame * 3000, 1000), at);
            due |= g.on_rtp(&packet(frame * 3000, 1000), at + ms(2));
        }
        assert!(!due, "no report within the period");
        // 5 s: due; 34 ms after frame 149's first packet (at 4966 ms) the clock is 3060
        // ticks further on.
        let now = ms(5000);
        assert!(g.on_rtp(&packet(149 * 3000, 500), now));
        let sr = g
            .report(now, WALL + Duration::from_millis(5000 + 500))
            .unwrap();
        let anchor_at = 149 * 100 / 3; // ms
        let expected = 149 * 3000 + (5000 - anchor_at) * 90;
        assert_eq!(sr.rtp_time, expected as u32);
        assert_eq!(sr.ntp_time, NtpTimestamp::from_unix(WALL + ms(5500)));
        assert_eq!(sr.packet_count, 1 + 2 * 149 + 1);
        assert_eq!(sr.octet_count, 1000 + 2 * 149 * 1000 + 500);
        assert!(!g.due(ms(9999)));
        assert!(g.due(ms(10_000)));
    }

    #[test]
    fn timestamps_behind_the_anchor_do_not_move_it_until_it_is_stale() {
        let mut g = SenderReportGenerator::new(90_000);
        g.on_rtp(&packet(9000, 10), ms(0));
        g.on_rtp(&packet(3000, 10), ms(40)); // a B-frame
        assert_eq!(g.report(ms(100), WALL).unwrap().rtp_time, 9000 + 9000);
        // Wrapping forward is forward.
        let mut w = SenderReportGenerator::new(90_000);
        w.on_rtp(&packet(u32::MAX - 100, 10), ms(0));
        w.on_rtp(&packet(200, 10), ms(10));
        assert_eq!(w.report(ms(10), WALL).unwrap().rtp_time, 200);
        // A source that restarts its timestamps takes over once the anchor is stale.
        g.on_rtp(&packet(5, 10), ms(1200));
        assert_eq!(g.report(ms(1200), WALL).unwrap().rtp_time, 5);
    }

    #[test]
    fn publisher_reports_suppress_ours_until_they_stop() {
        let mut g = SenderReportGenerator::new(8000);
        g.on_publisher_report(ms(0));
        assert!(
            !g.on_rtp(&packet(0, 160), ms(5)),
            "the publisher's report stands"
        );
        for t in (20..15_000).step_by(20) {
            if t % 5000 == 0 {
                g.on_publisher_report(ms(t));
            }
            assert!(!g.on_rtp(&packet(t as u32 * 8, 160), ms(t)), "at {t} ms");
        }
        // The publisher's last report was at 10 s: ours resume 15 s later.
        assert!(!g.on_rtp(&packet(24_990 * 8, 160), ms(24_990)));
        assert!(g.on_rtp(&packet(25_000 * 8, 160), ms(25_000)));
        let sr = g.report(ms(25_000), WALL).unwrap();
        assert_eq!(sr.rtp_time, 200_000);
        assert_eq!(sr.packet_count, 1 + 749 + 2);
    }

    #[test]
    fn a_new_source_gets_a_report_at_once_and_counts_continue() {
        let mut g = SenderReportGenerator::new(8000);
        g.on_rtp(&packet(0, 100), ms(0));
        g.report(ms(0), WALL).unwrap();
        g.on_publisher_report(ms(100));
        g.source_changed();
        assert!(!g.due(ms(200)), "nothing to anchor on yet");
        assert!(g.on_rtp(&packet(777, 100), ms(300)), "no period wait");
        let sr = g.report(ms(300), WALL).unwrap();
        assert_eq!(
            (sr.rtp_time, sr.packet_count, sr.octet_count),
            (777, 2, 200)
        );
    }
}
