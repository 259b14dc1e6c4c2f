//! H.265 over RTP (RFC 7798) as far as a relay needs it: NAL unit types of single, AP and FU
//! payloads, keyframe starts, and parameter sets (`sprop-vps/sps/pps` or in-band).
//!
//! DONL fields (only present when the SDP has `sprop-max-don-diff` > 0, which no common
//! encoder sets) are not supported: such streams are relayed without codec awareness.

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::h264::{InvalidSprop, base64_encode, decode_sprop, fmtp_param};

/// Intra random access point pictures: BLA, IDR and CRA.
pub const IRAP: std::ops::RangeInclusive<u8> = 16..=21;
pub const NAL_VPS: u8 = 32;
pub const NAL_SPS: u8 = 33;
pub const NAL_PPS: u8 = 34;
pub const NAL_AUD: u8 = 35;
pub const NAL_SEI_PREFIX: u8 = 39;
pub const AP: u8 = 48;
pub const FU: u8 = 49;
pub const PACI: u8 = 50;

/// The type in the first byte of a two-byte NAL unit header.
pub fn nal_type(header0: u8) -> u8 {
    (header0 >> 1) & 0x3f
}

/// Why a payload is not valid RFC 7798 packetization (the packet is still relayed).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidH265 {
    #[error("h265 rtp payload of {len} bytes, shorter than the 2-byte header")]
    TooShort { len: usize },
    #[error("aggregation packet with no nal units")]
    ApEmpty,
    #[error(
        "aggregation packet nal unit at byte {offset}: needs {needed} bytes, payload has {len}"
    )]
    ApOverrun {
        offset: usize,
        needed: usize,
        len: usize,
    },
    #[error("aggregation packet nal unit at byte {offset} is shorter than a nal header")]
    ApTooSmallUnit { offset: usize },
    #[error("fragmentation unit of {len} bytes, shorter than its 3-byte header")]
    FuTooShort { len: usize },
    #[error("fragmentation unit with both start and end bits")]
    FuStartAndEnd,
    #[error("h265 packet type {nal_type} is not supported")]
    Unsupported { nal_type: u8 },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum H265Payload<'a> {
    /// One whole NAL unit, header included.
    Single(&'a [u8]),
    /// Several whole NAL units (bounds already checked).
    Ap(Ap<'a>),
    Fu(Fu<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ap<'a> {
    /// After the payload header: (16-bit size, NAL unit) repeated.
    units: &'a [u8],
}

impl<'a> Ap<'a> {
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
pub struct Fu<'a> {
    pub start: bool,
    pub end: bool,
    /// The fragmented unit's header: layer and temporal id from the payload header, type
    /// from the FU header.
    pub nal_header: [u8; 2],
    pub fragment: &'a [u8],
}

impl Fu<'_> {
    pub fn nal_type(&self) -> u8 {
        nal_type(self.nal_header[0])
    }
}

pub fn parse_payload(payload: &[u8]) -> Result<H265Payload<'_>, InvalidH265> {
    let len = payload.len();
    let Some(&[h0, h1]) = payload.get(..2) else {
        return Err(InvalidH265::TooShort { len });
    };
    match nal_type(h0) {
        0..=47 => Ok(H265Payload::Single(payload)),
        AP => {
            let mut at = 2;
            while at < len {
                let Some(&[hi, lo]) = payload.get(at..at + 2) else {
                    return Err(InvalidH265::ApOverrun {
                        offset: at,
                        needed: at + 2,
                        len,
                    });
                };
                let size = usize::from(u16::from_be_bytes([hi, lo]));
                if size < 2 {
                    return Err(InvalidH265::ApTooSmallUnit { offset: at });
                }
                let needed = at + 2 + size;
                if needed > len {
                    return Err(InvalidH265::ApOverrun {
                        offset: at,
                        needed,
                        len,
                    });
                }
                at = needed;
            }
            if len == 2 {
                return Err(InvalidH265::ApEmpty);
            }
            Ok(H265Payload::Ap(Ap {
                units: &payload[2..],
            }))
        }
        FU => {
            let Some(&fu_header) = payload.get(2) else {
                return Err(InvalidH265::FuTooShort { len });
            };
            let (start, end) = (fu_header & 0x80 != 0, fu_header & 0x40 != 0);
            if start && end {
                return Err(InvalidH265::FuStartAndEnd);
            }
            Ok(H265Payload::Fu(Fu {
                start,
                end,
                nal_header: [h0 & 0x81 | (fu_header & 0x3f) << 1, h1],
                fragment: &payload[3..],
            }))
        }
        nal_type => Err(InvalidH265::Unsupported { nal_type }),
    }
}

/// True when the packet begins a keyframe's data: an IRAP picture (BLA, IDR, CRA) or a
/// VPS/SPS/PPS, which encoders send at the start of an IRAP access unit. As with H.264,
/// the access unit's first packet is the first one with the same timestamp.
pub fn is_keyframe_start(payload: &[u8]) -> bool {
    let starts = |t: u8| IRAP.contains(&t) || (NAL_VPS..=NAL_PPS).contains(&t);
    match parse_payload(payload) {
        Ok(H265Payload::Single(nal)) => starts(nal_type(nal[0])),
        Ok(H265Payload::Ap(ap)) => ap.nal_units().any(|nal| starts(nal_type(nal[0]))),
        Ok(H265Payload::Fu(fu)) => fu.start && starts(fu.nal_type()),
        Err(_) => false,
    }
}

/// Appends an aggregation packet carrying `nal_units` (each 2..64 KiB, header included).
pub fn write_ap(nal_units: &[&[u8]], buf: &mut BytesMut) -> Result<(), InvalidH265> {
    // The payload header takes the lowest layer and temporal ids of the units (RFC 7798 4.4.2).
    let mut header: Option<(u8, u8)> = None;
    let mut offset = 2;
    for nal in nal_units {
        let &[h0, h1, ..] = *nal else {
            return Err(InvalidH265::ApTooSmallUnit { offset });
        };
        if nal.len() > usize::from(u16::MAX) {
            let (needed, len) = (offset + 2 + nal.len(), offset + 2 + usize::from(u16::MAX));
            return Err(InvalidH265::ApOverrun {
                offset,
                needed,
                len,
            });
        }
        offset += 2 + nal.len();
        let layer = (h0 & 1) << 5 | h1 >> 3;
        let tid = h1 & 7;
        header = Some(header.map_or((layer, tid), |(l, t)| (l.min(layer), t.min(tid))));
    }
    let Some((layer, tid)) = header else {
        return Err(InvalidH265::ApEmpty);
    };
    buf.put_u8(AP << 1 | layer >> 5);
    buf.put_u8((layer & 0x1f) << 3 | tid);
    for nal in nal_units {
        buf.put_u16(nal.len() as u16);
        buf.put_slice(nal);
    }
    Ok(())
}

/// Appends one fragmentation unit of the NAL unit whose header is `nal_header`.
pub fn write_fu(nal_header: [u8; 2], fragment: &[u8], start: bool, end: bool, buf: &mut BytesMut) {
    buf.put_u8(nal_header[0] & 0x81 | FU << 1);
    buf.put_u8(nal_header[1]);
    buf.put_u8(u8::from(start) << 7 | u8::from(end) << 6 | nal_type(nal_header[0]));
    buf.put_slice(fragment);
}

/// The current VPS, SPS and PPS of a stream (the last of each seen), from SDP and in-band.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H265ParameterSets {
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

impl H265ParameterSets {
    /// From an fmtp attribute's parameters (`sprop-vps=...; sprop-sps=...; sprop-pps=...`).
    /// Each unit goes where its NAL type says, whichever parameter carried it.
    pub fn from_fmtp(params: &str) -> Result<Self, InvalidSprop> {
        let mut sets = Self::default();
        for key in ["sprop-vps", "sprop-sps", "sprop-pps"] {
            if let Some(value) = fmtp_param(params, key) {
                for nal in decode_sprop(key, value)? {
                    sets.take(nal);
                }
            }
        }
        Ok(sets)
    }

    /// `(sprop-vps, sprop-sps, sprop-pps)` values for an SDP, or `None` without all three.
    pub fn to_sprop(&self) -> Option<(String, String, String)> {
        let (vps, sps, pps) = (self.vps.as_ref()?, self.sps.as_ref()?, self.pps.as_ref()?);
        Some((base64_encode(vps), base64_encode(sps), base64_encode(pps)))
    }

    /// Takes parameter sets carried whole in a packet (single NAL or AP; fragmented ones are
    /// not reassembled), as slices of `payload`. Returns true when any changed.
    pub fn update_from_payload(&mut self, payload: &Bytes) -> bool {
        let mut changed = false;
        match parse_payload(payload) {
            Ok(H265Payload::Single(nal)) => changed = self.take(payload.slice_ref(nal)),
            Ok(H265Payload::Ap(ap)) => {
                for nal in ap.nal_units() {
                    changed |= self.take(payload.slice_ref(nal));
                }
            }
            _ => {}
        }
        changed
    }

    fn take(&mut self, nal: Bytes) -> bool {
        let slot = match nal.first().map(|&h| nal_type(h)) {
            Some(NAL_VPS) => &mut self.vps,
            Some(NAL_SPS) => &mut self.sps,
            Some(NAL_PPS) => &mut self.pps,
            _ => return false,
        };
        let changed = slot.as_ref() != Some(&nal);
        *slot = Some(nal);
        changed
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::h264::tests::hex;
    use crate::rtp::RtpPacket;
    use proptest::prelude::*;

    /// ffmpeg/libx265 `-tune zerolatency`: the AP with VPS, SPS and PPS (whole), then packets
    /// cut to 8 payload bytes: SEI in two FUs, an IDR_N_LP in FUs, and the next picture.
    const X265: [&str; 8] = [
        "80600a973376185b59b907bc6001001840010c01ffff01600000030090000003000003003fba0240002b4201010160\
         0000030090000003000003003fa005020171f2e5ba4a4c2f016808000003000800000300f04000064401c0718312",
        "80600a983376185b59b907bc6201a705ffffffff",
        "80600a993376185b59b907bc6201677662762073",
        "80600a9a3376185b59b907bc620194adc60c7774",
        "80600a9b3376185b59b907bc62011429097dd49e",
        "80e00aa23376185b59b907bc6201547734f53896",
        "80600aa33376241359b907bc620181d00978868c",
        "80600aa43376241359b907bc620101cad5f62ad1",
    ];

    const VPS: &str = "QAEMAf//AWAAAAMAkAAAAwAAAwA/ugJA";
    const SPS: &str = "QgEBAWAAAAMAkAAAAwAAAwA/oAUCAXHy5bpKTC8BaAgAAAMACAAAAwDwQA==";
    const PPS: &str = "RAHAcYMS";

    fn packets() -> Vec<RtpPacket> {
        X265.iter()
            .map(|h| RtpPacket::parse(hex(h)).unwrap())
            .collect()
    }

    #[test]
    fn x265_aggregation_packet_carries_vps_sps_pps() {
        let packets = packets();
        let Ok(H265Payload::Ap(ap)) = parse_payload(packets[0].payload()) else {
            panic!()
        };
        let units: Vec<_> = ap.nal_units().map(|n| (nal_type(n[0]), n.len())).collect();
        assert_eq!(units, [(NAL_VPS, 24), (NAL_SPS, 43), (NAL_PPS, 6)]);
        assert!(is_keyframe_start(packets[0].payload()));

        let mut sets = H265ParameterSets::default();
        assert!(sets.update_from_payload(&packets[0].payload_bytes()));
        let sprop = (VPS.to_owned(), SPS.to_owned(), PPS.to_owned());
        assert_eq!(sets.to_sprop(), Some(sprop));
        let fmtp = format!("sprop-vps={VPS}; sprop-sps={SPS}; sprop-pps={PPS}");
        assert_eq!(H265ParameterSets::from_fmtp(&fmtp), Ok(sets));
    }

    #[test]
    fn x265_fragmentation_units_and_keyframes() {
        let packets = packets();
        let fu = |p: &RtpPacket| match parse_payload(p.payload()) {
            Ok(H265Payload::Fu(fu)) => (fu.start, fu.end, fu.nal_type(), fu.nal_header),
            other => panic!("{other:?}"),
        };
        assert_eq!(fu(&packets[1]), (true, false, NAL_SEI_PREFIX, [39 << 1, 1]));
        assert_eq!(fu(&packets[2]), (false, true, NAL_SEI_PREFIX, [39 << 1, 1]));
        assert_eq!(fu(&packets[3]), (true, false, 20, [20 << 1, 1]));
        assert_eq!(fu(&packets[5]).1, packets[5].marker());
        assert_eq!(fu(&packets[6]).2, 1, "TRAIL_R");
        let keyframe: Vec<_> = packets
            .iter()
            .map(|p| is_keyframe_start(p.payload()))
            .collect();
        assert_eq!(
            keyframe,
            [true, false, false, true, false, false, false, false]
        );
    }

    #[test]
    fn rejects_malformed_payloads_precisely() {
        use InvalidH265::*;
        let cases = [
            ("40", TooShort { len: 1 }),
            ("6001", ApEmpty),
            (
                "6001 0003 4001",
                ApOverrun {
                    offset: 2,
                    needed: 7,
                    len: 6,
                },
            ),
            ("6001 0001 40", ApTooSmallUnit { offset: 2 }),
            (
                "6001 0002 4001 00",
                ApOverrun {
                    offset: 6,
                    needed: 8,
                    len: 7,
                },
            ),
            ("6201", FuTooShort { len: 2 }),
            ("6201 d4", FuStartAndEnd),
            ("6401 00", Unsupported { nal_type: PACI }),
            ("7e01", Unsupported { nal_type: 63 }),
        ];
        for (bytes, error) in cases {
            assert_eq!(parse_payload(&hex(bytes)), Err(error), "{bytes}");
        }
        let bad = H265ParameterSets::from_fmtp("sprop-vps=QAEM; sprop-sps=Q!");
        assert_eq!(
            bad,
            Err(InvalidSprop {
                parameter: "sprop-sps",
                index: 0,
                at: 1
            })
        );
    }

    fn nal() -> impl Strategy<Value = Vec<u8>> {
        (
            0..48u8,
            0..64u8,
            1..8u8,
            prop::collection::vec(any::<u8>(), 0..40),
        )
            .prop_map(|(t, layer, tid, mut body)| {
                body.splice(0..0, [t << 1 | layer >> 5, (layer & 0x1f) << 3 | tid]);
                body
            })
    }

    proptest! {
        #[test]
        fn parse_never_panics(payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let _ = parse_payload(&payload);
            let _ = is_keyframe_start(&payload);
            H265ParameterSets::default().update_from_payload(&Bytes::from(payload));
        }

        #[test]
        fn aggregation_packet_round_trips(units in prop::collection::vec(nal(), 1..5)) {
            let units: Vec<&[u8]> = units.iter().map(Vec::as_slice).collect();
            let mut buf = BytesMut::new();
            write_ap(&units, &mut buf).unwrap();
            let Ok(H265Payload::Ap(ap)) = parse_payload(&buf) else { panic!() };
            prop_assert_eq!(ap.nal_units().collect::<Vec<_>>(), units);
        }

        #[test]
        fn fragments_reassemble(unit in nal(), size in 1..20usize) {
            let body = &unit[2..];
            let mut chunks: Vec<&[u8]> = body.chunks(size).collect();
            while chunks.len() < 2 {
                chunks.push(&[]);
            }
            let mut rebuilt = Vec::new();
            for (i, chunk) in chunks.iter().enumerate() {
                let mut buf = BytesMut::new();
                let (start, end) = (i == 0, i == chunks.len() - 1);
                write_fu([unit[0], unit[1]], chunk, start, end, &mut buf);
                let Ok(H265Payload::Fu(fu)) = parse_payload(&buf) else { panic!() };
                prop_assert_eq!((fu.start, fu.end, fu.nal_header), (start, end, [unit[0], unit[1]]));
                if start {
                    rebuilt.extend_from_slice(&fu.nal_header);
                }
                rebuilt.extend_from_slice(fu.fragment);
            }
            prop_assert_eq!(rebuilt, unit);
        }
    }
}
