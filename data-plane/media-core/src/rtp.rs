//! RTP packets (RFC 3550 §5.1): parsed once from the received bytes, then shared by every
//! reader of the stream as cheap clones of the same [`Bytes`].
//!
//! Also here: rewriting sequence number, timestamp and SSRC when the source behind a stream
//! changes ([`RtpRewriter`]), and reception statistics ([`SequenceTracker`], [`JitterEstimator`])
//! that feed RTCP receiver reports.

use std::fmt;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

mod sequence;
pub use sequence::{JitterEstimator, SeqEvent, SequenceStats, SequenceTracker};

/// The only RTP version in use.
pub const RTP_VERSION: u8 = 2;
/// Version, flags, payload type, sequence number, timestamp and SSRC.
pub const FIXED_HEADER_LEN: usize = 12;

/// A synchronization source identifier; displayed in hex as Wireshark shows it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ssrc(pub u32);

impl fmt::Display for Ssrc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "0x{:08x}", self.0)
    }
}

/// Why bytes are not an RTP packet. Fields give what was declared and what was there.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidRtp {
    #[error("rtp packet of {len} bytes is shorter than the 12-byte fixed header")]
    TooShort { len: usize },
    #[error("rtp version {version}, expected 2")]
    BadVersion { version: u8 },
    #[error(
        "rtp ssrc {ssrc} seq {sequence_number}: {csrc_count} csrcs need {needed} bytes, packet has {len}"
    )]
    CsrcOverrun {
        ssrc: Ssrc,
        sequence_number: u16,
        csrc_count: u8,
        needed: usize,
        len: usize,
    },
    #[error(
        "rtp ssrc {ssrc} seq {sequence_number}: header extension needs {needed} bytes, packet has {len}"
    )]
    ExtensionOverrun {
        ssrc: Ssrc,
        sequence_number: u16,
        needed: usize,
        len: usize,
    },
    #[error(
        "rtp ssrc {ssrc} seq {sequence_number}: padding count {padding} but {available} bytes follow the header"
    )]
    BadPadding {
        ssrc: Ssrc,
        sequence_number: u16,
        padding: u8,
        available: usize,
    },
}

/// Why an [`RtpHeader`] cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtpWriteError {
    #[error("rtp payload type {0} does not fit in 7 bits")]
    PayloadTypeTooLarge(u8),
    #[error("{0} csrcs, at most 15 fit in the header")]
    TooManyCsrcs(usize),
    #[error("rtp header extension of {0} bytes is not a whole number of 32-bit words")]
    ExtensionNotWordAligned(usize),
    #[error("rtp header extension of {0} bytes is longer than 65535 words")]
    ExtensionTooLong(usize),
}

/// A header extension (RFC 3550 §5.3.1); RFC 8285 one- and two-byte forms are left to callers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpExtension {
    pub profile: u16,
    /// A whole number of 32-bit words.
    pub data: Bytes,
}

/// Everything but the payload, for building packets and for round-trip tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpHeader {
    pub marker: bool,
    pub payload_type: u8,
    pub sequence_number: u16,
    pub timestamp: u32,
    pub ssrc: Ssrc,
    pub csrcs: Vec<Ssrc>,
    pub extension: Option<RtpExtension>,
    /// Padding after the payload, counting the final length byte; 0 for none.
    pub padding: u8,
}

impl RtpHeader {
    /// Writes header, `payload` and padding as one packet.
    pub fn write(&self, payload: &[u8], buf: &mut BytesMut) -> Result<(), RtpWriteError> {
        if self.payload_type > 0x7f {
            return Err(RtpWriteError::PayloadTypeTooLarge(self.payload_type));
        }
        if self.csrcs.len() > 15 {
            return Err(RtpWriteError::TooManyCsrcs(self.csrcs.len()));
        }
        let ext_words = match &self.extension {
            Some(ext) if ext.data.len() % 4 != 0 => {
                return Err(RtpWriteError::ExtensionNotWordAligned(ext.data.len()));
            }
            Some(ext) => Some(
                u16::try_from(ext.data.len() / 4)
                    .map_err(|_| RtpWriteError::ExtensionTooLong(ext.data.len()))?,
            ),
            None => None,
        };
        let ext_len = self.extension.as_ref().map_or(0, |e| 4 + e.data.len());
        buf.reserve(
            FIXED_HEADER_LEN
                + 4 * self.csrcs.len()
                + ext_len
                + payload.len()
                + self.padding as usize,
        );
        let flags = RTP_VERSION << 6
            | u8::from(self.padding > 0) << 5
            | u8::from(self.extension.is_some()) << 4
            | self.csrcs.len() as u8;
        buf.put_u8(flags);
        buf.put_u8(u8::from(self.marker) << 7 | self.payload_type);
        buf.put_u16(self.sequence_number);
        buf.put_u32(self.timestamp);
        buf.put_u32(self.ssrc.0);
        for csrc in &self.csrcs {
            buf.put_u32(csrc.0);
        }
        if let (Some(ext), Some(words)) = (&self.extension, ext_words) {
            buf.put_u16(ext.profile);
            buf.put_u16(words);
            buf.put_slice(&ext.data);
        }
        buf.put_slice(payload);
        if self.padding > 0 {
            buf.put_bytes(0, self.padding as usize - 1);
            buf.put_u8(self.padding);
        }
        Ok(())
    }
}

/// A parsed RTP packet. The wire bytes are kept as received, so forwarding is a clone of
/// [`RtpPacket::to_bytes`]; accessors read the fields decoded once at parse time.
#[derive(Clone, PartialEq, Eq)]
pub struct RtpPacket {
    raw: Bytes,
    sequence_number: u16,
    timestamp: u32,
    ssrc: Ssrc,
    payload_type: u8,
    marker: bool,
    csrc_count: u8,
    /// Offset of the extension's profile field.
    extension_at: Option<usize>,
    payload_start: usize,
    payload_end: usize,
}

impl fmt::Debug for RtpPacket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtpPacket")
            .field("ssrc", &format_args!("{}", self.ssrc))
            .field("seq", &self.sequence_number)
            .field("ts", &self.timestamp)
            .field("pt", &self.payload_type)
            .field("marker", &self.marker)
            .field("len", &self.raw.len())
            .field("payload_len", &self.payload_len())
            .finish()
    }
}

impl RtpPacket {
    /// Parses `raw` without copying it.
    pub fn parse(raw: Bytes) -> Result<Self, InvalidRtp> {
        let len = raw.len();
        let Some(fixed) = raw.first_chunk::<FIXED_HEADER_LEN>() else {
            return Err(InvalidRtp::TooShort { len });
        };
        let version = fixed[0] >> 6;
        if version != RTP_VERSION {
            return Err(InvalidRtp::BadVersion { version });
        }
        let has_padding = fixed[0] & 0x20 != 0;
        let has_extension = fixed[0] & 0x10 != 0;
        let csrc_count = fixed[0] & 0x0f;
        let marker = fixed[1] & 0x80 != 0;
        let payload_type = fixed[1] & 0x7f;
        let sequence_number = u16::from_be_bytes([fixed[2], fixed[3]]);
        let timestamp = u32::from_be_bytes([fixed[4], fixed[5], fixed[6], fixed[7]]);
        let ssrc = Ssrc(u32::from_be_bytes([
            fixed[8], fixed[9], fixed[10], fixed[11],
        ]));

        let mut at = FIXED_HEADER_LEN + 4 * csrc_count as usize;
        if at > len {
            return Err(InvalidRtp::CsrcOverrun {
                ssrc,
                sequence_number,
                csrc_count,
                needed: at,
                len,
            });
        }
        let mut extension_at = None;
        if has_extension {
            let Some(&[_, _, hi, lo]) = raw.get(at..at + 4) else {
                return Err(InvalidRtp::ExtensionOverrun {
                    ssrc,
                    sequence_number,
                    needed: at + 4,
                    len,
                });
            };
            let needed = at + 4 + 4 * u16::from_be_bytes([hi, lo]) as usize;
            if needed > len {
                return Err(InvalidRtp::ExtensionOverrun {
                    ssrc,
                    sequence_number,
                    needed,
                    len,
                });
            }
            extension_at = Some(at);
            at = needed;
        }
        let mut payload_end = len;
        if has_padding {
            let available = len - at;
            // The count includes itself, so 0 is as wrong as one that reaches into the header.
            let padding = if available == 0 { 0 } else { raw[len - 1] };
            if padding == 0 || padding as usize > available {
                return Err(InvalidRtp::BadPadding {
                    ssrc,
                    sequence_number,
                    padding,
                    available,
                });
            }
            payload_end = len - padding as usize;
        }
        Ok(Self {
            raw,
            sequence_number,
            timestamp,
            ssrc,
            payload_type,
            marker,
            csrc_count,
            extension_at,
            payload_start: at,
            payload_end,
        })
    }

    /// Builds a packet from its parts (a packetizer's output, or tests).
    pub fn new(header: &RtpHeader, payload: &[u8]) -> Result<Self, RtpWriteError> {
        let mut buf = BytesMut::new();
        header.write(payload, &mut buf)?;
        let payload_start = buf.len() - header.padding as usize - payload.len();
        Ok(Self {
            raw: buf.freeze(),
            sequence_number: header.sequence_number,
            timestamp: header.timestamp,
            ssrc: header.ssrc,
            payload_type: header.payload_type,
            marker: header.marker,
            csrc_count: header.csrcs.len() as u8,
            extension_at: header
                .extension
                .as_ref()
                .map(|_| FIXED_HEADER_LEN + 4 * header.csrcs.len()),
            payload_start,
            payload_end: payload_start + payload.len(),
        })
    }

    pub fn sequence_number(&self) -> u16 {
        self.sequence_number
    }
    pub fn timestamp(&self) -> u32 {
        self.timestamp
    }
    pub fn ssrc(&self) -> Ssrc {
        self.ssrc
    }
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }
    pub fn marker(&self) -> bool {
        self.marker
    }
    pub fn csrcs(&self) -> impl ExactSizeIterator<Item = Ssrc> + '_ {
        self.raw[FIXED_HEADER_LEN..FIXED_HEADER_LEN + 4 * self.csrc_count as usize]
            .chunks_exact(4)
            .map(|c| Ssrc(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
    }
    /// The header extension, its data a slice of the packet.
    pub fn extension(&self) -> Option<RtpExtension> {
        let at = self.extension_at?;
        Some(RtpExtension {
            profile: u16::from_be_bytes([self.raw[at], self.raw[at + 1]]),
            data: self.raw.slice(at + 4..self.payload_start),
        })
    }
    /// Padding bytes after the payload, including the count byte.
    pub fn padding(&self) -> u8 {
        (self.raw.len() - self.payload_end) as u8
    }
    pub fn payload(&self) -> &[u8] {
        &self.raw[self.payload_start..self.payload_end]
    }
    /// The payload as a slice of the received buffer (no copy).
    pub fn payload_bytes(&self) -> Bytes {
        self.raw.slice(self.payload_start..self.payload_end)
    }
    pub fn payload_len(&self) -> usize {
        self.payload_end - self.payload_start
    }
    /// Length on the wire.
    pub fn len(&self) -> usize {
        self.raw.len()
    }
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }
    /// The packet as on the wire: a reference-counted clone, not a copy.
    pub fn to_bytes(&self) -> Bytes {
        self.raw.clone()
    }
    pub fn as_bytes(&self) -> &Bytes {
        &self.raw
    }
    /// The header fields (allocates for CSRCs; not for the forwarding path).
    pub fn header(&self) -> RtpHeader {
        RtpHeader {
            marker: self.marker,
            payload_type: self.payload_type,
            sequence_number: self.sequence_number,
            timestamp: self.timestamp,
            ssrc: self.ssrc,
            csrcs: self.csrcs().collect(),
            extension: self.extension(),
            padding: self.padding(),
        }
    }

    /// A copy with new sequence number, timestamp and SSRC; everything else byte for byte.
    pub fn rewritten(&self, sequence_number: u16, timestamp: u32, ssrc: Ssrc) -> Self {
        let mut buf = BytesMut::from(&self.raw[..]);
        buf[2..4].copy_from_slice(&sequence_number.to_be_bytes());
        buf[4..8].copy_from_slice(&timestamp.to_be_bytes());
        buf[8..12].copy_from_slice(&ssrc.0.to_be_bytes());
        Self {
            raw: buf.freeze(),
            sequence_number,
            timestamp,
            ssrc,
            ..self.clone()
        }
    }
}

/// Keeps one stream continuous for its readers when the source behind it changes (a publisher
/// replaced, or back within the reconnect grace period): a single SSRC, sequence numbers
/// without a jump, and timestamps that advance by the wall-clock gap. Until the first change
/// packets pass through untouched (a clone, not a copy).
#[derive(Debug, Clone)]
pub struct RtpRewriter {
    clock_rate: u32,
    state: Option<RewriteState>,
    source_changed: bool,
}

#[derive(Debug, Clone, Copy)]
struct RewriteState {
    out_ssrc: Ssrc,
    source: Ssrc,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_at: Duration,
}

impl RtpRewriter {
    /// `clock_rate` is the track's RTP clock (90000 for video).
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            state: None,
            source_changed: false,
        }
    }

    /// Marks a new source even if it reuses the old SSRC (a camera reconnecting).
    pub fn source_changed(&mut self) {
        self.source_changed = true;
    }

    /// The SSRC readers see; `None` before the first packet.
    pub fn output_ssrc(&self) -> Option<Ssrc> {
        self.state.map(|s| s.out_ssrc)
    }

    /// Maps a source timestamp (say from its sender report) to the one readers see.
    pub fn map_timestamp(&self, timestamp: u32) -> u32 {
        self.state
            .map_or(timestamp, |s| timestamp.wrapping_add(s.ts_offset))
    }

    /// `now` is any monotonic time; it matters only when a new source starts.
    pub fn rewrite(&mut self, packet: &RtpPacket, now: Duration) -> RtpPacket {
        let (seq, ts) = (packet.sequence_number(), packet.timestamp());
        let state = match self.state {
            None => RewriteState {
                out_ssrc: packet.ssrc(),
                source: packet.ssrc(),
                seq_offset: 0,
                ts_offset: 0,
                last_seq: seq,
                last_ts: ts,
                last_at: now,
            },
            Some(s) if s.source != packet.ssrc() || self.source_changed => {
                let elapsed = now.saturating_sub(s.last_at);
                let ticks =
                    (elapsed.as_nanos() * u128::from(self.clock_rate) / 1_000_000_000) % (1 << 32);
                // At least one tick: a timestamp that does not move means "same frame".
                let next_ts = s.last_ts.wrapping_add((ticks as u32).max(1));
                RewriteState {
                    source: packet.ssrc(),
                    seq_offset: s.last_seq.wrapping_add(1).wrapping_sub(seq),
                    ts_offset: next_ts.wrapping_sub(ts),
                    ..s
                }
            }
            Some(s) => s,
        };
        self.source_changed = false;
        let out_seq = seq.wrapping_add(state.seq_offset);
        let out_ts = ts.wrapping_add(state.ts_offset);
        self.state = Some(RewriteState {
            last_seq: out_seq,
            last_ts: out_ts,
            last_at: now,
            ..state
        });
        if state.seq_offset == 0 && state.ts_offset == 0 && state.out_ssrc == packet.ssrc() {
            packet.clone()
        } else {
            packet.rewritten(out_seq, out_ts, state.out_ssrc)
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn hex(s: &str) -> Bytes {
        let s: String = s.split_whitespace().collect();
        let bytes = (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap());
        bytes.collect::<Vec<u8>>().into()
    }

    #[test]
    fn parses_ffmpeg_packet_without_copying() {
        // First packet of an ffmpeg/x264 stream (payload cut short): a STAP-A.
        let raw = hex("80600391 db480fa3 cbadc83b 1800186764001fac");
        let p = RtpPacket::parse(raw.clone()).unwrap();
        assert_eq!(
            (
                p.payload_type(),
                p.sequence_number(),
                p.timestamp(),
                p.ssrc()
            ),
            (96, 0x0391, 0xdb48_0fa3, Ssrc(0xcbad_c83b))
        );
        assert!(!p.marker());
        assert_eq!((p.csrcs().len(), p.extension(), p.padding()), (0, None, 0));
        assert_eq!(p.payload(), &raw[12..]);
        assert_eq!(p.payload_bytes().as_ptr(), raw[12..].as_ptr());
        assert_eq!(p.to_bytes().as_ptr(), raw.as_ptr());
        assert_eq!(format!("{}", p.ssrc()), "0xcbadc83b");
        let last = RtpPacket::parse(hex("80e0039e db480fa3 cbadc83b 7c45a3ce")).unwrap();
        assert!(last.marker());
    }

    #[test]
    fn writes_and_parses_csrcs_extension_and_padding() {
        let header = RtpHeader {
            marker: true,
            payload_type: 97,
            sequence_number: 1,
            timestamp: 2,
            ssrc: Ssrc(3),
            csrcs: vec![Ssrc(4), Ssrc(5)],
            extension: Some(RtpExtension {
                profile: 0xbede,
                data: hex("01020304"),
            }),
            padding: 4,
        };
        let p = RtpPacket::new(&header, &[0xaa, 0xbb]).unwrap();
        let wire =
            hex("b2e10001 00000002 00000003 00000004 00000005 bede0001 01020304 aabb 00000004");
        assert_eq!(p.to_bytes(), wire);
        let parsed = RtpPacket::parse(wire).unwrap();
        assert_eq!(parsed, p);
        assert_eq!(parsed.header(), header);
        assert_eq!(parsed.payload(), &[0xaa, 0xbb]);
    }

    #[test]
    fn rejects_malformed_packets_precisely() {
        let (ssrc, sequence_number) = (Ssrc(0x0102_0304), 7);
        let cases = [
            ("80600007 00000000 010203", InvalidRtp::TooShort { len: 11 }),
            (
                "40600007 00000000 01020304",
                InvalidRtp::BadVersion { version: 1 },
            ),
            (
                "82600007 00000000 01020304 00000001",
                InvalidRtp::CsrcOverrun {
                    ssrc,
                    sequence_number,
                    csrc_count: 2,
                    needed: 20,
                    len: 16,
                },
            ),
            (
                "90600007 00000000 01020304 bede",
                InvalidRtp::ExtensionOverrun {
                    ssrc,
                    sequence_number,
                    needed: 16,
                    len: 14,
                },
            ),
            (
                "90600007 00000000 01020304 bede0002 00000000",
                InvalidRtp::ExtensionOverrun {
                    ssrc,
                    sequence_number,
                    needed: 24,
                    len: 20,
                },
            ),
            (
                "a0600007 00000000 01020304 aabb0000",
                InvalidRtp::BadPadding {
                    ssrc,
                    sequence_number,
                    padding: 0,
                    available: 4,
                },
            ),
            (
                "a0600007 00000000 01020304 aabb0005",
                InvalidRtp::BadPadding {
                    ssrc,
                    sequence_number,
                    padding: 5,
                    available: 4,
                },
            ),
            (
                "a0600007 00000000 01020304",
                InvalidRtp::BadPadding {
                    ssrc,
                    sequence_number,
                    padding: 0,
                    available: 0,
                },
            ),
        ];
        for (bytes, error) in cases {
            assert_eq!(RtpPacket::parse(hex(bytes)), Err(error), "{bytes}");
        }
        // Padding may fill everything after the header.
        let p = RtpPacket::parse(hex("a0600007 00000000 01020304 00000004")).unwrap();
        assert_eq!((p.payload_len(), p.padding()), (0, 4));
    }

    #[test]
    fn write_errors() {
        let mut h = RtpHeader {
            payload_type: 128,
            ..RtpHeader::default()
        };
        assert_eq!(
            RtpPacket::new(&h, &[]),
            Err(RtpWriteError::PayloadTypeTooLarge(128))
        );
        h.payload_type = 96;
        h.csrcs = vec![Ssrc(1); 16];
        assert_eq!(
            RtpPacket::new(&h, &[]),
            Err(RtpWriteError::TooManyCsrcs(16))
        );
        h.csrcs.clear();
        h.extension = Some(RtpExtension {
            profile: 1,
            data: hex("010203"),
        });
        assert_eq!(
            RtpPacket::new(&h, &[]),
            Err(RtpWriteError::ExtensionNotWordAligned(3))
        );
    }

    #[test]
    fn rewritten_changes_only_the_three_fields() {
        let p = RtpPacket::parse(hex("90e10001 00000002 00000003 bede0001 01020304 aabb")).unwrap();
        let q = p.rewritten(0xfffe, 0xdead_beef, Ssrc(9));
        assert_eq!(
            q.to_bytes(),
            hex("90e1fffe deadbeef 00000009 bede0001 01020304 aabb")
        );
        assert_eq!(RtpPacket::parse(q.to_bytes()).unwrap(), q);
        assert_eq!(p.sequence_number(), 1, "the original is untouched");
    }

    fn packet(ssrc: u32, seq: u16, ts: u32) -> RtpPacket {
        let header = RtpHeader {
            payload_type: 96,
            sequence_number: seq,
            timestamp: ts,
            ssrc: Ssrc(ssrc),
            ..RtpHeader::default()
        };
        RtpPacket::new(&header, &[1, 2, 3]).unwrap()
    }

    #[test]
    fn rewriter_passes_first_source_through_and_continues_the_next() {
        let mut rw = RtpRewriter::new(90_000);
        let ms = Duration::from_millis;
        let a = packet(0xaaaa, 65_535, 1000);
        let out = rw.rewrite(&a, ms(0));
        assert_eq!(out.to_bytes().as_ptr(), a.to_bytes().as_ptr(), "no copy");
        rw.rewrite(&packet(0xaaaa, 0, 4000), ms(33));
        // A replacement publisher 100 ms later with its own numbering.
        let b = rw.rewrite(&packet(0xbbbb, 500, 7), ms(133));
        assert_eq!(
            (b.ssrc(), b.sequence_number(), b.timestamp()),
            (Ssrc(0xaaaa), 1, 4000 + 9000)
        );
        assert_eq!(b.payload(), &[1, 2, 3]);
        let b2 = rw.rewrite(&packet(0xbbbb, 501, 3007), ms(166));
        assert_eq!((b2.sequence_number(), b2.timestamp()), (2, 16_000));
        assert_eq!(rw.map_timestamp(3007), 16_000);
        assert_eq!(rw.output_ssrc(), Some(Ssrc(0xaaaa)));
        // The same SSRC coming back (a camera reconnecting) is a new source only when told.
        rw.source_changed();
        let c = rw.rewrite(&packet(0xbbbb, 9, 0), ms(166));
        assert_eq!(
            (c.sequence_number(), c.timestamp()),
            (3, 16_001),
            "time must move"
        );
    }

    fn header_strategy() -> impl Strategy<Value = RtpHeader> {
        let ext = prop::option::of((any::<u16>(), prop::collection::vec(any::<u8>(), 0..16)));
        (
            any::<bool>(),
            0..128u8,
            any::<u16>(),
            any::<u32>(),
            any::<u32>(),
        )
            .prop_flat_map(move |fixed| {
                (
                    Just(fixed),
                    prop::collection::vec(any::<u32>(), 0..=15),
                    ext.clone(),
                    any::<u8>(),
                )
            })
            .prop_map(
                |(
                    (marker, payload_type, sequence_number, timestamp, ssrc),
                    csrcs,
                    ext,
                    padding,
                )| RtpHeader {
                    marker,
                    payload_type,
                    sequence_number,
                    timestamp,
                    ssrc: Ssrc(ssrc),
                    csrcs: csrcs.into_iter().map(Ssrc).collect(),
                    extension: ext.map(|(profile, words)| RtpExtension {
                        profile,
                        data: words
                            .repeat(4)
                            .into_iter()
                            .take(words.len() * 4)
                            .collect::<Vec<_>>()
                            .into(),
                    }),
                    padding,
                },
            )
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(header in header_strategy(), payload in prop::collection::vec(any::<u8>(), 0..64)) {
            let p = RtpPacket::new(&header, &payload).unwrap();
            let parsed = RtpPacket::parse(p.to_bytes()).unwrap();
            prop_assert_eq!(&parsed, &p);
            prop_assert_eq!(parsed.header(), header);
            prop_assert_eq!(parsed.payload(), &payload[..]);
        }

        #[test]
        fn parse_never_panics_and_what_parses_rebuilds(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Ok(p) = RtpPacket::parse(Bytes::from(bytes.clone())) {
                prop_assert_eq!(p.len(), bytes.len());
                let rebuilt = RtpPacket::new(&p.header(), p.payload()).unwrap();
                let again = RtpPacket::parse(rebuilt.to_bytes()).unwrap();
                prop_assert_eq!(again.header(), p.header());
                prop_assert_eq!(again.payload(), p.payload());
            }
        }

    }
}
