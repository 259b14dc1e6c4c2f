//! RTCP (RFC 3550 §6): compound packets parsed with every length checked against the bytes
//! present, and the reports a server sends (SR to readers, RR to publishers, BYE when a
//! publisher leaves). Types the server does not act on (APP, feedback, XR) are kept opaque.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use thiserror::Error;

use crate::rtp::Ssrc;

pub mod sender;
pub use sender::SenderReportGenerator;

pub const PT_SR: u8 = 200;
pub const PT_RR: u8 = 201;
pub const PT_SDES: u8 = 202;
pub const PT_BYE: u8 = 203;
pub const PT_APP: u8 = 204;
/// SDES item type of the canonical name.
pub const SDES_CNAME: u8 = 1;

const REPORT_BLOCK_LEN: usize = 24;
/// Seconds from 1900 (NTP era 0) to 1970.
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// Why bytes are not a compound RTCP packet. `offset` is where the failing packet starts.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum InvalidRtcp {
    #[error("empty rtcp datagram")]
    Empty,
    #[error("rtcp packet at byte {offset}: {len} bytes left, a header needs 4")]
    TruncatedHeader { offset: usize, len: usize },
    #[error("rtcp packet at byte {offset}: version {version}, expected 2")]
    BadVersion { offset: usize, version: u8 },
    #[error("rtcp packet at byte {offset}: length field says {declared} bytes, {available} left")]
    LengthOverrun {
        offset: usize,
        declared: usize,
        available: usize,
    },
    #[error("rtcp packet at byte {offset}: padding count {padding} in a {len}-byte body")]
    BadPadding {
        offset: usize,
        padding: u8,
        len: usize,
    },
    #[error(
        "rtcp packet type {packet_type} at byte {offset}: needs {needed} body bytes, has {len}"
    )]
    BodyTooShort {
        offset: usize,
        packet_type: u8,
        needed: usize,
        len: usize,
    },
}

/// Why a packet cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum RtcpWriteError {
    #[error("{count} {what} in one rtcp packet, at most 31 fit")]
    TooMany { what: &'static str, count: usize },
    #[error("{what} of {len} bytes, at most 255 fit")]
    TooLong { what: &'static str, len: usize },
    #[error("rtcp packet of {len} bytes exceeds the 16-bit length field")]
    PacketTooLong { len: usize },
}

/// A 64-bit NTP timestamp: seconds since 1900 in the high half, fraction in the low half.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NtpTimestamp(pub u64);

impl NtpTimestamp {
    /// From wall-clock time since the Unix epoch, which the caller reads.
    pub fn from_unix(since_epoch: Duration) -> Self {
        let secs = since_epoch.as_secs().wrapping_add(NTP_UNIX_OFFSET) & 0xffff_ffff;
        let frac = (u64::from(since_epoch.subsec_nanos()) << 32) / 1_000_000_000;
        Self(secs << 32 | frac)
    }

    /// The middle 32 bits, which a receiver echoes as "last SR" (LSR).
    pub fn middle(self) -> u32 {
        (self.0 >> 16) as u32
    }
}

/// Reception statistics about one source, inside an SR or RR.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReportBlock {
    pub ssrc: Ssrc,
    /// Loss since the previous report, in 1/256.
    pub fraction_lost: u8,
    /// 24-bit signed on the wire; clamped when written.
    pub cumulative_lost: i32,
    pub extended_highest_seq: u32,
    pub jitter: u32,
    /// Middle bits of the NTP time of the last SR received from this source.
    pub last_sr: u32,
    /// In 1/65536 s.
    pub delay_since_last_sr: u32,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderReport {
    pub ssrc: Ssrc,
    pub ntp_time: NtpTimestamp,
    /// The RTP timestamp matching `ntp_time`, in the stream's clock.
    pub rtp_time: u32,
    pub packet_count: u32,
    pub octet_count: u32,
    pub reports: Vec<ReportBlock>,
    /// Profile-specific extension, opaque.
    pub extension: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceiverReport {
    pub ssrc: Ssrc,
    pub reports: Vec<ReportBlock>,
    pub extension: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesChunk {
    pub ssrc: Ssrc,
    pub items: Vec<SdesItem>,
}

impl SdesChunk {
    pub fn cname(&self) -> Option<&[u8]> {
        self.items
            .iter()
            .find(|i| i.kind == SDES_CNAME)
            .map(|i| &i.value[..])
    }
}

/// One SDES item; `kind` is never 0 (that ends an item list).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SdesItem {
    pub kind: u8,
    pub value: Bytes,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Bye {
    pub sources: Vec<Ssrc>,
    pub reason: Option<Bytes>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct App {
    pub subtype: u8,
    pub ssrc: Ssrc,
    pub name: [u8; 4],
    pub data: Bytes,
}

/// A packet type the server only passes along or ignores (feedback 205/206, XR 207, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OtherRtcp {
    pub packet_type: u8,
    /// The 5-bit count/format field.
    pub count: u8,
    pub body: Bytes,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtcpPacket {
    SenderReport(SenderReport),
    ReceiverReport(ReceiverReport),
    SourceDescription(Vec<SdesChunk>),
    Bye(Bye),
    App(App),
    Other(OtherRtcp),
}

impl RtcpPacket {
    /// A single-chunk SDES carrying a CNAME.
    pub fn cname(ssrc: Ssrc, cname: &str) -> Self {
        let value = Bytes::copy_from_slice(cname.as_bytes());
        Self::SourceDescription(vec![SdesChunk {
            ssrc,
            items: vec![SdesItem {
                kind: SDES_CNAME,
                value,
            }],
        }])
    }

    /// Parses every packet of a compound datagram (or interleaved frame). Bodies are slices of
    /// `data`. The RFC's rule that a compound starts with SR or RR is not enforced: senders
    /// of lone BYE or feedback packets exist.
    pub fn parse_compound(data: &Bytes) -> Result<Vec<Self>, InvalidRtcp> {
        if data.is_empty() {
            return Err(InvalidRtcp::Empty);
        }
        let mut packets = Vec::new();
        let mut offset = 0;
        while offset < data.len() {
            let (packet, len) = Self::parse_one(data, offset)?;
            packets.push(packet);
            offset += len;
        }
        Ok(packets)
    }

    /// Parses the packet at `offset`; returns it and its length.
    fn parse_one(data: &Bytes, offset: usize) -> Result<(Self, usize), InvalidRtcp> {
        let available = data.len() - offset;
        let Some(&[b0, packet_type, hi, lo]) = data.get(offset..offset + 4) else {
            return Err(InvalidRtcp::TruncatedHeader {
                offset,
                len: available,
            });
        };
        let version = b0 >> 6;
        if version != 2 {
            return Err(InvalidRtcp::BadVersion { offset, version });
        }
        let count = b0 & 0x1f;
        let declared = 4 * (usize::from(u16::from_be_bytes([hi, lo])) + 1);
        if declared > available {
            return Err(InvalidRtcp::LengthOverrun {
                offset,
                declared,
                available,
            });
        }
        let mut body = data.slice(offset + 4..offset + declared);
        if b0 & 0x20 != 0 {
            let padding = body.last().copied().unwrap_or(0);
            if padding == 0 || usize::from(padding) > body.len() {
                return Err(InvalidRtcp::BadPadding {
                    offset,
                    padding,
                    len: body.len(),
                });
            }
            body.truncate(body.len() - usize::from(padding));
        }
        let short = |needed: usize, len: usize| InvalidRtcp::BodyTooShort {
            offset,
            packet_type,
            needed,
            len,
        };
        let need = |needed: usize, body: &Bytes| {
            if needed > body.len() {
                Err(short(needed, body.len()))
            } else {
                Ok(())
            }
        };
        let packet = match packet_type {
            PT_SR => {
                let fixed = 24;
                let blocks = REPORT_BLOCK_LEN * usize::from(count);
                need(fixed + blocks, &body)?;
                Self::SenderReport(SenderReport {
                    ssrc: Ssrc(be32(&body, 0)),
                    ntp_time: NtpTimestamp(
                        u64::from(be32(&body, 4)) << 32 | u64::from(be32(&body, 8)),
                    ),
                    rtp_time: be32(&body, 12),
                    packet_count: be32(&body, 16),
                    octet_count: be32(&body, 20),
                    reports: report_blocks(&body[fixed..fixed + blocks]),
                    extension: body.slice(fixed + blocks..),
                })
            }
            PT_RR => {
                let blocks = REPORT_BLOCK_LEN * usize::from(count);
                need(4 + blocks, &body)?;
                Self::ReceiverReport(ReceiverReport {
                    ssrc: Ssrc(be32(&body, 0)),
                    reports: report_blocks(&body[4..4 + blocks]),
                    extension: body.slice(4 + blocks..),
                })
            }
            PT_SDES => {
                Self::SourceDescription(parse_sdes(&body, count).map_err(|(n, l)| short(n, l))?)
            }
            PT_BYE => {
                let sources = 4 * usize::from(count);
                need(sources, &body)?;
                let reason = match body.get(sources) {
                    None => None,
                    Some(&len) => {
                        need(sources + 1 + usize::from(len), &body)?;
                        Some(body.slice(sources + 1..sources + 1 + usize::from(len)))
                    }
                };
                let sources = (0..usize::from(count))
                    .map(|i| Ssrc(be32(&body, 4 * i)))
                    .collect();
                Self::Bye(Bye { sources, reason })
            }
            PT_APP => {
                need(8, &body)?;
                Self::App(App {
                    subtype: count,
                    ssrc: Ssrc(be32(&body, 0)),
                    name: [body[4], body[5], body[6], body[7]],
                    data: body.slice(8..),
                })
            }
            _ => Self::Other(OtherRtcp {
                packet_type,
                count,
                body,
            }),
        };
        Ok((packet, declared))
    }

    /// Appends this packet, padded to 32 bits; on error `buf` is left as it was.
    pub fn write(&self, buf: &mut BytesMut) -> Result<(), RtcpWriteError> {
        let start = buf.len();
        let result = self.write_at(buf, start);
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }

    fn write_at(&self, buf: &mut BytesMut, start: usize) -> Result<(), RtcpWriteError> {
        buf.put_u32(0); // header, filled in below once the length is known
        let (packet_type, count) = match self {
            Self::SenderReport(sr) => {
                buf.put_u32(sr.ssrc.0);
                buf.put_u64(sr.ntp_time.0);
                buf.put_u32(sr.rtp_time);
                buf.put_u32(sr.packet_count);
                buf.put_u32(sr.octet_count);
                write_report_blocks(&sr.reports, buf);
                buf.put_slice(&sr.extension);
                (PT_SR, count_field("report blocks", sr.reports.len())?)
            }
            Self::ReceiverReport(rr) => {
                buf.put_u32(rr.ssrc.0);
                write_report_blocks(&rr.reports, buf);
                buf.put_slice(&rr.extension);
                (PT_RR, count_field("report blocks", rr.reports.len())?)
            }
            Self::SourceDescription(chunks) => {
                for chunk in chunks {
                    buf.put_u32(chunk.ssrc.0);
                    for item in &chunk.items {
                        buf.put_u8(item.kind);
                        buf.put_u8(len_byte("sdes item", item.value.len())?);
                        buf.put_slice(&item.value);
                    }
                    // At least one null octet ends the items, then up to the next word.
                    let used = buf.len() - start;
                    buf.put_bytes(0, 4 - used % 4);
                }
                (PT_SDES, count_field("sdes chunks", chunks.len())?)
            }
            Self::Bye(bye) => {
                for source in &bye.sources {
                    buf.put_u32(source.0);
                }
                if let Some(reason) = &bye.reason {
                    buf.put_u8(len_byte("bye reason", reason.len())?);
                    buf.put_slice(reason);
                    let used = buf.len() - start;
                    buf.put_bytes(0, (4 - used % 4) % 4);
                }
                (PT_BYE, count_field("bye sources", bye.sources.len())?)
            }
            Self::App(app) => {
                buf.put_u32(app.ssrc.0);
                buf.put_slice(&app.name);
                buf.put_slice(&app.data);
                (
                    PT_APP,
                    count_field("app subtype", usize::from(app.subtype))?,
                )
            }
            Self::Other(other) => {
                buf.put_slice(&other.body);
                (
                    other.packet_type,
                    count_field("count", usize::from(other.count))?,
                )
            }
        };
        // Opaque bodies may end mid-word: pad with the P bit so the length stays exact.
        let unpadded = buf.len() - start;
        let padding = (4 - unpadded % 4) % 4;
        if padding > 0 {
            buf.put_bytes(0, padding - 1);
            buf.put_u8(padding as u8);
        }
        let len = buf.len() - start;
        let words =
            u16::try_from(len / 4 - 1).map_err(|_| RtcpWriteError::PacketTooLong { len })?;
        let header = [2 << 6 | u8::from(padding > 0) << 5 | count, packet_type];
        buf[start..start + 2].copy_from_slice(&header);
        buf[start + 2..start + 4].copy_from_slice(&words.to_be_bytes());
        Ok(())
    }

    /// Writes packets back to back as one compound packet.
    pub fn write_compound(packets: &[Self]) -> Result<Bytes, RtcpWriteError> {
        let mut buf = BytesMut::new();
        for packet in packets {
            packet.write(&mut buf)?;
        }
        Ok(buf.freeze())
    }
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// `blocks` is a whole number of report blocks (checked by the caller).
fn report_blocks(blocks: &[u8]) -> Vec<ReportBlock> {
    blocks
        .chunks_exact(REPORT_BLOCK_LEN)
        .map(|b| ReportBlock {
            ssrc: Ssrc(be32(b, 0)),
            fraction_lost: b[4],
            // Sign-extend the 24-bit field.
            cumulative_lost: i32::from_be_bytes([b[5], b[6], b[7], 0]) >> 8,
            extended_highest_seq: be32(b, 8),
            jitter: be32(b, 12),
            last_sr: be32(b, 16),
            delay_since_last_sr: be32(b, 20),
        })
        .collect()
}

fn write_report_blocks(blocks: &[ReportBlock], buf: &mut BytesMut) {
    for b in blocks {
        buf.put_u32(b.ssrc.0);
        buf.put_u8(b.fraction_lost);
        let lost = b.cumulative_lost.clamp(-0x80_0000, 0x7f_ffff);
        buf.put_slice(&lost.to_be_bytes()[1..]);
        buf.put_u32(b.extended_highest_seq);
        buf.put_u32(b.jitter);
        buf.put_u32(b.last_sr);
        buf.put_u32(b.delay_since_last_sr);
    }
}

/// Chunks of an SDES body; on overrun returns (bytes needed, body length).
fn parse_sdes(body: &Bytes, count: u8) -> Result<Vec<SdesChunk>, (usize, usize)> {
    let mut chunks = Vec::with_capacity(usize::from(count));
    let mut at = 0;
    for _ in 0..count {
        if at + 4 > body.len() {
            return Err((at + 4, body.len()));
        }
        let ssrc = Ssrc(be32(body, at));
        at += 4;
        let mut items = Vec::new();
        // Items until a null type octet; a list that runs to the end of the body without one
        // is accepted, since nothing is lost by it.
        while let Some(&kind) = body.get(at) {
            if kind == 0 {
                at = (at + 4) & !3; // skip the terminator and the padding to the next word
                break;
            }
            let Some(&len) = body.get(at + 1) else {
                return Err((at + 2, body.len()));
            };
            let end = at + 2 + usize::from(len);
            if end > body.len() {
                return Err((end, body.len()));
            }
            items.push(SdesItem {
                kind,
                value: body.slice(at + 2..end),
            });
            at = end;
        }
        chunks.push(SdesChunk { ssrc, items });
    }
    Ok(chunks)
}

fn count_field(what: &'static str, count: usize) -> Result<u8, RtcpWriteError> {
    u8::try_from(count)
        .ok()
        .filter(|&c| c < 32)
        .ok_or(RtcpWriteError::TooMany { what, count })
}

fn len_byte(what: &'static str, len: usize) -> Result<u8, RtcpWriteError> {
    u8::try_from(len).map_err(|_| RtcpWriteError::TooLong { what, len })
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

    /// SR + SDES sent by `ffmpeg -f rtp -cname ffmpeg@streamplane` after 343 packets.
    const FFMPEG_SR_SDES: &str = "80c80006 746823da eeb17fe0 410624dd 816d79e4 00000157 0004b333
        81ca0007 746823da 0112 66666d7065674073747265616d706c616e65 00000000";

    #[test]
    fn parses_ffmpeg_sender_report_with_cname_and_writes_it_back_identically() {
        let wire = hex(FFMPEG_SR_SDES);
        let packets = RtcpPacket::parse_compound(&wire).unwrap();
        let [
            RtcpPacket::SenderReport(sr),
            RtcpPacket::SourceDescription(chunks),
        ] = &packets[..]
        else {
            panic!("{packets:?}");
        };
        assert_eq!(sr.ssrc, Ssrc(0x7468_23da));
        assert_eq!(sr.ntp_time, NtpTimestamp(0xeeb1_7fe0_4106_24dd));
        assert_eq!(
            (sr.rtp_time, sr.packet_count, sr.octet_count),
            (0x816d_79e4, 343, 308_019)
        );
        assert!(sr.reports.is_empty() && sr.extension.is_empty());
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].ssrc, sr.ssrc);
        assert_eq!(chunks[0].cname(), Some(&b"ffmpeg@streamplane"[..]));
        assert_eq!(RtcpPacket::write_compound(&packets).unwrap(), wire);
    }

    #[test]
    fn builds_receiver_report_and_bye_as_on_the_wire() {
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            ssrc: Ssrc(0x1111_1111),
            reports: vec![ReportBlock {
                ssrc: Ssrc(0x2222_2222),
                fraction_lost: 5,
                cumulative_lost: -1,
                extended_highest_seq: 0x0001_0005,
                jitter: 16,
                last_sr: 0x7fdb_3916,
                delay_since_last_sr: 0x8000,
            }],
            extension: Bytes::new(),
        });
        let bye = RtcpPacket::Bye(Bye {
            sources: vec![Ssrc(0x2222_2222)],
            reason: Some(Bytes::from_static(b"teardown")),
        });
        let wire = RtcpPacket::write_compound(&[rr.clone(), bye.clone()]).unwrap();
        let expected = "81c90007 11111111 22222222 05ffffff 00010005 00000010 7fdb3916 00008000
            81cb0004 22222222 08 7465617264 6f776e 000000";
        assert_eq!(wire, hex(expected));
        assert_eq!(RtcpPacket::parse_compound(&wire).unwrap(), [rr, bye]);
        // A bare BYE, as sent when a publisher leaves.
        let bare = RtcpPacket::Bye(Bye {
            sources: vec![Ssrc(7)],
            reason: None,
        });
        assert_eq!(
            RtcpPacket::write_compound(&[bare]).unwrap(),
            hex("81cb0001 00000007")
        );
    }

    #[test]
    fn builds_sender_report_from_caller_time() {
        // 2026-11-25T12:00:00.5Z; the NTP epoch is 70 years (17 leap days) earlier.
        let ntp = NtpTimestamp::from_unix(Duration::new(1_795_608_000, 500_000_000));
        assert_eq!(ntp.0 >> 32, 1_795_608_000 + 2_208_988_800);
        assert_eq!(ntp.0 & 0xffff_ffff, 0x8000_0000);
        assert_eq!(ntp.middle(), ((ntp.0 >> 32) as u32) << 16 | 0x8000);
        let sr = SenderReport {
            ssrc: Ssrc(1),
            ntp_time: ntp,
            rtp_time: 90_000,
            packet_count: 10,
            octet_count: 14_000,
            ..SenderReport::default()
        };
        let compound = [
            RtcpPacket::SenderReport(sr),
            RtcpPacket::cname(Ssrc(1), "streamplane"),
        ];
        let wire = RtcpPacket::write_compound(&compound).unwrap();
        assert_eq!(&wire[..4], &[0x80, PT_SR, 0, 6]);
        assert_eq!(RtcpPacket::parse_compound(&wire).unwrap(), compound);
    }

    #[test]
    fn opaque_bodies_are_padded_with_the_p_bit() {
        let app = RtcpPacket::App(App {
            subtype: 3,
            ssrc: Ssrc(9),
            name: *b"TEST",
            data: hex("aabbcc"),
        });
        let fb = RtcpPacket::Other(OtherRtcp {
            packet_type: 206,
            count: 1,
            body: hex("0000000100000002"),
        });
        let wire = RtcpPacket::write_compound(&[app.clone(), fb.clone()]).unwrap();
        assert_eq!(&wire[..16], &hex("a3cc0003 00000009 54455354 aabbcc01")[..]);
        assert_eq!(RtcpPacket::parse_compound(&wire).unwrap(), [app, fb]);
    }

    #[test]
    fn rejects_malformed_packets_precisely() {
        use InvalidRtcp::*;
        let short = |packet_type, needed, len| BodyTooShort {
            offset: 0,
            packet_type,
            needed,
            len,
        };
        let padding = |padding| BadPadding {
            offset: 0,
            padding,
            len: 4,
        };
        let overrun = LengthOverrun {
            offset: 0,
            declared: 32,
            available: 12,
        };
        let cases = [
            ("", Empty),
            (
                "81cb0001 00000007 81cb",
                TruncatedHeader { offset: 8, len: 2 },
            ),
            (
                "40c90001 00000000",
                BadVersion {
                    offset: 0,
                    version: 1,
                },
            ),
            ("81c90007 11111111 22222222", overrun),
            ("a1cb0001 00000000", padding(0)),
            ("a1cb0001 00000009", padding(9)),
            ("80c80001 00000000", short(PT_SR, 24, 4)),
            ("81c90001 11111111", short(PT_RR, 28, 4)),
            ("82cb0001 00000001", short(PT_BYE, 8, 4)),
            ("81cb0002 00000001 09616263", short(PT_BYE, 14, 8)),
            ("81ca0002 00000001 01096162", short(PT_SDES, 15, 8)),
            ("82ca0002 00000001 00000000", short(PT_SDES, 12, 8)),
            ("80cc0001 00000001", short(PT_APP, 8, 4)),
        ];
        for (bytes, error) in cases {
            assert_eq!(
                RtcpPacket::parse_compound(&hex(bytes)),
                Err(error),
                "{bytes}"
            );
        }
    }

    #[test]
    fn write_errors_leave_the_buffer_untouched() {
        let mut buf = BytesMut::from(&b"keep"[..]);
        let rr = RtcpPacket::ReceiverReport(ReceiverReport {
            reports: vec![ReportBlock::default(); 32],
            ..ReceiverReport::default()
        });
        assert_eq!(
            rr.write(&mut buf),
            Err(RtcpWriteError::TooMany {
                what: "report blocks",
                count: 32
            })
        );
        let long = RtcpPacket::cname(Ssrc(1), &"x".repeat(256));
        assert_eq!(
            long.write(&mut buf),
            Err(RtcpWriteError::TooLong {
                what: "sdes item",
                len: 256
            })
        );
        assert_eq!(&buf[..], b"keep");
    }

    fn bytes(max: usize) -> impl Strategy<Value = Bytes> {
        prop::collection::vec(any::<u8>(), 0..max).prop_map(Bytes::from)
    }

    fn block() -> impl Strategy<Value = ReportBlock> {
        (
            any::<(u32, u8, u32, u32, u32, u32)>(),
            -0x80_0000..0x80_0000,
        )
            .prop_map(|((s, f, e, j, l, d), lost)| ReportBlock {
                ssrc: Ssrc(s),
                fraction_lost: f,
                cumulative_lost: lost,
                extended_highest_seq: e,
                jitter: j,
                last_sr: l,
                delay_since_last_sr: d,
            })
    }

    fn packet() -> impl Strategy<Value = RtcpPacket> {
        let blocks = || prop::collection::vec(block(), 0..4);
        let item = (1..=255u8, bytes(20)).prop_map(|(kind, value)| SdesItem { kind, value });
        let chunk =
            (any::<u32>(), prop::collection::vec(item, 0..3)).prop_map(|(s, items)| SdesChunk {
                ssrc: Ssrc(s),
                items,
            });
        prop_oneof![
            (any::<(u32, u64, u32, u32, u32)>(), blocks(), bytes(12)).prop_map(
                |((s, n, r, p, o), reports, extension)| {
                    RtcpPacket::SenderReport(SenderReport {
                        ssrc: Ssrc(s),
                        ntp_time: NtpTimestamp(n),
                        rtp_time: r,
                        packet_count: p,
                        octet_count: o,
                        reports,
                        extension,
                    })
                }
            ),
            (any::<u32>(), blocks(), bytes(12)).prop_map(|(s, reports, extension)| {
                RtcpPacket::ReceiverReport(ReceiverReport {
                    ssrc: Ssrc(s),
                    reports,
                    extension,
                })
            }),
            prop::collection::vec(chunk, 0..3).prop_map(RtcpPacket::SourceDescription),
            (
                prop::collection::vec(any::<u32>().prop_map(Ssrc), 0..4),
                prop::option::of(bytes(20))
            )
                .prop_map(|(sources, reason)| RtcpPacket::Bye(Bye { sources, reason })),
            (0..32u8, any::<u32>(), any::<[u8; 4]>(), bytes(12)).prop_map(
                |(subtype, s, name, data)| RtcpPacket::App(App {
                    subtype,
                    ssrc: Ssrc(s),
                    name,
                    data
                })
            ),
            (
                any::<u8>().prop_filter("typed", |t| !(PT_SR..=PT_APP).contains(t)),
                0..32u8,
                bytes(12)
            )
                .prop_map(|(packet_type, count, body)| RtcpPacket::Other(OtherRtcp {
                    packet_type,
                    count,
                    body
                })),
        ]
    }

    proptest! {
        #[test]
        fn write_then_parse_round_trips(packets in prop::collection::vec(packet(), 1..4)) {
            let wire = RtcpPacket::write_compound(&packets).unwrap();
            prop_assert_eq!(wire.len() % 4, 0);
            prop_assert_eq!(RtcpPacket::parse_compound(&wire).unwrap(), packets);
        }

        #[test]
        fn parse_never_panics_and_what_parses_rewrites(data in prop::collection::vec(any::<u8>(), 0..120)) {
            if let Ok(packets) = RtcpPacket::parse_compound(&Bytes::from(data)) {
                let wire = RtcpPacket::write_compound(&packets).unwrap();
                prop_assert_eq!(RtcpPacket::parse_compound(&wire).unwrap(), packets);
            }
        }
    }
}
