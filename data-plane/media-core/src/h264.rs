//! H.264 over RTP (RFC 6184, non-interleaved mode) as far as a relay needs it: which NAL
//! units a payload carries, whether a packet starts a keyframe, and the parameter sets, in-band
//! or from SDP. Payloads are never reassembled or rewritten: packets are relayed as received.
//!
//! Frames (access units) are found by RTP timestamp and marker bit with
//! [`crate::gop::FrameBoundary`]: all slices of one picture share a timestamp (x264
//! `-tune zerolatency` sends several), and nothing may be inserted between them.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

pub const NAL_SLICE: u8 = 1;
pub const NAL_IDR: u8 = 5;
pub const NAL_SEI: u8 = 6;
pub const NAL_SPS: u8 = 7;
pub const NAL_PPS: u8 = 8;
pub const NAL_AUD: u8 = 9;
pub const STAP_A: u8 = 24;
pub const FU_A: u8 = 28;

/// The type in a one-byte NAL unit header.
pub fn nal_type(header: u8) -> u8 {
    header & 0x1f
}

/// Why a payload is not valid RFC 6184 packetization. A relay still forwards such packets;
/// it only cannot use them for keyframe detection or parameter sets.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidH264 {
    #[error("empty h264 rtp payload")]
    Empty,
    #[error("stap-a with no nal units")]
    StapEmpty,
    #[error("stap-a nal unit at byte {offset}: needs {needed} bytes, payload has {len}")]
    StapOverrun {
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("stap-a nal unit at byte {offset} has length 0")]
    StapZeroLength { offset: usize },
    #[error("fu-a of {len} bytes, shorter than its 2-byte header")]
    FuTooShort { len: usize },
    #[error("fu-a with both start and end bits")]
    FuStartAndEnd,
    #[error("h264 packet type {nal_type} is not supported (non-interleaved mode only)")]
    Unsupported { nal_type: u8 },
}

/// What one RTP payload carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H264Payload<'a> {
    /// One whole NAL unit (types 1–23), header included.
    Single(&'a [u8]),
    /// Several whole NAL units (bounds already checked).
    StapA(StapA<'a>),
    FuA(FuA<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StapA<'a> {
    /// After the STAP-A header byte: (16-bit size, NAL unit) repeated.
    units: &'a [u8],
}

impl<'a> StapA<'a> {
    pub fn nal_units(&self) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let mut rest = self.units;
        std::iter::from_fn(move || {
            let (size, tail) = rest.split_first_chunk::<2>()?;
            let (nal, tail) = tail.split_at_checked(usize::from(u16::from_be_bytes(*size)))?;
            rest = tail;
            Some(nal)
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FuA<'a> {
    pub start: bool,
    pub end: bool,
    /// The fragmented unit's header: F and NRI from the indicator, type from the FU header.
    pub nal_header: u8,
    pub fragment: &'a [u8],
}

impl FuA<'_> {
    pub fn nal_type(&self) -> u8 {
        nal_type(self.nal_header)
    }
}

pub fn parse_payload(payload: &[u8]) -> Result<H264Payload<'_>, InvalidH264> {
    let Some(&indicator) = payload.first() else {
        return Err(InvalidH264::Empty);
    };
    match nal_type(indicator) {
        1..=23 => Ok(H264Payload::Single(payload)),
        STAP_A => {
            let len = payload.len();
            let mut at = 1;
            while at < len {
                let Some(&[hi, lo]) = payload.get(at..at + 2) else {
                    return Err(InvalidH264::StapOverrun {
                        offset: at,
                        needed: at + 2,
                        len,
                    });
                };
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                if size == 0 {
                    return Err(InvalidH264::StapZeroLength { offset: at });
                }
                let needed = at + 2 + size;
                if needed > len {
                    return Err(InvalidH264::StapOverrun {
                        offset: at,
                        needed,
                        len,
                    });
                }
                at = needed;
            }
            if len == 1 {
                return Err(InvalidH264::StapEmpty);
            }
            Ok(H264Payload::StapA(StapA {
                units: &payload[1..],
            }))
        }
        FU_A => {
            let Some(&[_, fu_header]) = payload.get(..2) else {
                return Err(InvalidH264::FuTooShort { len: payload.len() });
            };
            let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
            if start && end {
                return Err(InvalidH264::FuStartAndEnd);
            }
            Ok(H264Payload::FuA(FuA {
                start,
                end,
                nal_header: indicator & 0xe0 | nal_type(fu_header),
                fragment: &payload[2..],
            }))
        }
        nal_type => Err(InvalidH264::Unsupported { nal_type }),
    }
}

/// True when the packet begins a keyframe's data: an IDR slice (any slice of it: with
/// several slices per picture a lost first one must not hide the keyframe), or an SPS, which
/// ffmpeg, x264 and GStreamer send at the start of an IDR access unit (usually in a STAP-A
/// with the PPS). Group with the other packets of the same timestamp to find the access
/// unit's first packet; [`crate::gop::GopCache`] does that.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    let starts = |t| t == NAL_IDR || t == NAL_SPS;
    match parse_payload(payload) {
        Ok(H264Payload::Single(nal)) => starts(nal_type(nal[0])),
        Ok(H264Payload::StapA(stap)) => stap.nal_units().any(|nal| starts(nal_type(nal[0]))),
        Ok(H264Payload::FuA(fu)) => fu.start && starts(fu.nal_type()),
        Err(_) => false,
    }
}

/// Appends a STAP-A carrying `nal_units` (each with its header, non-empty, < 64 KiB).
pub fn write_stap_a(nal_units: &[&[u8]], buf: &mut BytesMut) -> Result<(), InvalidH264> {
    let nri = nal_units
        .iter()
        .filter_map(|n| n.first())
        .map(|h| h & 0x60)
        .max();
    let Some(nri) = nri else {
        return Err(InvalidH264::StapEmpty);
    };
    let start = buf.len();
    buf.put_u8(nri | STAP_A);
    for nal in nal_units {
        let size = u16::try_from(nal.len()).ok().filter(|&s| s > 0);
        let Some(size) = size else {
            let (offset, needed) = (buf.len() - start, nal.len());
            buf.truncate(start);
            return Err(if needed == 0 {
                InvalidH264::StapZeroLength { offset }
            } else {
                InvalidH264::StapOverrun {
                    offset,
                    needed,
                    len: usize::from(u16::MAX),
                }
            });
        };
        buf.put_u16(size);
        buf.put_slice(nal);
    }
    Ok(())
}

/// Appends one FU-A fragment of the NAL unit whose header is `nal_header`.
pub fn write_fu_a(nal_header: u8, fragment: &[u8], start: bool, end: bool, buf: &mut BytesMut) {
    buf.put_u8(nal_header & 0xe0 | FU_A);
    buf.put_u8(u8::from(start) << 7 | u8::from(end) << 6 | nal_type(nal_header));
    buf.put_slice(fragment);
}

/// Why an SDP `sprop-*` value cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{parameter} entry {index}: invalid base64 at character {at}")]
pub struct InvalidSprop {
    pub parameter: &'static str,
    pub index: usize,
    pub at: usize,
}

/// The current SPS and PPS of a stream: from SDP first, then replaced by in-band copies.
/// One of each is kept (the last seen); streams with several PPS ids still relay fine.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H264ParameterSets {
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

impl H264ParameterSets {
    /// From an fmtp attribute's parameters, e.g.
    /// `packetization-mode=1; sprop-parameter-sets=Z2QAH6y0...,aO88sA==; profile-level-id=64001f`.
    pub fn from_fmtp(params: &str) -> Result<Self, InvalidSprop> {
        match fmtp_param(params, "sprop-parameter-sets") {
            Some(value) => Self::from_sprop(value),
            None => Ok(Self::default()),
        }
    }

    /// From a `sprop-parameter-sets` value: comma-separated base64 NAL units. Units other
    /// than SPS and PPS, and empty entries, are skipped.
    pub fn from_sprop(value: &str) -> Result<Self, InvalidSprop> {
        let mut sets = Self::default();
        for nal in decode_sprop("sprop-parameter-sets", value)? {
            sets.take(nal);
        }
        Ok(sets)
    }

    /// The `sprop-parameter-sets` value for an SDP, or `None` without both sets.
    pub fn to_sprop(&self) -> Option<String> {
        let (sps, pps) = (self.sps.as_ref()?, self.pps.as_ref()?);
        Some(format!("{},{}", base64_encode(sps), base64_encode(pps)))
    }

    /// `profile-level-id` (hex of the SPS bytes after the header).
    pub fn profile_level_id(&self) -> Option<String> {
        let b = self.sps.as_ref()?.get(1..4)?;
        Some(format!("{:02x}{:02x}{:02x}", b[0], b[1], b[2]))
    }

    /// Takes the SPS and PPS carried whole in a packet (single NAL or STAP-A; fragmented
    /// parameter sets are not reassembled). Returns true when either changed. The sets are
    /// slices of `payload`, not copies.
    pub fn update_from_payload(&mut self, payload: &Bytes) -> bool {
        let mut changed = false;
        match parse_payload(payload) {
            Ok(H264Payload::Single(nal)) => changed = self.take(payload.slice_ref(nal)),
            Ok(H264Payload::StapA(stap)) => {
                for nal in stap.nal_units() {
                    changed |= self.take(payload.slice_ref(nal));
                }
            }
            _ => {}
        }
        changed
    }

    /// Keeps `nal` if it is a new SPS or PPS.
    fn take(&mut self, nal: Bytes) -> bool {
        let slot = match nal.first().map(|&h| nal_type(h)) {
            Some(NAL_SPS) => &mut self.sps,
            Some(NAL_PPS) => &mut self.pps,
            _ => return false,
        };
        let changed = slot.as_ref() != Some(&nal);
        *slot = Some(nal);
        changed
    }
}

/// The value of `key` in fmtp parameters (`a=b; c=d`), keys compared case-insensitively.
pub(crate) fn fmtp_param<'a>(params: &'a str, key: &str) -> Option<&'a str> {
    params
        .split(';')
        .filter_map(|p| p.trim().split_once('='))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(key))
        .map(|(_, v)| v.trim())
}

/// Decodes a comma-separated list of base64 NAL units, skipping empty ones.
pub(crate) fn decode_sprop(
    parameter: &'static str,
    value: &str,
) -> Result<Vec<Bytes>, InvalidSprop> {
    value
        .split(',')
        .map(str::trim)
        .filter(|entry| !entry.is_empty())
        .enumerate()
        .map(|(index, entry)| {
            base64_decode(entry)
                .map(Bytes::from)
                .map_err(|at| InvalidSprop {
                    parameter,
                    index,
                    at,
                })
        })
        .filter(|nal| nal.as_ref().map_or(true, |n| !n.is_empty()))
        .collect()
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Standard alphabet; padding optional. The error is the index of the offending character.
pub(crate) fn base64_decode(text: &str) -> Result<Vec<u8>, usize> {
    let data = text.trim_end_matches('=');
    let mut out = Vec::with_capacity(data.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for (i, c) in data.bytes().enumerate() {
        let value = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return Err(i),
        };
        acc = acc << 6 | u32::from(value);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    // One character alone cannot carry a byte; more than two '=' never occur.
    if data.len() % 4 == 1 || text.len() - data.len() > 2 {
        return Err(data.len());
    }
    Ok(out)
}

pub(crate) fn base64_encode(data: &[u8]) -> String {
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(BASE64[(n >> (18 - 6 * i) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) mod tests {
    use super::*;
    use crate::rtp::RtpPacket;
    use proptest::prelude::*;

    pub(crate) fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap());
        bytes.collect::<Vec<u8>>().into()
    }

    /// The first packet ffmpeg sends for libx264 `-tune zerolatency` at 720p: a STAP-A with
    /// SPS, PPS and x264's SEI.
    const X264_STAP_A: [&str; 15] = [
        "80600391db480fa3cbadc83b1800186764001facb402802dd80880000003008000001e478c1950000468ef3cb0027706",
        "05ffff73dc45e9bde6d948b7962cd820d923eeef78323634202d20636f72652031363420723330393520626165653430",
        "30202d20482e3236342f4d5045472d342041564320636f646563202d20436f70796c65667420323030332d3230323220",
        "2d20687474703a2f2f7777772e766964656f6c616e2e6f72672f783236342e68746d6c202d206f7074696f6e733a2063",
        "616261633d31207265663d31206465626c6f636b3d313a303a3020616e616c7973653d3078333a3078313133206d653d",
        "686578207375626d653d32207073793d31207073795f72643d312e30303a302e3030206d697865645f7265663d30206d",
        "655f72616e67653d3136206368726f6d615f6d653d31207472656c6c69733d30203878386463743d312063716d3d3020",
        "646561647a6f6e653d32312c313120666173745f70736b69703d31206368726f6d615f71705f6f66667365743d302074",
        "6872656164733d32206c6f6f6b61686561645f746872656164733d3220736c696365645f746872656164733d3120736c",
        "696365733d32206e723d3020646563696d6174653d3120696e7465726c616365643d3020626c757261795f636f6d7061",
        "743d3020636f6e73747261696e65645f696e7472613d3020626672616d65733d3020776569676874703d31206b657969",
        "6e743d3330206b6579696e745f6d696e3d33207363656e656375743d343020696e7472615f726566726573683d302072",
        "633d616272206d62747265653d3020626974726174653d323030302072617465746f6c3d312e302071636f6d703d302e",
        "36302071706d696e3d302071706d61783d3639207170737465703d342069705f726174696f3d312e34302061713d313a",
        "312e30300080",
    ];

    /// The packets after it, cut to 8 payload bytes: the rest of the IDR access unit (two
    /// slices, each in FU-A), a P access unit (a single-NAL slice, then an FU-A slice) and the
    /// first packet of the next one.
    const X264_REST: [&str; 20] = [
        "80600392db480fa3cbadc83b7c858884083fda5b",
        "80600393db480fa3cbadc83b7c05e95464128a06",
        "80600394db480fa3cbadc83b7c05f3d7927ac765",
        "80600395db480fa3cbadc83b7c45d9eb3aab920f",
        "80600396db480fa3cbadc83b7c850039888840db",
        "80600397db480fa3cbadc83b7c05e999c4724aae",
        "80600398db480fa3cbadc83b7c058ff86af29a6a",
        "80600399db480fa3cbadc83b7c05348829a38b98",
        "8060039adb480fa3cbadc83b7c05f337415d7de8",
        "8060039bdb480fa3cbadc83b7c05ce940d8f653b",
        "8060039cdb480fa3cbadc83b7c059497200973ce",
        "8060039ddb480fa3cbadc83b7c050ea0ef791aff",
        "80e0039edb480fa3cbadc83b7c45a3ce9d61be00",
        "8060039fdb481b5bcbadc83b419a262167ffdbcf",
        "806003a0db481b5bcbadc83b5c81003989a26213",
        "806003a1db481b5bcbadc83b5c01cf076fc11c4c",
        "806003a2db481b5bcbadc83b5c014006390d794c",
        "806003a3db481b5bcbadc83b5c01b7e18d5438e2",
        "80e003a4db481b5bcbadc83b5c418644641b75b0",
        "806003a5db482713cbadc83b419a462147ffdc1c",
    ];

    /// 21 real packets: a 14-packet keyframe access unit, a 6-packet P access unit, one more.
    pub(crate) fn x264_packets() -> Vec<RtpPacket> {
        let first = RtpPacket::parse(hex(&X264_STAP_A.concat())).unwrap();
        let rest = X264_REST.iter().map(|h| RtpPacket::parse(hex(h)).unwrap());
        std::iter::once(first).chain(rest).collect()
    }

    const SPROP: &str = "Z2QAH6y0AoAt2AiAAAADAIAAAB5HjBlQ,aO88sA==";

    #[test]
    fn x264_stap_a_carries_sps_pps_sei_and_starts_a_keyframe() {
        let packet = &x264_packets()[0];
        let Ok(H264Payload::StapA(stap)) = parse_payload(packet.payload()) else {
            panic!()
        };
        let units: Vec<_> = stap
            .nal_units()
            .map(|n| (nal_type(n[0]), n.len()))
            .collect();
        assert_eq!(units, [(NAL_SPS, 24), (NAL_PPS, 4), (NAL_SEI, 631)]);
        assert!(is_keyframe_start(packet.payload()));

        let mut sets = H264ParameterSets::default();
        let payload = packet.payload_bytes();
        assert!(sets.update_from_payload(&payload));
        assert!(!sets.update_from_payload(&payload), "unchanged");
        let sps = sets.sps.as_ref().unwrap();
        assert_eq!(sps.as_ptr(), payload[3..].as_ptr(), "a slice, not a copy");
        assert_eq!(sets.profile_level_id().as_deref(), Some("64001f"));
        assert_eq!(sets.to_sprop().as_deref(), Some(SPROP));
        let fmtp =
            format!("packetization-mode=1; Sprop-Parameter-Sets={SPROP},; profile-level-id=64001F");
        assert_eq!(H264ParameterSets::from_fmtp(&fmtp), Ok(sets));
    }

    #[test]
    fn multi_slice_idr_in_fu_a_and_p_frame() {
        let packets = x264_packets();
        let (idr, p_frame) = (&packets[1..14], &packets[14..20]);
        let fu = |p: &RtpPacket| match parse_payload(p.payload()) {
            Ok(H264Payload::FuA(fu)) => (fu.start, fu.end, fu.nal_header),
            other => panic!("{other:?}"),
        };
        let starts: Vec<_> = idr
            .iter()
            .enumerate()
            .filter(|(_, p)| fu(p).0)
            .map(|(i, _)| i)
            .collect();
        assert_eq!(starts, [0, 4], "two slices");
        assert!(
            idr.iter()
                .all(|p| fu(p).2 == 0x65 && p.timestamp() == packets[0].timestamp())
        );
        assert_eq!(idr.iter().map(|p| p.marker()).filter(|&m| m).count(), 1);
        assert!((fu(&idr[3]).1, idr[12].marker()) == (true, true));
        let keyframe: Vec<_> = idr.iter().map(|p| is_keyframe_start(p.payload())).collect();
        assert_eq!(
            keyframe.iter().filter(|&&k| k).count(),
            2,
            "each IDR slice start"
        );

        assert!(
            matches!(parse_payload(p_frame[0].payload()), Ok(H264Payload::Single(n)) if nal_type(n[0]) == NAL_SLICE)
        );
        assert_eq!(fu(&p_frame[1]), (true, false, 0x41));
        assert!(p_frame.iter().all(|p| !is_keyframe_start(p.payload())));
    }

    #[test]
    fn rejects_malformed_payloads_precisely() {
        use InvalidH264::*;
        let cases = [
            ("", Empty),
            ("18", StapEmpty),
            (
                "18 0002 6742 00",
                StapOverrun {
                    offset: 5,
                    needed: 7,
                    len: 6,
                },
            ),
            (
                "18 0003 6742",
                StapOverrun {
                    offset: 1,
                    needed: 6,
                    len: 5,
                },
            ),
            ("18 0000", StapZeroLength { offset: 1 }),
            ("7c", FuTooShort { len: 1 }),
            ("7c c5 00", FuStartAndEnd),
            ("19 0000", Unsupported { nal_type: 25 }),
            ("00", Unsupported { nal_type: 0 }),
        ];
        for (bytes, error) in cases {
            assert_eq!(parse_payload(&hex(bytes)), Err(error), "{bytes}");
        }
        let bad = H264ParameterSets::from_sprop("Z2QA,aO8*sA==");
        assert_eq!(
            bad,
            Err(InvalidSprop {
                parameter: "sprop-parameter-sets",
                index: 1,
                at: 3
            })
        );
        assert_eq!(
            H264ParameterSets::from_fmtp("packetization-mode=1"),
            Ok(H264ParameterSets::default())
        );
    }

    #[test]
    fn base64_matches_rfc_4648_vectors() {
        for (plain, coded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64_encode(plain.as_bytes()), coded);
            assert_eq!(base64_decode(coded).unwrap(), plain.as_bytes());
        }
        assert_eq!(
            base64_decode("Zm8"),
            Ok(b"fo".to_vec()),
            "padding is optional"
        );
        assert_eq!(base64_decode("Zm9vY"), Err(5));
        assert_eq!(base64_decode("Zg==="), Err(2));
    }

    fn nal() -> impl Strategy<Value = Vec<u8>> {
        (1..24u8, prop::collection::vec(any::<u8>(), 0..40)).prop_map(|(t, mut body)| {
            body.insert(0, 0x60 | t);
            body
        })
    }

    proptest! {
        #[test]
        fn parse_never_panics(payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_payload(&payload);
            let _ = is_keyframe_start(&payload);
            H264ParameterSets::default().update_from_payload(&Bytes::from(payload));
        }

        #[test]
        fn stap_a_round_trips(units in prop::collection::vec(nal(), 1..5)) {
            let units: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
            let mut buf = BytesMut::new();
            write_stap_a(&units, &mut buf).unwrap();
            let Ok(H264Payload::StapA(stap)) = parse_payload(&buf) else { panic!() };
            prop_assert_eq!(stap.nal_units().collect::<Vec<_>>(), units);
        }

        #[test]
        fn fu_a_fragments_reassemble(unit in nal(), size in 1..20usize) {
            let mut chunks: Vec<&[u8]> = unit[1..].chunks(size).collect();
            while chunks.len() < 2 {
                chunks.push(&[]);
            }
            let mut rebuilt = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut buf = BytesMut::new();
                let (start, end) = (i == 0, i == chunks.len() - 1);
                write_fu_a(unit[0], chunk, start, end, &mut buf);
                let Ok(H264Payload::FuA(fu)) = parse_payload(&buf) else { panic!() };
                prop_assert_eq!((fu.start, fu.end, fu.nal_header), (start, end, unit[0]));
                if fu.start {
                    rebuilt.push(fu.nal_header);
                }
                rebuilt.extend_from_slice(fu.fragment);
            }
            prop_assert_eq!(rebuilt, unit);
        }
    }
}
