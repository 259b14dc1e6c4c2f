//! H.264 helpers of the load client: Annex-B access units, RTP packetization (single NAL / FU-A),
//! the timestamp SEI (`user_data_unregistered`) and keyframe detection in RTP payloads.

/// Identifies our SEI among others (x264 writes its own `user_data_unregistered` with its version).
pub const SEI_UUID: [u8; 16] = *b"SPLN-latency-v1\0";

/// NAL unit types.
const NAL_IDR: u8 = 5;
const NAL_SEI: u8 = 6;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;
const NAL_AUD: u8 = 9;
const STAP_A: u8 = 24;
const FU_A: u8 = 28;

/// Splits an Annex-B byte stream into NAL units (without start codes).
pub fn split_annex_b(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &start) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |next| next - 3);
        // A 4-byte start code leaves a zero before the next 00 00 01; trailing zeros are not NAL data.
        while end > start && data[end - 1] == 0 {
            end -= 1;
        }
        if end > start {
            nals.push(&data[start..end]);
        }
    }
    nals
}

fn is_vcl(nal_type: u8) -> bool {
    (1..=5).contains(&nal_type)
}

/// Groups NAL units into access units (H.264 7.4.1.2.3): a new AU starts at an AUD/SEI/SPS/PPS
/// after a slice, or at a slice whose `first_mb_in_slice` is 0 (ue(v) = 0 is a single `1` bit).
/// All slices of a multi-slice frame stay in one AU.
pub fn access_units<'a>(nals: &[&'a [u8]]) -> Vec<Vec<&'a [u8]>> {
    let mut aus: Vec<Vec<&[u8]>> = Vec::new();
    let mut current: Vec<&[u8]> = Vec::new();
    let mut seen_vcl = false;
    for &nal in nals {
        let nal_type = nal[0] & 0x1f;
        let starts_au = if is_vcl(nal_type) {
            seen_vcl && nal.len() > 1 && nal[1] & 0x80 != 0
        } else {
            seen_vcl && matches!(nal_type, NAL_SEI | NAL_SPS | NAL_PPS | NAL_AUD | 14..=18)
        };
        if starts_au && !current.is_empty() {
            aus.push(std::mem::take(&mut current));
            seen_vcl = false;
        }
        seen_vcl |= is_vcl(nal_type);
        current.push(nal);
    }
    if !current.is_empty() {
        aus.push(current);
    }
    aus
}

/// The SPS and PPS of a stream (first of each), for the SDP.
pub fn parameter_sets<'a>(nals: &[&'a [u8]]) -> Option<(&'a [u8], &'a [u8])> {
    let sps = nals.iter().find(|n| n[0] & 0x1f == NAL_SPS)?;
    let pps = nals.iter().find(|n| n[0] & 0x1f == NAL_PPS)?;
    Some((sps, pps))
}

/// Inserts emulation prevention bytes (RBSP -> EBSP).
fn escape(rbsp: &[u8], out: &mut Vec<u8>) {
    let mut zeros = 0;
    for &b in rbsp {
        if zeros >= 2 && b <= 3 {
            out.push(3);
            zeros = 0;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
}

/// Removes emulation prevention bytes (EBSP -> RBSP).
fn unescape(ebsp: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(ebsp.len());
    let mut zeros = 0;
    for &b in ebsp {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        out.push(b);
        zeros = if b == 0 { zeros + 1 } else { 0 };
    }
    out
}

/// A SEI NAL unit (with header) carrying `send_ns` (ns since the Unix epoch) and a frame number.
pub fn timestamp_sei(send_ns: u64, frame: u64) -> Vec<u8> {
    let mut rbsp = Vec::with_capacity(40);
    rbsp.push(5); // payloadType: user_data_unregistered
    rbsp.push(32); // payloadSize: UUID + two u64
    rbsp.extend_from_slice(&SEI_UUID);
    rbsp.extend_from_slice(&send_ns.to_be_bytes());
    rbsp.extend_from_slice(&frame.to_be_bytes());
    rbsp.push(0x80); // rbsp_trailing_bits
    let mut nal = vec![NAL_SEI]; // forbidden 0, nal_ref_idc 0, type 6
    escape(&rbsp, &mut nal);
    nal
}

/// Finds our timestamp in a SEI NAL unit (with header): `(send_ns, frame)`.
pub fn parse_timestamp_sei(nal: &[u8]) -> Option<(u64, u64)> {
    if nal.first()? & 0x1f != NAL_SEI {
        return None;
    }
    let rbsp = unescape(&nal[1..]);
    let mut pos = 0;
    while pos < rbsp.len() && rbsp[pos] != 0x80 {
        let mut read_value = || {
            let mut value = 0usize;
            loop {
                let b = *rbsp.get(pos)?;
                pos += 1;
                value += usize::from(b);
                if b != 0xff {
                    return Some(value);
                }
            }
        };
        let payload_type = read_value()?;
        let size = read_value()?;
        let payload = rbsp.get(pos..pos + size)?;
        if payload_type == 5 && size >= 32 && payload[..16] == SEI_UUID {
            let send = u64::from_be_bytes(payload[16..24].try_into().ok()?);
            let frame = u64::from_be_bytes(payload[24..32].try_into().ok()?);
            return Some((send, frame));
        }
        pos += size;
    }
    None
}

/// Calls `f` with each NAL unit (or, for FU-A, the reassembled header + first fragment) that
/// starts in this RTP payload.
fn for_each_nal_start(payload: &[u8], mut f: impl FnMut(&[u8]) -> bool) -> bool {
    let Some(&first) = payload.first() else {
        return false;
    };
    match first & 0x1f {
        STAP_A => {
            let mut off = 1;
            while off + 2 <= payload.len() {
                let size = usize::from(u16::from_be_bytes([payload[off], payload[off + 1]]));
                let Some(nal) = payload.get(off + 2..off + 2 + size) else {
                    return false;
                };
                if !nal.is_empty() && f(nal) {
                    return true;
                }
                off += 2 + size;
            }
            false
        }
        FU_A => {
            if payload.len() < 2 || payload[1] & 0x80 == 0 {
                return false;
            }
            let mut nal = Vec::with_capacity(payload.len() - 1);
            nal.push((first & 0xe0) | (payload[1] & 0x1f));
            nal.extend_from_slice(&payload[2..]);
            f(&nal)
        }
        1..=23 => f(payload),
        _ => false,
    }
}

/// True when an RTP payload starts an IDR slice or an SPS (single NAL, STAP-A or FU-A start).
pub fn starts_keyframe(payload: &[u8]) -> bool {
    for_each_nal_start(payload, |nal| matches!(nal[0] & 0x1f, NAL_IDR | NAL_SPS))
}

/// Our send timestamp, when this RTP payload carries the timestamp SEI.
pub fn find_timestamp(payload: &[u8]) -> Option<u64> {
    // Cheap pre-check: only SEI, STAP-A and FU-A can carry it.
    let kind = payload.first()? & 0x1f;
    if kind == FU_A && payload.get(1)? & 0x1f != NAL_SEI {
        return None;
    }
    if !matches!(kind, NAL_SEI | STAP_A | FU_A) {
        return None;
    }
    let mut found = None;
    for_each_nal_start(payload, |nal| {
        found = parse_timestamp_sei(nal).map(|(send, _)| send);
        found.is_some()
    });
    found
}

/// RTP packetizer for one H.264 track (RFC 6184 mode 1: single NAL and FU-A).
pub struct Packetizer {
    pub ssrc: u32,
    pub seq: u16,
    pub max_payload: usize,
}

impl Packetizer {
    fn header(&mut self, out: &mut Vec<u8>, timestamp: u32, marker: bool) {
        out.push(0x80);
        out.push(96 | if marker { 0x80 } else { 0 });
        out.extend_from_slice(&self.seq.to_be_bytes());
        out.extend_from_slice(&timestamp.to_be_bytes());
        out.extend_from_slice(&self.ssrc.to_be_bytes());
        self.seq = self.seq.wrapping_add(1);
    }

    /// RTP packets of one access unit: all share `timestamp`, the marker is on the last one.
    pub fn packetize(&mut self, nals: &[&[u8]], timestamp: u32) -> Vec<Vec<u8>> {
        let mut packets = Vec::new();
        for (i, nal) in nals.iter().enumerate() {
            let last_nal = i + 1 == nals.len();
            if nal.len() <= self.max_payload {
                let mut p = Vec::with_capacity(12 + nal.len());
                self.header(&mut p, timestamp, last_nal);
                p.extend_from_slice(nal);
                packets.push(p);
                continue;
            }
            let indicator = (nal[0] & 0xe0) | FU_A;
            let nal_type = nal[0] & 0x1f;
            let chunks: Vec<&[u8]> = nal[1..].chunks(self.max_payload - 2).collect();
            for (k, chunk) in chunks.iter().enumerate() {
                let start = k == 0;
                let end = k + 1 == chunks.len();
                let mut p = Vec::with_capacity(14 + chunk.len());
                self.header(&mut p, timestamp, last_nal && end);
                p.push(indicator);
                p.push(nal_type | if start { 0x80 } else { 0 } | if end { 0x40 } else { 0 });
                p.extend_from_slice(chunk);
                packets.push(p);
            }
        }
        packets
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sei_round_trips_through_emulation_prevention() {
        // Times with 00 00 0x runs force emulation prevention bytes.
        for send in [
            0u64,
            1,
            0x0000_0001_0000_0000,
            0x1234_0000_0300_0001,
            u64::MAX,
        ] {
            let nal = timestamp_sei(send, 7);
            assert!(
                !nal.windows(3)
                    .any(|w| w[0] == 0 && w[1] == 0 && w[2] <= 3 && w[2] != 3)
            );
            assert_eq!(parse_timestamp_sei(&nal), Some((send, 7)));
            assert_eq!(find_timestamp(&nal), Some(send));
        }
        // Someone else's user data is not ours.
        let mut other = timestamp_sei(5, 1);
        other[3] ^= 0xff;
        assert_eq!(parse_timestamp_sei(&other), None);
    }

    #[test]
    fn sei_found_in_stap_a_and_fu_a() {
        let sei = timestamp_sei(1_700_000_000_000_000_000, 3);
        let mut stap = vec![STAP_A];
        for nal in [&[0x67u8, 0x42, 0x00][..], &sei] {
            stap.extend_from_slice(&u16::try_from(nal.len()).expect("small").to_be_bytes());
            stap.extend_from_slice(nal);
        }
        assert_eq!(find_timestamp(&stap), Some(1_700_000_000_000_000_000));
        assert!(starts_keyframe(&stap), "STAP-A with an SPS");

        // An FU-A start fragment that holds the whole SEI message (a NAL larger than the MTU).
        let mut long = sei.clone();
        long.extend_from_slice(&[0xaa; 60]);
        let mut packetizer = Packetizer {
            ssrc: 1,
            seq: 0,
            max_payload: 50,
        };
        let packets = packetizer.packetize(&[&long], 0);
        assert!(packets.len() > 1);
        assert_eq!(packets[0][12] & 0x1f, FU_A);
        assert_eq!(
            find_timestamp(&packets[0][12..]),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(find_timestamp(&packets[1][12..]), None);
    }

    #[test]
    fn keyframes_detected() {
        assert!(starts_keyframe(&[0x65, 0x88])); // IDR slice
        assert!(starts_keyframe(&[0x67, 0x42])); // SPS
        assert!(!starts_keyframe(&[0x41, 0x9a])); // non-IDR slice
        assert!(!starts_keyframe(&[0x68, 0xce])); // PPS alone
        assert!(starts_keyframe(&[0x7c, 0x85, 0x88])); // FU-A start of an IDR
        assert!(!starts_keyframe(&[0x7c, 0x05, 0x88])); // FU-A continuation
        assert!(!starts_keyframe(&[0x7c, 0x81, 0x9a])); // FU-A start of a P slice
        assert!(!starts_keyframe(&[]));
    }

    #[test]
    fn multi_slice_frames_stay_in_one_access_unit() {
        let sps: &[u8] = &[0x67, 0x42];
        let pps: &[u8] = &[0x68, 0xce];
        let idr0: &[u8] = &[0x65, 0x88]; // first_mb_in_slice = 0
        let idr1: &[u8] = &[0x65, 0x40]; // first_mb_in_slice != 0
        let p0: &[u8] = &[0x41, 0x9a];
        let p1: &[u8] = &[0x41, 0x20];
        let aus = access_units(&[sps, pps, idr0, idr1, p0, p1, p0]);
        assert_eq!(
            aus,
            vec![vec![sps, pps, idr0, idr1], vec![p0, p1], vec![p0]]
        );

        let stream = [&[0, 0, 0, 1][..], sps, &[0, 0, 1], pps, &[0, 0, 0, 1], idr0].concat();
        assert_eq!(split_annex_b(&stream), vec![sps, pps, idr0]);
    }

    #[test]
    fn fu_a_marks_only_the_last_packet_of_the_access_unit() {
        let big = [&[0x65u8][..], &[0xab; 50]].concat();
        let mut packetizer = Packetizer {
            ssrc: 9,
            seq: 65535,
            max_payload: 20,
        };
        let packets = packetizer.packetize(&[&[0x06, 1, 2], &big, &big], 3000);
        let markers: Vec<bool> = packets.iter().map(|p| p[1] & 0x80 != 0).collect();
        assert_eq!(markers.iter().filter(|m| **m).count(), 1);
        assert!(markers[markers.len() - 1]);
        assert!(packets.iter().all(|p| p[4..8] == 3000u32.to_be_bytes()));
        let reassembled: Vec<u8> = [&[0x65u8][..]]
            .into_iter()
            .chain(packets[1..4].iter().map(|p| &p[14..]))
            .flatten()
            .copied()
            .collect();
        assert_eq!(reassembled, big);
        assert_eq!(packets[1][12..14], [0x7c, 0x85]);
        assert_eq!(packets[3][13] & 0x40, 0x40);
    }
}
