//! What new and slow readers of a track get: a cache of the current group of pictures so a new
//! reader starts at the latest keyframe at once ([`GopCache`]), and frame-aware dropping so a
//! slow reader loses whole frames, never part of one ([`FrameGate`]).
//!
//! Both are codec-agnostic: the codec modules say which packets start a keyframe
//! ([`crate::h264::is_keyframe_start`], [`crate::h265::is_keyframe_start`]), and frames are
//! found from RTP timestamps and marker bits. Audio and other tracks need no cache (every
//! frame is a random access point); they use a [`FrameGate`] with [`ResumeAt::NextFrame`].

use crate::rtp::RtpPacket;

/// Bounds of one track's cache. A GOP that outgrows them is dropped, and caching resumes
/// at the next keyframe (readers joining meanwhile wait for it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GopLimits {
    pub max_packets: usize,
    pub max_bytes: usize,
}

impl Default for GopLimits {
    /// 8 MiB covers 2 s of a 30 Mbit/s stream; the packet bound matches 1 KiB packets.
    fn default() -> Self {
        Self {
            max_packets: 8192,
            max_bytes: 8 << 20,
        }
    }
}

/// The packets of one video track from the first packet of its latest keyframe access unit up
/// to the latest packet, in arrival order. Entries are clones of the received [`RtpPacket`]s
/// (reference counts, no copies).
#[derive(Debug, Clone)]
pub struct GopCache {
    limits: GopLimits,
    packets: Vec<RtpPacket>,
    bytes: usize,
    /// `packets[0]` is the first packet of a keyframe access unit.
    ready: bool,
    /// Timestamp of the access unit being received and the index of its first packet.
    au_timestamp: Option<u32>,
    au_start: usize,
    /// False once an overflow cut the current access unit: the rest of it is not cached.
    au_intact: bool,
    overflows: u64,
}

impl GopCache {
    pub fn new(limits: GopLimits) -> Self {
        Self {
            limits,
            packets: Vec::new(),
            bytes: 0,
            ready: false,
            au_timestamp: None,
            au_start: 0,
            au_intact: true,
            overflows: 0,
        }
    }

    /// Adds the next packet of the track. `keyframe_start` comes from the codec module; it
    /// may be set on any packet of the keyframe's access unit (an SPS first, or an IDR slice
    /// after an AUD or SEI), and the cache then restarts at that access unit's first packet.
    pub fn push(&mut self, packet: &RtpPacket, keyframe_start: bool) {
        if self.au_timestamp != Some(packet.timestamp()) {
            if !self.ready {
                // Only the current access unit is kept while waiting: it may turn out a keyframe.
                self.packets.clear();
                self.bytes = 0;
            }
            self.au_timestamp = Some(packet.timestamp());
            self.au_start = self.packets.len();
            self.au_intact = true;
        }
        if !self.au_intact {
            return;
        }
        self.packets.push(packet.clone());
        self.bytes += packet.len();
        if keyframe_start && !(self.ready && self.au_start == 0) {
            let dropped: usize = self.packets.drain(..self.au_start).map(|p| p.len()).sum();
            self.bytes -= dropped;
            self.au_start = 0;
            self.ready = true;
        }
        if self.packets.len() > self.limits.max_packets || self.bytes > self.limits.max_bytes {
            self.packets.clear();
            self.bytes = 0;
            self.ready = false;
            self.au_intact = false;
            self.overflows += 1;
        }
    }

    /// What a new reader is sent before live packets: empty until a keyframe has been seen
    /// (and after an overflow). Take it and subscribe the reader without a `push` in between,
    /// or packets are lost or doubled.
    pub fn snapshot(&self) -> &[RtpPacket] {
        if self.ready { &self.packets } else { &[] }
    }

    pub fn is_ready(&self) -> bool {
        self.ready
    }

    /// Bytes held, counting packets kept while waiting for a keyframe.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// How often a GOP outgrew the limits (a keyframe interval too long for them).
    pub fn overflows(&self) -> u64 {
        self.overflows
    }

    /// Forgets everything, for when the source changes.
    pub fn clear(&mut self) {
        *self = Self {
            overflows: self.overflows,
            ..Self::new(self.limits)
        };
    }
}

/// Finds frame (access unit) boundaries: a frame is the run of packets sharing an RTP
/// timestamp, ended early by a marker bit. All slices of a picture share the timestamp, so a
/// multi-slice frame is one frame.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrameBoundary {
    last: Option<(u32, bool)>,
}

impl FrameBoundary {
    /// Whether `packet` begins a new frame; call once per packet, in arrival order.
    pub fn starts_frame(&mut self, packet: &RtpPacket) -> bool {
        let starts = self
            .last
            .is_none_or(|(ts, marker)| marker || ts != packet.timestamp());
        self.last = Some((packet.timestamp(), packet.marker()));
        starts
    }
}

/// Where a reader resumes after a drop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResumeAt {
    /// Audio and other tracks: any frame decodes on its own.
    NextFrame,
    /// Video: frames after a lost one reference it, so wait for a keyframe.
    NextKeyframe,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Send,
    Drop,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropStats {
    /// Frames dropped in full or in part.
    pub frames: u64,
    pub packets: u64,
    /// Frames cut because the queue filled up after they had started.
    pub truncated: u64,
}

/// Decides, per reader and packet, whether the packet goes into the reader's bounded queue.
/// A frame is only started when `headroom` slots are free (so it can finish), and once a
/// frame is dropped all its packets are. A frame is cut only if the queue fills completely
/// mid-frame; that is counted in [`DropStats::truncated`].
#[derive(Debug, Clone)]
pub struct FrameGate {
    resume: ResumeAt,
    headroom: usize,
    boundary: FrameBoundary,
    dropping: bool,
    waiting_keyframe: bool,
    stats: DropStats,
}

impl FrameGate {
    /// `headroom`: free queue slots needed to start a frame; a typical frame's packet count.
    pub fn new(resume: ResumeAt, headroom: usize) -> Self {
        Self {
            resume,
            headroom: headroom.max(1),
            boundary: FrameBoundary::default(),
            dropping: false,
            waiting_keyframe: false,
            stats: DropStats::default(),
        }
    }

    /// For a video reader that joins without a cached GOP: send nothing before a keyframe.
    pub fn wait_for_keyframe(&mut self) {
        self.waiting_keyframe = true;
    }

    /// After sending a [`GopCache::snapshot`] outside the gate, so that live packets of the
    /// same frame are not taken for a new one.
    pub fn continue_after(&mut self, last_sent: &RtpPacket) {
        self.boundary.starts_frame(last_sent);
    }

    /// `free_slots`: room in the reader's queue right now.
    pub fn admit(&mut self, packet: &RtpPacket, keyframe_start: bool, free_slots: usize) -> Admit {
        let new_frame = self.boundary.starts_frame(packet);
        if self.waiting_keyframe {
            // Resuming at a flagged packet in mid-frame is fine: what precedes it in its access
            // unit (AUD, SEI) carries no picture data.
            if keyframe_start && free_slots >= self.headroom {
                self.waiting_keyframe = false;
                self.dropping = false;
                return Admit::Send;
            }
            return self.drop(new_frame);
        }
        if new_frame {
            self.dropping = free_slots < self.headroom;
            if self.dropping && self.resume == ResumeAt::NextKeyframe {
                self.waiting_keyframe = true;
            }
        } else if !self.dropping && free_slots == 0 {
            self.dropping = true;
            self.stats.truncated += 1;
            if self.resume == ResumeAt::NextKeyframe {
                self.waiting_keyframe = true;
            }
            return self.drop(true);
        }
        if self.dropping {
            self.drop(new_frame)
        } else {
            Admit::Send
        }
    }

    fn drop(&mut self, counts_frame: bool) -> Admit {
        self.stats.packets += 1;
        self.stats.frames += u64::from(counts_frame);
        Admit::Drop
    }

    pub fn stats(&self) -> DropStats {
        self.stats
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::h264::{self, tests::x264_packets};
    use crate::rtp::{RtpHeader, Ssrc};
    use proptest::prelude::*;

    fn packet(seq: u16, ts: u32, marker: bool, payload: &[u8]) -> RtpPacket {
        let header = RtpHeader {
            marker,
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ssrc: Ssrc(1),
            ..RtpHeader::default()
        };
        RtpPacket::new(&header, payload).unwrap()
    }

    fn seqs(packets: &[RtpPacket]) -> Vec<u16> {
        packets.iter().map(RtpPacket::sequence_number).collect()
    }

    #[test]
    fn caches_real_x264_gop_from_its_stap_a() {
        let packets = x264_packets();
        let mut cache = GopCache::new(GopLimits::default());
        for (i, p) in packets.iter().enumerate() {
            cache.push(p, h264::is_keyframe_start(p.payload()));
            assert_eq!(
                cache.snapshot().len(),
                i + 1,
                "the whole multi-slice keyframe and after"
            );
        }
        assert_eq!(cache.snapshot()[0], packets[0]);
        assert_eq!(
            cache.snapshot()[0].as_bytes().as_ptr(),
            packets[0].as_bytes().as_ptr()
        );
        assert_eq!(
            cache.bytes(),
            packets.iter().map(RtpPacket::len).sum::<usize>()
        );

        // The next keyframe (same bytes, later timestamp) replaces the GOP.
        let next = packets[0].rewritten(0x03a6, packets[20].timestamp() + 3000, Ssrc(0xcbad_c83b));
        cache.push(&next, h264::is_keyframe_start(next.payload()));
        assert_eq!(cache.snapshot(), [next]);
    }

    #[test]
    fn restarts_at_the_first_packet_of_the_keyframe_access_unit() {
        let mut cache = GopCache::new(GopLimits::default());
        cache.push(&packet(1, 100, true, &[0x41]), false);
        assert!(!cache.is_ready() && cache.snapshot().is_empty());
        cache.push(&packet(2, 200, false, &[0x09, 0x10]), false); // AUD
        cache.push(&packet(3, 200, false, &[0x06, 0x05]), false); // SEI
        cache.push(&packet(4, 200, true, &[0x65, 0x88]), true); // IDR
        cache.push(&packet(5, 300, true, &[0x41]), false);
        assert_eq!(seqs(cache.snapshot()), [2, 3, 4, 5]);
        cache.clear();
        assert!(!cache.is_ready() && cache.bytes() == 0);
    }

    #[test]
    fn overflow_empties_the_cache_until_the_next_whole_keyframe() {
        let limits = GopLimits {
            max_packets: 4,
            max_bytes: 1000,
        };
        let mut cache = GopCache::new(limits);
        cache.push(&packet(1, 100, false, &[0x67]), true);
        cache.push(&packet(2, 100, true, &[0x65]), true);
        cache.push(&packet(3, 200, true, &[0x41]), false);
        cache.push(&packet(4, 300, true, &[0x41]), false);
        assert_eq!(seqs(cache.snapshot()), [1, 2, 3, 4]);
        cache.push(&packet(5, 400, true, &[0x41]), false);
        assert!(cache.snapshot().is_empty() && cache.bytes() == 0);
        assert_eq!(cache.overflows(), 1);
        // A keyframe access unit that is cut by an overflow is not cached from its middle.
        cache.push(&packet(6, 500, false, &[0x65; 400]), true);
        cache.push(&packet(7, 500, false, &[0x65; 400]), true);
        cache.push(&packet(8, 500, true, &[0x65; 400]), true);
        assert!(cache.snapshot().is_empty());
        assert_eq!(cache.overflows(), 2);
        cache.push(&packet(9, 600, true, &[0x65]), true);
        assert_eq!(seqs(cache.snapshot()), [9]);
    }

    #[test]
    fn frame_boundaries_of_a_multi_slice_stream() {
        let mut boundary = FrameBoundary::default();
        let starts: Vec<_> = x264_packets()
            .iter()
            .enumerate()
            .filter_map(|(i, p)| boundary.starts_frame(p).then_some(i))
            .collect();
        assert_eq!(starts, [0, 14, 20]);
    }

    #[test]
    fn slow_video_reader_drops_whole_frames_until_a_keyframe() {
        let packets = x264_packets();
        let mut gate = FrameGate::new(ResumeAt::NextKeyframe, 8);
        let admit = |gate: &mut FrameGate, p: &RtpPacket, free| {
            gate.admit(p, h264::is_keyframe_start(p.payload()), free)
        };
        // The keyframe starts with room and finishes even as the queue fills.
        for (i, p) in packets[..14].iter().enumerate() {
            assert_eq!(admit(&mut gate, p, 20 - i), Admit::Send);
        }
        // No room for the P frame: all of it goes, and so does the frame after it.
        for p in &packets[14..21] {
            assert_eq!(admit(&mut gate, p, 3), Admit::Drop);
        }
        let stats = gate.stats();
        assert_eq!((stats.frames, stats.packets, stats.truncated), (2, 7, 0));
        let p = packets[20].rewritten(0x03a6, 1, Ssrc(1));
        assert_eq!(
            admit(&mut gate, &p, 100),
            Admit::Drop,
            "room, but not a keyframe"
        );
        let key = packets[0].rewritten(0x03a7, 2, Ssrc(1));
        assert_eq!(admit(&mut gate, &key, 100), Admit::Send);
    }

    #[test]
    fn full_queue_mid_frame_cuts_it_and_counts_it() {
        let mut gate = FrameGate::new(ResumeAt::NextFrame, 2);
        assert_eq!(
            gate.admit(&packet(1, 100, false, &[]), false, 5),
            Admit::Send
        );
        assert_eq!(
            gate.admit(&packet(2, 100, false, &[]), false, 0),
            Admit::Drop
        );
        assert_eq!(
            gate.admit(&packet(3, 100, true, &[]), false, 5),
            Admit::Drop
        );
        assert_eq!(
            gate.admit(&packet(4, 200, true, &[]), false, 5),
            Admit::Send
        );
        let stats = gate.stats();
        assert_eq!((stats.frames, stats.packets, stats.truncated), (1, 2, 1));
    }

    #[test]
    fn joining_reader_waits_for_a_keyframe_or_continues_after_the_snapshot() {
        let mut gate = FrameGate::new(ResumeAt::NextKeyframe, 1);
        gate.wait_for_keyframe();
        assert_eq!(
            gate.admit(&packet(1, 100, true, &[0x41]), false, 9),
            Admit::Drop
        );
        assert_eq!(
            gate.admit(&packet(2, 200, false, &[0x09]), false, 9),
            Admit::Drop
        );
        assert_eq!(
            gate.admit(&packet(3, 200, false, &[0x67]), true, 9),
            Admit::Send,
            "after the AUD"
        );
        assert_eq!(
            gate.admit(&packet(4, 200, true, &[0x65]), false, 9),
            Admit::Send
        );

        let mut gate = FrameGate::new(ResumeAt::NextKeyframe, 5);
        gate.continue_after(&packet(1, 100, false, &[0x65]));
        assert_eq!(
            gate.admit(&packet(2, 100, true, &[0x65]), false, 1),
            Admit::Send,
            "same frame"
        );
    }

    /// One access unit: packet sizes, and which packet (if any) carries the keyframe flag.
    fn access_units() -> impl Strategy<Value = Vec<(Vec<usize>, Option<usize>)>> {
        let au = prop::collection::vec(1..300usize, 1..6).prop_flat_map(|sizes| {
            let n = sizes.len();
            (Just(sizes), prop::option::weighted(0.2, 0..n))
        });
        prop::collection::vec(au, 1..80)
    }

    proptest! {
        #[test]
        fn gop_cache_stays_bounded_and_starts_at_a_keyframe(
            aus in access_units(),
            max_packets in 1..40usize,
            max_bytes in 1..4000usize,
        ) {
            let mut cache = GopCache::new(GopLimits { max_packets, max_bytes });
            let mut pushed: Vec<RtpPacket> = Vec::new();
            // Index of the first packet of each keyframe access unit, and whether the flag
            // was on that first packet.
            let mut keyframe_aus: Vec<(usize, bool)> = Vec::new();
            for (n, (sizes, flag_at)) in aus.iter().enumerate() {
                let au_start = pushed.len();
                for (i, &size) in sizes.iter().enumerate() {
                    let p = packet(pushed.len() as u16, n as u32 * 3000, i + 1 == sizes.len(), &vec![0; size]);
                    cache.push(&p, *flag_at == Some(i));
                    pushed.push(p);
                    if *flag_at == Some(i) && keyframe_aus.last().is_none_or(|&(s, _)| s != au_start) {
                        keyframe_aus.push((au_start, i == 0));
                    }
                    let snapshot = cache.snapshot();
                    prop_assert!(snapshot.len() <= max_packets);
                    prop_assert!(snapshot.iter().map(RtpPacket::len).sum::<usize>() <= max_bytes);
                    prop_assert!(cache.bytes() <= max_bytes);
                    let Some(&(k, flag_first)) = keyframe_aus.last() else {
                        prop_assert!(snapshot.is_empty());
                        continue;
                    };
                    if !snapshot.is_empty() {
                        // Exactly everything since the latest keyframe access unit began.
                        prop_assert_eq!(snapshot, &pushed[k..]);
                    } else if flag_first {
                        let tail = &pushed[k..];
                        let fits = tail.len() <= max_packets && tail.iter().map(RtpPacket::len).sum::<usize>() <= max_bytes;
                        prop_assert!(!fits, "a GOP that fits is cached");
                    }
                }
            }
        }

        #[test]
        fn frame_gate_sends_whole_frames_or_none(
            aus in access_units(),
            free in prop::collection::vec(1..12usize, 1..50),
            video in any::<bool>(),
        ) {
            let resume = if video { ResumeAt::NextKeyframe } else { ResumeAt::NextFrame };
            let mut gate = FrameGate::new(resume, 6);
            let mut waiting = false;
            for (n, (sizes, flag_at)) in aus.iter().enumerate() {
                let mut sent = Vec::new();
                for (i, &size) in sizes.iter().enumerate() {
                    let p = packet(0, n as u32, i + 1 == sizes.len(), &vec![0; size]);
                    sent.push(gate.admit(&p, *flag_at == Some(i), free[(n + i) % free.len()]) == Admit::Send);
                }
                let first_sent = sent.iter().position(|&s| s);
                match first_sent {
                    // Never cut: from the first packet sent, all of the frame is sent.
                    Some(i) => {
                        prop_assert!(sent[i..].iter().all(|&s| s));
                        // Mid-frame starts only when resuming at a keyframe flag.
                        prop_assert!(i == 0 || *flag_at == Some(i));
                        if waiting {
                            prop_assert_eq!(*flag_at, Some(i), "video resumes at a keyframe");
                        }
                        waiting = false;
                    }
                    None => waiting = video,
                }
            }
            prop_assert_eq!(gate.stats().truncated, 0);
        }
    }
}
