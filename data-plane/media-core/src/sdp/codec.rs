//! What a track's `a=rtpmap`/`a=fmtp` say about its codec, and the reverse.

use bytes::Bytes;

use super::{MediaKind, SdpError};
use crate::rtsp::codec::{clip, parse_decimal};

/// H.264 (RFC 6184) parameters.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct H264Params {
    /// From `sprop-parameter-sets`; `None` when absent or undecodable, in which case the
    /// parameter sets are expected in-band.
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
    /// 0 (single NAL unit, the default), 1 (non-interleaved) or 2 (interleaved).
    pub packetization_mode: u8,
    pub profile_level_id: Option<[u8; 3]>,
}

/// H.265 (RFC 7798) parameters; `None` when absent or undecodable, as for H.264.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct H265Params {
    pub vps: Option<Bytes>,
    pub sps: Option<Bytes>,
    pub pps: Option<Bytes>,
}

/// AAC in MPEG4-GENERIC (RFC 3640) with its AU header layout.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Mpeg4AudioParams {
    /// AudioSpecificConfig, from the `config` hex string. Required: without it no reader can
    /// decode the stream, so an ANNOUNCE lacking it is refused rather than relayed.
    pub config: Bytes,
    /// The rtpmap clock rate, which RFC 3640 makes the sampling rate.
    pub sample_rate: u32,
    pub channels: u8,
    pub size_length: u8,
    pub index_length: u8,
    pub index_delta_length: u8,
}

/// The codec of a track's primary payload type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Codec {
    H264(H264Params),
    H265(H265Params),
    Mpeg4Audio(Mpeg4AudioParams),
    Opus {
        channels: u8,
    },
    /// G.711 µ-law.
    Pcmu {
        channels: u8,
    },
    /// G.711 A-law.
    Pcma {
        channels: u8,
    },
    /// Anything else (LATM AAC, MJPEG, ONVIF metadata, ...): relayed, not interpreted.
    Other {
        encoding_name: String,
        clock_rate: u32,
        channels: Option<u16>,
        /// The `a=fmtp` parameters after the payload type.
        fmtp: Option<String>,
    },
}

impl Codec {
    pub fn clock_rate(&self) -> u32 {
        match self {
            Self::H264(_) | Self::H265(_) => 90_000,
            Self::Mpeg4Audio(p) => p.sample_rate,
            Self::Opus { .. } => 48_000,
            Self::Pcmu { .. } | Self::Pcma { .. } => 8_000,
            Self::Other { clock_rate, .. } => *clock_rate,
        }
    }

    /// Short name for reports and logs, e.g. `H264`.
    pub fn name(&self) -> &str {
        match self {
            Self::H264(_) => "H264",
            Self::H265(_) => "H265",
            Self::Mpeg4Audio(_) => "MPEG4-GENERIC",
            Self::Opus { .. } => "opus",
            Self::Pcmu { .. } => "PCMU",
            Self::Pcma { .. } => "PCMA",
            Self::Other { encoding_name, .. } => encoding_name,
        }
    }

    /// The `a=rtpmap` value describing this codec on `payload_type`.
    pub(super) fn rtpmap(&self, payload_type: u8) -> Option<String> {
        let channels = match self {
            Self::Mpeg4Audio(p) => Some(u16::from(p.channels)),
            Self::Opus { channels } => Some(u16::from(*channels)),
            Self::Pcmu { channels } | Self::Pcma { channels } => {
                Some(u16::from(*channels)).filter(|&c| c != 1)
            }
            Self::Other { channels, .. } => *channels,
            Self::H264(_) | Self::H265(_) => None,
        };
        let mut out = format!("{payload_type} {}/{}", self.name(), self.clock_rate());
        if let Some(channels) = channels {
            out.push_str(&format!("/{channels}"));
        }
        Some(out)
    }

    /// The `a=fmtp` value for this codec on `payload_type`, if it has parameters.
    pub(super) fn fmtp(&self, payload_type: u8) -> Option<String> {
        let mut params: Vec<String> = Vec::new();
        match self {
            Self::H264(p) => {
                params.push(format!("packetization-mode={}", p.packetization_mode));
                let sets: Vec<String> = [&p.sps, &p.pps]
                    .into_iter()
                    .flatten()
                    .map(|s| base64_encode(s))
                    .collect();
                if !sets.is_empty() {
                    params.push(format!("sprop-parameter-sets={}", sets.join(",")));
                }
                if let Some([a, b, c]) = p.profile_level_id {
                    params.push(format!("profile-level-id={a:02X}{b:02X}{c:02X}"));
                }
            }
            Self::H265(p) => {
                for (name, set) in [
                    ("sprop-vps", &p.vps),
                    ("sprop-sps", &p.sps),
                    ("sprop-pps", &p.pps),
                ] {
                    if let Some(set) = set {
                        params.push(format!("{name}={}", base64_encode(set)));
                    }
                }
            }
            Self::Mpeg4Audio(p) => {
                params.push("profile-level-id=1;mode=AAC-hbr".to_owned());
                params.push(format!("sizelength={}", p.size_length));
                params.push(format!("indexlength={}", p.index_length));
                params.push(format!("indexdeltalength={}", p.index_delta_length));
                params.push(format!("config={}", hex_encode(&p.config)));
            }
            Self::Other {
                fmtp: Some(fmtp), ..
            } => params.push(fmtp.clone()),
            Self::Opus { .. } | Self::Pcmu { .. } | Self::Pcma { .. } | Self::Other { .. } => {}
        }
        (!params.is_empty()).then(|| format!("{payload_type} {}", params.join(";")))
    }
}

/// Interprets a media section's primary payload type. `rtpmap` and `fmtp` are (line number,
/// attribute value) for that payload type.
pub(super) fn interpret(
    kind: &MediaKind,
    payload_type: u8,
    m_line: usize,
    rtpmap: Option<(usize, &str)>,
    fmtp: Option<(usize, &str)>,
) -> Result<(Codec, u32), SdpError> {
    let (name, clock_rate, channels) = match rtpmap {
        Some((line, value)) => parse_rtpmap(line, value)?,
        None => static_payload_type(payload_type)
            .map(|(name, rate, channels)| (name.to_owned(), rate, channels.map(str::to_owned)))
            .ok_or(SdpError::MissingRtpmap {
                line: m_line,
                payload_type,
            })?,
    };
    let fmtp_line = fmtp.map_or(m_line, |(line, _)| line);
    let params = Fmtp {
        line: fmtp_line,
        text: fmtp.map(|(_, v)| after_payload_type(v)).unwrap_or_default(),
    };
    let channel_count = |default: u8| -> Result<u8, SdpError> {
        match &channels {
            None => Ok(default),
            Some(text) => parse_decimal(text).ok_or_else(|| SdpError::BadRtpmap {
                line: rtpmap.map_or(m_line, |(line, _)| line),
                text: clip(text),
            }),
        }
    };
    let codec = match name.to_ascii_uppercase().as_str() {
        "H264" => Codec::H264(H264Params {
            sps: params.parameter_set("sprop-parameter-sets", |nal| nal & 0x1f == 7),
            pps: params.parameter_set("sprop-parameter-sets", |nal| nal & 0x1f == 8),
            packetization_mode: match params.get("packetization-mode") {
                None => 0,
                Some(text) => parse_decimal(text)
                    .filter(|mode| *mode <= 2)
                    .ok_or_else(|| params.bad("packetization-mode", text))?,
            },
            profile_level_id: params.get("profile-level-id").and_then(|text| {
                let bytes = hex_decode(text)?;
                <[u8; 3]>::try_from(bytes.as_slice()).ok()
            }),
        }),
        "H265" => Codec::H265(H265Params {
            vps: params.parameter_set("sprop-vps", |_| true),
            sps: params.parameter_set("sprop-sps", |_| true),
            pps: params.parameter_set("sprop-pps", |_| true),
        }),
        "MPEG4-GENERIC" if *kind == MediaKind::Audio => {
            Codec::Mpeg4Audio(mpeg4_audio(&params, clock_rate, channel_count(1)?)?)
        }
        "OPUS" => Codec::Opus {
            channels: channel_count(2)?,
        },
        "PCMU" => Codec::Pcmu {
            channels: channel_count(1)?,
        },
        "PCMA" => Codec::Pcma {
            channels: channel_count(1)?,
        },
        _ => Codec::Other {
            encoding_name: name,
            clock_rate,
            channels: channels.as_deref().and_then(parse_decimal),
            fmtp: fmtp.map(|(_, v)| after_payload_type(v).to_owned()),
        },
    };
    Ok((codec, clock_rate))
}

fn mpeg4_audio(
    params: &Fmtp<'_>,
    sample_rate: u32,
    channels: u8,
) -> Result<Mpeg4AudioParams, SdpError> {
    let config = params.get("config").ok_or(SdpError::MissingFmtp {
        line: params.line,
        param: "config",
    })?;
    let config = hex_decode(config)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| params.bad("config", config))?;
    // RFC 3640 §3.3.6: AAC-hbr fixes the AU header layout; other modes must state it.
    let defaults = match params.get("mode") {
        Some(mode) if mode.eq_ignore_ascii_case("AAC-hbr") => Some((13, 3, 3)),
        Some(mode) if mode.eq_ignore_ascii_case("AAC-lbr") => Some((6, 2, 2)),
        _ => None,
    };
    let field = |name: &'static str, default: Option<u8>| -> Result<u8, SdpError> {
        match params.get(name) {
            Some(text) => parse_decimal(text)
                .filter(|v: &u8| *v <= 32)
                .ok_or_else(|| params.bad(name, text)),
            None => default.ok_or(SdpError::MissingFmtp {
                line: params.line,
                param: name,
            }),
        }
    };
    Ok(Mpeg4AudioParams {
        config: Bytes::from(config),
        sample_rate,
        channels,
        size_length: field("sizelength", defaults.map(|d| d.0))?,
        index_length: field("indexlength", defaults.map(|d| d.1))?,
        index_delta_length: field("indexdeltalength", defaults.map(|d| d.2))?,
    })
}

/// `<pt> <name>/<clock>[/<params>]` into name, clock rate and encoding parameters.
fn parse_rtpmap(line: usize, value: &str) -> Result<(String, u32, Option<String>), SdpError> {
    let bad = || SdpError::BadRtpmap {
        line,
        text: clip(value),
    };
    let mut parts = after_payload_type(value).split('/');
    let name = parts
        .next()
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .ok_or_else(bad)?;
    let clock_rate = parts
        .next()
        .and_then(|c| parse_decimal::<u32>(c.trim()))
        .filter(|c| *c > 0)
        .ok_or_else(bad)?;
    let params = parts.next().map(|p| p.trim().to_owned());
    Ok((name.to_owned(), clock_rate, params))
}

fn after_payload_type(value: &str) -> &str {
    value
        .trim_start()
        .split_once([' ', '\t'])
        .map_or("", |(_, rest)| rest.trim())
}

/// RFC 3551 table 4 and 5: payload types usable without an rtpmap.
fn static_payload_type(pt: u8) -> Option<(&'static str, u32, Option<&'static str>)> {
    Some(match pt {
        0 => ("PCMU", 8_000, None),
        3 => ("GSM", 8_000, None),
        4 => ("G723", 8_000, None),
        5 => ("DVI4", 8_000, None),
        6 => ("DVI4", 16_000, None),
        7 => ("LPC", 8_000, None),
        8 => ("PCMA", 8_000, None),
        9 => ("G722", 8_000, None),
        10 => ("L16", 44_100, Some("2")),
        11 => ("L16", 44_100, None),
        12 => ("QCELP", 8_000, None),
        13 => ("CN", 8_000, None),
        14 => ("MPA", 90_000, None),
        15 => ("G728", 8_000, None),
        16 => ("DVI4", 11_025, None),
        17 => ("DVI4", 22_050, None),
        18 => ("G729", 8_000, None),
        25 => ("CelB", 90_000, None),
        26 => ("JPEG", 90_000, None),
        28 => ("nv", 90_000, None),
        31 => ("H261", 90_000, None),
        32 => ("MPV", 90_000, None),
        33 => ("MP2T", 90_000, None),
        34 => ("H263", 90_000, None),
        _ => return None,
    })
}

/// `key=value; key=value` parameters of one fmtp line; keys are case-insensitive and ffmpeg
/// puts a space after each `;`.
struct Fmtp<'a> {
    line: usize,
    text: &'a str,
}

impl<'a> Fmtp<'a> {
    fn get(&self, name: &str) -> Option<&'a str> {
        self.text.split(';').find_map(|param| {
            let (key, value) = param.split_once('=')?;
            key.trim().eq_ignore_ascii_case(name).then(|| value.trim())
        })
    }

    /// The first base64 parameter set in a comma-separated list whose first byte `wanted`.
    fn parameter_set(&self, name: &str, wanted: impl Fn(u8) -> bool) -> Option<Bytes> {
        self.get(name)?
            .split(',')
            .filter_map(|set| base64_decode(set.trim()))
            .find(|set| set.first().is_some_and(|&b| wanted(b)))
            .map(Bytes::from)
    }

    fn bad(&self, param: &'static str, text: &str) -> SdpError {
        SdpError::BadFmtp {
            line: self.line,
            param,
            text: clip(text),
        }
    }
}

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

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
                out.push(char::from(BASE64[(n >> (18 - 6 * i)) as usize & 63]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Standard alphabet; padding optional (some encoders drop it). `None` on anything else.
pub(crate) fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim_end_matches('=');
    if text.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for c in text.bytes() {
        let v = BASE64.iter().position(|&a| a == c)?;
        acc = (acc << 6) | v as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    Some(out)
}

fn hex_encode(data: &[u8]) -> String {
    data.iter().map(|b| format!("{b:02X}")).collect()
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
