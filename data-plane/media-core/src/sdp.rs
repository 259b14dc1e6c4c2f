//! Session descriptions: parsing what a publisher ANNOUNCEs (or a camera DESCRIBEs) into
//! tracks, and writing the SDP we answer DESCRIBE with.
//!
//! Relaying must never depend on understanding a codec: every track keeps its `a=rtpmap` and
//! `a=fmtp` values as received and they are written back unchanged, so any RTP payload a
//! publisher describes reaches readers as described. [`Codec`] is the interpretation on top,
//! for the codecs we depacketize (H.264, H.265, AAC) or name in reports.
//!
//! Structure is checked by `sdp-types`; before that, line ends are normalised (bare `\n`,
//! trailing blanks) and invalid UTF-8 is replaced, because cameras send all of these. Line
//! numbers in errors count lines of the body as received.

mod codec;

pub use codec::{Codec, H264Params, H265Params, Mpeg4AudioParams};

use sdp_types::{Attribute, Media, Origin};

/// A parsed session description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionDescription {
    /// Session-level `a=control` (`*` or an absolute URL), which clients resolve SETUP URLs
    /// against.
    pub control: Option<String>,
    pub tracks: Vec<Track>,
}

/// The `m=` media type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum MediaKind {
    Video,
    Audio,
    Application,
    Other(String),
}

impl MediaKind {
    pub fn as_str(&self) -> &str {
        match self {
            Self::Video => "video",
            Self::Audio => "audio",
            Self::Application => "application",
            Self::Other(other) => other,
        }
    }

    fn parse(text: &str) -> Self {
        match text.to_ascii_lowercase().as_str() {
            "video" => Self::Video,
            "audio" => Self::Audio,
            "application" => Self::Application,
            _ => Self::Other(text.to_owned()),
        }
    }
}

/// One media section. When its `m=` line lists several payload types, the first is the one
/// described here; packets of the others still pass through, since relaying is per track.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Track {
    pub media: MediaKind,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub codec: Codec,
    /// `a=control` as received, e.g. `streamid=0` or an absolute URL.
    pub control: Option<String>,
    /// `a=rtpmap` value for `payload_type` as received, e.g. `96 H264/90000`; `None` for a
    /// static payload type described by its number alone.
    pub rtpmap: Option<String>,
    /// `a=fmtp` value for `payload_type` as received, e.g. `96 packetization-mode=1;...`.
    pub fmtp: Option<String>,
    /// The normalised media section, `m=` line first, each line ending in CRLF.
    pub raw: String,
}

impl Track {
    /// A track described by a codec alone (no SDP received): `rtpmap` and `fmtp` are derived
    /// from it.
    pub fn from_codec(media: MediaKind, payload_type: u8, codec: Codec) -> Self {
        let clock_rate = codec.clock_rate();
        Self {
            media,
            payload_type,
            clock_rate,
            rtpmap: codec.rtpmap(payload_type),
            fmtp: codec.fmtp(payload_type),
            codec,
            control: None,
            raw: String::new(),
        }
    }
}

/// Why a body is not a usable session description. Line numbers are 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("line {line}: {reason}: {text:?}")]
    Syntax {
        line: usize,
        text: String,
        reason: String,
    },
    #[error("session description has no v=0 line")]
    NoVersion,
    #[error("session description has no media sections")]
    NoMedia,
    #[error("line {line}: media section is not RTP: {text:?}")]
    NotRtp { line: usize, text: String },
    #[error("line {line}: media format is not a payload type 0-127: {text:?}")]
    BadPayloadType { line: usize, text: String },
    #[error("line {line}: dynamic payload type {payload_type} has no a=rtpmap")]
    MissingRtpmap { line: usize, payload_type: u8 },
    #[error("line {line}: bad a=rtpmap: {text:?}")]
    BadRtpmap { line: usize, text: String },
    #[error("line {line}: bad {param} in a=fmtp: {text:?}")]
    BadFmtp {
        line: usize,
        param: &'static str,
        text: String,
    },
    #[error("line {line}: a=fmtp lacks {param}")]
    MissingFmtp { line: usize, param: &'static str },
}

/// A media section's normalised lines, numbered as in the body.
struct Section<'a> {
    lines: Vec<(usize, &'a str)>,
}

impl Section<'_> {
    fn m_line(&self) -> (usize, &str) {
        self.lines.first().copied().unwrap_or((0, ""))
    }

    /// The first `a=<name>:<value>` whose value starts with `<pt> ` (rtpmap, fmtp).
    fn attribute_for(&self, name: &str, payload_type: u8) -> Option<(usize, &str)> {
        let prefix = format!("a={name}:");
        let pt = payload_type.to_string();
        self.lines.iter().find_map(|&(n, line)| {
            let value = strip_prefix_ignore_case(line, &prefix)?.trim_start();
            let rest = value.strip_prefix(pt.as_str())?;
            rest.starts_with([' ', '\t']).then_some((n, value))
        })
    }
}

impl SessionDescription {
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        let text = String::from_utf8_lossy(body);
        let lines: Vec<&str> = text
            .split('\n')
            .map(|l| l.trim_matches([' ', '\t', '\r']))
            .collect();
        let normalised = lines.join("\r\n");
        let session = sdp_types::Session::parse(normalised.as_bytes())
            .map_err(|e| syntax_error(&e, &lines))?;

        let sections = split_sections(&lines);
        if sections.is_empty() || session.medias.is_empty() {
            return Err(SdpError::NoMedia);
        }
        let tracks = session
            .medias
            .iter()
            .zip(&sections)
            .map(|(media, section)| parse_track(media, section))
            .collect::<Result<Vec<_>, _>>()?;
        let control = session
            .get_first_attribute_value("control")
            .flatten()
            .map(|c| c.trim().to_owned());
        Ok(Self { control, tracks })
    }

    /// The SDP for a DESCRIBE response: tracks get `a=control:trackID=N` in order, which is
    /// what [`crate::rtsp::SetupTarget::track_id`] reads back from SETUP URLs.
    pub fn generate(tracks: &[Track]) -> String {
        let origin = Origin::with_ip_addr("0", 0, std::net::Ipv4Addr::LOCALHOST);
        let mut session = sdp_types::Session::new(origin, "Stream");
        session.connection = Some(sdp_types::Connection::from_ip_addr(
            std::net::Ipv4Addr::UNSPECIFIED,
        ));
        session.times = vec![sdp_types::Time::new(0, 0)];
        session.medias = tracks
            .iter()
            .enumerate()
            .map(|(i, track)| {
                let mut media = Media {
                    media: track.media.as_str().to_owned(),
                    port: 0,
                    num_ports: None,
                    proto: "RTP/AVP".to_owned(),
                    fmt: track.payload_type.to_string(),
                    media_title: None,
                    connections: Vec::new(),
                    bandwidths: Vec::new(),
                    key: None,
                    attributes: Vec::new(),
                };
                for (name, value) in [("rtpmap", &track.rtpmap), ("fmtp", &track.fmtp)] {
                    if let Some(value) = value {
                        media.attributes.push(Attribute::with_value(name, value));
                    }
                }
                media
                    .attributes
                    .push(Attribute::with_value("control", format!("trackID={i}")));
                media
            })
            .collect();
        session.to_string()
    }
}

fn syntax_error(error: &sdp_types::ParserError, lines: &[&str]) -> SdpError {
    use sdp_types::ParserError as E;
    #[allow(deprecated)] // UnexpectedLine is no longer produced but still matchable.
    let line = match *error {
        E::NoVersion => return SdpError::NoVersion,
        E::UnexpectedLine(n, _)
        | E::InvalidLineFormat(n, _)
        | E::InvalidFieldEncoding(n, _)
        | E::InvalidFieldFormat(n, _)
        | E::MissingField(n, _)
        | E::FieldTrailingData(n, _)
        | E::InvalidVersion(n, _)
        | E::MultipleVersions(n)
        | E::MultipleOrigins(n)
        | E::MultipleSessionNames(n)
        | E::MultipleSessionDescription(n)
        | E::MultipleUris(n)
        | E::MultipleConnections(n)
        | E::MultipleTimeZones(n)
        | E::MultipleMediaTitles(n)
        | E::MultipleKeys(n)
        | E::RepeatWithoutTime(n) => n,
        E::NoOrigin | E::NoSessionName => 0,
    };
    let text = line
        .checked_sub(1)
        .and_then(|i| lines.get(i))
        .copied()
        .unwrap_or_default();
    SdpError::Syntax {
        line,
        text: crate::rtsp::codec::clip(text),
        reason: error.to_string(),
    }
}

/// Groups the lines from each `m=` to the next; sdp-types produces its medias in the same
/// order, one per `m=` line.
fn split_sections<'a>(lines: &[&'a str]) -> Vec<Section<'a>> {
    let mut sections: Vec<Section<'a>> = Vec::new();
    for (i, &line) in lines.iter().enumerate() {
        if line.starts_with("m=") {
            sections.push(Section { lines: Vec::new() });
        }
        if let Some(section) = sections.last_mut()
            && !line.is_empty()
        {
            section.lines.push((i + 1, line));
        }
    }
    sections
}

fn parse_track(media: &Media, section: &Section<'_>) -> Result<Track, SdpError> {
    let (m_number, m_line) = section.m_line();
    if !media.proto.to_ascii_uppercase().contains("RTP/") {
        return Err(SdpError::NotRtp {
            line: m_number,
            text: crate::rtsp::codec::clip(m_line),
        });
    }
    let first = media.fmt.split_whitespace().next().unwrap_or_default();
    let payload_type = crate::rtsp::codec::parse_decimal::<u8>(first)
        .filter(|pt| *pt < 128)
        .ok_or_else(|| SdpError::BadPayloadType {
            line: m_number,
            text: crate::rtsp::codec::clip(first),
        })?;
    let kind = MediaKind::parse(&media.media);
    let rtpmap = section.attribute_for("rtpmap", payload_type);
    let fmtp = section.attribute_for("fmtp", payload_type);
    let (codec, clock_rate) = codec::interpret(&kind, payload_type, m_number, rtpmap, fmtp)?;
    let control = media
        .get_first_attribute_value("control")
        .flatten()
        .map(|c| c.trim().to_owned())
        .filter(|c| !c.is_empty());
    let mut raw = String::new();
    for (_, line) in &section.lines {
        raw.push_str(line);
        raw.push_str("\r\n");
    }
    Ok(Track {
        media: kind,
        payload_type,
        clock_rate,
        codec,
        control,
        rtpmap: rtpmap.map(|(_, v)| v.to_owned()),
        fmtp: fmtp.map(|(_, v)| v.to_owned()),
        raw,
    })
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

#[cfg(test)]
#[path = "sdp/tests.rs"]
mod tests;
