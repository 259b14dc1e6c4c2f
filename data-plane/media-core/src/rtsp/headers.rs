//! The RTSP headers a server negotiates with: `Transport`, `Session`, `RTP-Info`, `Range`,
//! `CSeq`.
//!
//! `rtsp-types` has typed versions of these, but they are RTSP 2.0 flavoured, case-sensitive
//! (`mode=Record` is not record) and report failures without saying what failed; its
//! `Transport` parser can even panic on a `dest_addr` ending in a backslash. Client input is
//! therefore parsed here; what we send is plain text built here too, so both sides agree.

use std::fmt;

use super::codec::{clip, parse_decimal};
use super::message::names::{CSEQ, SESSION};
use super::message::{Headers, Request, Response, StatusCode};

/// Why a header cannot be used. `text` is the offending part, clipped for logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("{header} header is missing")]
    Missing { header: &'static str },
    #[error("bad {what} {text:?} in {header} header")]
    Bad {
        header: &'static str,
        what: &'static str,
        text: String,
    },
    #[error("transport {text:?} is not RTP/AVP or RTP/SAVP over UDP or TCP")]
    UnsupportedTransport { text: String },
    #[error("transport mode {text:?} is neither play nor record")]
    UnsupportedMode { text: String },
    #[error("none of the transports {text:?} is acceptable")]
    NoAcceptableTransport { text: String },
}

impl HeaderError {
    /// The status the server answers with (RFC 2326 §11).
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::Missing { header: "Session" } => StatusCode::SessionNotFound,
            Self::UnsupportedTransport { .. }
            | Self::UnsupportedMode { .. }
            | Self::NoAcceptableTransport { .. } => StatusCode::UnsupportedTransport,
            _ => StatusCode::BadRequest,
        }
    }
}

fn bad(header: &'static str, what: &'static str, text: &str) -> HeaderError {
    HeaderError::Bad {
        header,
        what,
        text: clip(text),
    }
}

/// `Range` value for a live stream: from now, open ended.
pub const RANGE_LIVE: &str = "npt=0-";

/// The message's `CSeq`. The decoder has already rejected requests where this fails.
pub fn cseq(headers: &Headers) -> Result<u32, HeaderError> {
    let value = headers
        .get(&CSEQ)
        .ok_or(HeaderError::Missing { header: "CSeq" })?;
    parse_decimal(value).ok_or_else(|| bad("CSeq", "number", value))
}

/// A response to `request` with its `CSeq` echoed, since clients match answers by it.
pub fn respond_to(request: &Request, status: StatusCode) -> Response {
    let response = Response::new(status);
    match request.header(&CSEQ) {
        Some(value) => response.with_header(CSEQ, value),
        None => response,
    }
}

/// Lower transport of RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LowerTransport {
    Udp,
    /// Interleaved in the RTSP connection.
    Tcp,
}

/// RTP profile: plain or SRTP (for RTSPS).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Profile {
    Avp,
    Savp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Delivery {
    Unicast,
    Multicast,
}

/// Direction of a session: `record` publishes, `play` (the default) reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransportMode {
    Play,
    Record,
}

/// One transport specification of a `Transport` header (RFC 2326 §12.39).
///
/// Security note for servers: `destination` and `source` are client claims; sending unicast
/// RTP anywhere but the peer address turns the server into a reflector.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TransportSpec {
    pub profile: Profile,
    pub lower: LowerTransport,
    pub delivery: Option<Delivery>,
    /// RTP and RTCP channels of `$` frames.
    pub interleaved: Option<(u8, u8)>,
    /// RTP and RTCP ports of the client (UDP unicast).
    pub client_port: Option<(u16, u16)>,
    /// RTP and RTCP ports of the server (UDP unicast).
    pub server_port: Option<(u16, u16)>,
    /// RTP and RTCP ports of a multicast group.
    pub port: Option<(u16, u16)>,
    pub mode: Option<TransportMode>,
    pub ssrc: Option<u32>,
    pub destination: Option<String>,
    pub source: Option<String>,
    pub ttl: Option<u8>,
}

impl TransportSpec {
    /// A spec with only the protocol set, for building responses.
    pub fn new(profile: Profile, lower: LowerTransport) -> Self {
        Self {
            profile,
            lower,
            delivery: None,
            interleaved: None,
            client_port: None,
            server_port: None,
            port: None,
            mode: None,
            ssrc: None,
            destination: None,
            source: None,
            ttl: None,
        }
    }

    /// Parses one comma-free spec such as `RTP/AVP/TCP;unicast;interleaved=0-1;mode=record`.
    /// Parameter names and keywords are case-insensitive; unknown parameters are ignored.
    pub fn parse(spec: &str) -> Result<Self, HeaderError> {
        let mut parts = split_unquoted(spec, ';');
        let protocol = parts.next().map(str::trim).unwrap_or_default();
        let mut out = match protocol.to_ascii_uppercase().as_str() {
            "RTP/AVP" | "RTP/AVP/UDP" => Self::new(Profile::Avp, LowerTransport::Udp),
            "RTP/AVP/TCP" => Self::new(Profile::Avp, LowerTransport::Tcp),
            "RTP/SAVP" | "RTP/SAVP/UDP" => Self::new(Profile::Savp, LowerTransport::Udp),
            "RTP/SAVP/TCP" => Self::new(Profile::Savp, LowerTransport::Tcp),
            _ => {
                return Err(HeaderError::UnsupportedTransport {
                    text: clip(protocol),
                });
            }
        };
        for param in parts {
            let (name, value) = match param.split_once('=') {
                Some((name, value)) => (name.trim(), Some(unquote(value.trim()))),
                None => (param.trim(), None),
            };
            let value_of = |what| value.ok_or_else(|| bad("Transport", what, name));
            match name.to_ascii_lowercase().as_str() {
                "unicast" => out.delivery = Some(Delivery::Unicast),
                "multicast" => out.delivery = Some(Delivery::Multicast),
                "interleaved" => {
                    out.interleaved = Some(parse_pair(value_of("interleaved")?, "interleaved")?);
                }
                "client_port" => {
                    out.client_port = Some(parse_pair(value_of("client_port")?, "client_port")?);
                }
                "server_port" => {
                    out.server_port = Some(parse_pair(value_of("server_port")?, "server_port")?);
                }
                "port" => out.port = Some(parse_pair(value_of("port")?, "port")?),
                "mode" => out.mode = Some(parse_mode(value_of("mode")?)?),
                "ssrc" => out.ssrc = Some(parse_ssrc(value_of("ssrc")?)?),
                "ttl" => {
                    let ttl = value_of("ttl")?;
                    out.ttl = Some(parse_decimal(ttl).ok_or_else(|| bad("Transport", "ttl", ttl))?);
                }
                "destination" => out.destination = value.map(str::to_owned),
                "source" => out.source = value.map(str::to_owned),
                // Including "" from a trailing ';'.
                _ => {}
            }
        }
        Ok(out)
    }

    pub fn is_record(&self) -> bool {
        self.mode == Some(TransportMode::Record)
    }

    pub fn is_multicast(&self) -> bool {
        self.delivery == Some(Delivery::Multicast)
    }
}

/// Writes the canonical form that [`TransportSpec::parse`] reads back.
impl fmt::Display for TransportSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.profile {
            Profile::Avp => "RTP/AVP",
            Profile::Savp => "RTP/SAVP",
        })?;
        if self.lower == LowerTransport::Tcp {
            f.write_str("/TCP")?;
        }
        match self.delivery {
            Some(Delivery::Unicast) => f.write_str(";unicast")?,
            Some(Delivery::Multicast) => f.write_str(";multicast")?,
            None => {}
        }
        if let Some(destination) = &self.destination {
            write!(f, ";destination={destination}")?;
        }
        if let Some(source) = &self.source {
            write!(f, ";source={source}")?;
        }
        let pairs = [
            (
                "interleaved",
                self.interleaved.map(|(a, b)| (a.into(), b.into())),
            ),
            ("port", self.port),
            ("client_port", self.client_port),
            ("server_port", self.server_port),
        ];
        for (name, pair) in pairs {
            if let Some((a, b)) = pair {
                write!(f, ";{name}={a}-{b}")?;
            }
        }
        if let Some(ttl) = self.ttl {
            write!(f, ";ttl={ttl}")?;
        }
        if let Some(ssrc) = self.ssrc {
            write!(f, ";ssrc={ssrc:08X}")?;
        }
        match self.mode {
            Some(TransportMode::Play) => f.write_str(";mode=play"),
            Some(TransportMode::Record) => f.write_str(";mode=record"),
            None => Ok(()),
        }
    }
}

/// Parses every spec of a `Transport` value, in the client's order of preference.
pub fn parse_transports(value: &str) -> Vec<Result<TransportSpec, HeaderError>> {
    split_unquoted(value, ',')
        .filter(|spec| !spec.trim().is_empty())
        .map(TransportSpec::parse)
        .collect()
}

/// The first spec that parses and that `acceptable` takes (RFC 2326: the client lists them
/// by preference). Specs that do not parse are skipped, since a client may offer something
/// exotic first; if nothing is taken, the error is the first parse failure, or
/// [`HeaderError::NoAcceptableTransport`] when everything parsed but was refused.
pub fn choose_transport(
    value: &str,
    mut acceptable: impl FnMut(&TransportSpec) -> bool,
) -> Result<TransportSpec, HeaderError> {
    let mut first_error = None;
    for spec in parse_transports(value) {
        match spec {
            Ok(spec) if acceptable(&spec) => return Ok(spec),
            Ok(_) => {}
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or_else(|| {
        if value.trim().is_empty() {
            bad("Transport", "value", value)
        } else {
            HeaderError::NoAcceptableTransport { text: clip(value) }
        }
    }))
}

/// Splits on `sep` outside double quotes (`mode="PLAY,RECORD"` is one parameter).
fn split_unquoted(text: &str, sep: char) -> impl Iterator<Item = &str> {
    let mut rest = Some(text);
    std::iter::from_fn(move || {
        let current = rest?;
        let mut quoted = false;
        for (i, c) in current.char_indices() {
            if c == '"' {
                quoted = !quoted;
            } else if c == sep && !quoted {
                rest = Some(&current[i + 1..]);
                return Some(&current[..i]);
            }
        }
        rest = None;
        Some(current)
    })
}

fn unquote(value: &str) -> &str {
    value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value)
}

/// `a-b`, or `a` alone meaning `a-(a+1)` (RTCP on the next port or channel).
fn parse_pair<T>(value: &str, what: &'static str) -> Result<(T, T), HeaderError>
where
    T: std::str::FromStr + Copy + TryFrom<u32> + Into<u32>,
{
    let error = || bad("Transport", what, value);
    match value.split_once('-') {
        Some((a, b)) => {
            let a = parse_decimal(a.trim()).ok_or_else(error)?;
            let b = parse_decimal(b.trim()).ok_or_else(error)?;
            Ok((a, b))
        }
        None => {
            let a: T = parse_decimal(value).ok_or_else(error)?;
            let b = T::try_from(a.into() + 1).map_err(|_| error())?;
            Ok((a, b))
        }
    }
}

fn parse_mode(value: &str) -> Result<TransportMode, HeaderError> {
    match value.trim().to_ascii_lowercase().as_str() {
        "play" => Ok(TransportMode::Play),
        // "receive" is RFC 2326's draft name for record; some old encoders still send it.
        "record" | "receive" => Ok(TransportMode::Record),
        _ => Err(HeaderError::UnsupportedMode { text: clip(value) }),
    }
}

/// Eight hex digits by the RFC; shorter forms are accepted since some clients drop zeros.
fn parse_ssrc(value: &str) -> Result<u32, HeaderError> {
    let value = value.trim();
    if value.is_empty() || value.len() > 8 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad("Transport", "ssrc", value));
    }
    u32::from_str_radix(value, 16).map_err(|_| bad("Transport", "ssrc", value))
}

/// A `Session` header: `id` and, in responses, `;timeout=N` seconds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SessionHeader {
    pub id: String,
    pub timeout: Option<u32>,
}

impl SessionHeader {
    /// Longest accepted id; ours are 16 to 32 characters.
    pub const MAX_ID_LEN: usize = 256;

    pub fn parse(value: &str) -> Result<Self, HeaderError> {
        let mut parts = value.split(';');
        let id = parts.next().unwrap_or_default().trim();
        let id_ok = !id.is_empty()
            && id.len() <= Self::MAX_ID_LEN
            && id.bytes().all(|b| b.is_ascii_graphic() && b != b',');
        if !id_ok {
            return Err(bad("Session", "id", id));
        }
        let mut timeout = None;
        for param in parts {
            if let Some((name, value)) = param.split_once('=')
                && name.trim().eq_ignore_ascii_case("timeout")
            {
                let value = value.trim();
                timeout =
                    Some(parse_decimal(value).ok_or_else(|| bad("Session", "timeout", value))?);
            }
        }
        Ok(Self {
            id: id.to_owned(),
            timeout,
        })
    }

    /// The message's `Session` header, if it has one.
    pub fn from_headers(headers: &Headers) -> Result<Option<Self>, HeaderError> {
        headers.get(&SESSION).map(Self::parse).transpose()
    }
}

impl fmt::Display for SessionHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.id)?;
        match self.timeout {
            Some(timeout) => write!(f, ";timeout={timeout}"),
            None => Ok(()),
        }
    }
}

/// One track of an `RTP-Info` header, telling a player which sequence number and timestamp
/// the first packet after PLAY carries.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RtpInfoEntry {
    pub url: String,
    pub seq: Option<u16>,
    pub rtptime: Option<u32>,
}

/// Formats entries as `url=...;seq=...;rtptime=...,url=...`.
pub fn format_rtp_info(entries: &[RtpInfoEntry]) -> String {
    let mut out = String::new();
    for (i, entry) in entries.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("url=");
        out.push_str(&entry.url);
        if let Some(seq) = entry.seq {
            out.push_str(&format!(";seq={seq}"));
        }
        if let Some(rtptime) = entry.rtptime {
            out.push_str(&format!(";rtptime={rtptime}"));
        }
    }
    out
}

/// Parses an `RTP-Info` value (for a client or proxy reading from a camera).
pub fn parse_rtp_info(value: &str) -> Result<Vec<RtpInfoEntry>, HeaderError> {
    value
        .split(',')
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| {
            let mut url = None;
            let mut seq = None;
            let mut rtptime = None;
            for param in entry.split(';') {
                let Some((name, value)) = param.split_once('=') else {
                    continue;
                };
                let value = value.trim();
                match name.trim().to_ascii_lowercase().as_str() {
                    "url" => url = Some(value.to_owned()),
                    "seq" => {
                        seq = Some(
                            parse_decimal(value).ok_or_else(|| bad("RTP-Info", "seq", value))?,
                        );
                    }
                    "rtptime" => {
                        let time = parse_decimal(value)
                            .ok_or_else(|| bad("RTP-Info", "rtptime", value))?;
                        rtptime = Some(time);
                    }
                    _ => {}
                }
            }
            let url = url.ok_or_else(|| bad("RTP-Info", "entry without url", entry))?;
            Ok(RtpInfoEntry { url, seq, rtptime })
        })
        .collect()
}

#[cfg(test)]
#[path = "headers_tests.rs"]
mod tests;
