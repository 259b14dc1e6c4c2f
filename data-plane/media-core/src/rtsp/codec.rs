//! Framing of the byte stream on an RTSP 1.0 TCP connection: requests, responses and
//! `$`-interleaved binary frames, decoded incrementally and without I/O.
//!
//! Message bodies are `Bytes` split off the read buffer, so an ANNOUNCE body or an RTP packet
//! is never copied on its way in. The parser is ours rather than `rtsp-types`': that one
//! insists on CRLF, has no size limits and reports failures without a position.

use bytes::{Buf, Bytes, BytesMut};

use super::message::{HeaderName, Headers, Method, Request, Response, StatusCode, Url, names};

/// One unit read off an RTSP connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Request(Request),
    Response(Response),
    /// A `$` frame: RTP or RTCP on an interleaved channel.
    Interleaved {
        channel: u8,
        payload: Bytes,
    },
}

/// Resource limits for one connection. Anything beyond them is rejected rather than buffered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Start line plus headers, in bytes. The largest real heads are Digest `Authorization` and
    /// multi-spec `Transport` lines, well under 1 KiB; 8 KiB is the nginx/Apache default.
    pub max_head: usize,
    /// Header lines per message (gortsplib allows 255; real clients send under 15).
    pub max_headers: usize,
    /// Message body, in bytes: an SDP, or a GET/SET_PARAMETER text body.
    pub max_body: usize,
    /// Interleaved payload, in bytes; the format itself caps it at 65535.
    pub max_interleaved: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_head: 8 * 1024,
            max_headers: 64,
            max_body: 64 * 1024,
            max_interleaved: usize::from(u16::MAX),
        }
    }
}

/// Why the byte stream is not RTSP. Offsets count bytes from the start of the connection, so
/// they can be found in a capture. Every error is final: the stream is out of sync and the
/// connection must be closed (after a best-effort response with [`DecodeError::status_code`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("byte {offset}: bad start line, expected {expected}")]
    BadStartLine { offset: u64, expected: &'static str },
    #[error("byte {offset}: unsupported protocol version {version:?}, only RTSP/1.0 is spoken")]
    UnsupportedVersion { offset: u64, version: String },
    #[error("byte {offset}: request URI is not an absolute URL ({reason})")]
    BadRequestUri { offset: u64, reason: String },
    #[error("byte {offset}: bad header line, expected {expected}")]
    BadHeader { offset: u64, expected: &'static str },
    #[error("byte {offset}: start line and headers exceed the limit of {limit} bytes")]
    HeaderTooLarge { offset: u64, limit: usize },
    #[error("byte {offset}: more than {limit} header lines")]
    TooManyHeaders { offset: u64, limit: usize },
    #[error("byte {offset}: header {name} appears more than once")]
    DuplicateHeader { offset: u64, name: &'static str },
    #[error("byte {offset}: Content-Length {value:?} is not a decimal byte count")]
    BadContentLength { offset: u64, value: String },
    #[error("byte {offset}: body of {length} bytes exceeds the limit of {limit}")]
    BodyTooLarge {
        offset: u64,
        length: usize,
        limit: usize,
    },
    #[error("byte {offset}: request has no CSeq header")]
    MissingCSeq { offset: u64 },
    #[error("byte {offset}: CSeq {value:?} is not a 32-bit decimal number")]
    BadCSeq { offset: u64, value: String },
    #[error(
        "byte {offset}: interleaved frame of {length} bytes on channel {channel} exceeds the limit of {limit}"
    )]
    InterleavedTooLarge {
        offset: u64,
        channel: u8,
        length: usize,
        limit: usize,
    },
}

impl DecodeError {
    /// The status to answer with before closing the connection.
    pub fn status_code(&self) -> StatusCode {
        match self {
            Self::UnsupportedVersion { .. } => StatusCode::RTSPVersionNotSupported,
            Self::BodyTooLarge { .. } => StatusCode::RequestMessageBodyTooLarge,
            _ => StatusCode::BadRequest,
        }
    }
}

/// Why a message cannot be written. Checked so that nothing we send can split into two
/// messages or fail to parse on the other side.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("status code {code} is not three digits")]
    BadStatusCode { code: u16 },
    #[error("method {method:?} is not a token")]
    BadMethod { method: String },
    #[error("header name {name:?} is not a token")]
    BadHeaderName { name: String },
    #[error("value of header {name} contains CR, LF or NUL")]
    BadHeaderValue { name: String },
    #[error("reason phrase {reason:?} contains CR, LF or NUL")]
    BadReasonPhrase { reason: String },
    #[error("interleaved payload of {length} bytes exceeds 65535")]
    PayloadTooLarge { length: usize },
}

/// Incremental decoder for one connection.
///
/// Contract: pass the same buffer on every call and only append to it between calls; the
/// decoder consumes exactly the bytes of the items it returns (plus blank lines between
/// messages) and remembers how far it has scanned, so a head trickling in byte by byte is
/// scanned once, not once per byte.
#[derive(Debug)]
pub struct Decoder {
    limits: Limits,
    /// Bytes consumed since the connection started, for error offsets.
    consumed: u64,
    state: State,
    /// Set by the first error and returned from then on: the stream is out of sync.
    failed: Option<DecodeError>,
}

#[derive(Debug)]
enum State {
    Scan(Scan),
    /// Head parsed, waiting for `body_len` bytes after `head_len`.
    Body {
        head: Head,
        head_len: usize,
        body_len: usize,
    },
}

#[derive(Debug, Default)]
struct Scan {
    /// Next byte to look at.
    pos: usize,
    /// Start of the line containing `pos`.
    line_start: usize,
    /// Parsed as soon as its line is complete, so garbage is rejected without waiting for a
    /// whole head.
    start: Option<StartLine>,
}

#[derive(Debug, Clone)]
enum StartLine {
    Request { method: Method, uri: Option<Url> },
    Response { status: StatusCode, reason: String },
}

#[derive(Debug)]
struct Head {
    start: StartLine,
    headers: Headers,
    content_length: usize,
}

impl Decoder {
    pub fn new(limits: Limits) -> Self {
        Self {
            limits,
            consumed: 0,
            state: State::Scan(Scan::default()),
            failed: None,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// Bytes consumed so far on this connection.
    pub fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Takes the next complete item off the front of `buf`: `Ok(None)` means more bytes are
    /// needed, `Err` that the stream is invalid (see [`DecodeError`]).
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        if let Some(error) = &self.failed {
            return Err(error.clone());
        }
        let result = self.decode_inner(buf);
        if let Err(error) = &result {
            self.failed = Some(error.clone());
        }
        result
    }

    fn decode_inner(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        self.recover_from_misuse(buf.len());
        if let State::Scan(scan) = &self.state
            && scan.pos == 0
        {
            // Clients send CRLFs as keep-alives and between messages (RFC 2326 §10).
            let blank = buf
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count();
            self.advance(buf, blank);
        }
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        if first == b'$' && matches!(&self.state, State::Scan(scan) if scan.pos == 0) {
            return self.decode_interleaved(buf);
        }
        if let State::Scan(scan) = &mut self.state {
            let Some(head_len) = scan_head(scan, buf, self.consumed, &self.limits)? else {
                return Ok(None);
            };
            let head = parse_head(scan, &buf[..head_len], self.consumed, &self.limits)?;
            let body_len = head.content_length;
            self.state = State::Body {
                head,
                head_len,
                body_len,
            };
        }
        let State::Body {
            head_len, body_len, ..
        } = &self.state
        else {
            return Ok(None);
        };
        let total = head_len + body_len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let head_len = *head_len;
        let State::Body { head, .. } = std::mem::replace(&mut self.state, fresh_state()) else {
            return Ok(None);
        };
        let body = buf.split_to(total).freeze().slice(head_len..);
        self.consumed += total as u64;
        Ok(Some(build(head, body)))
    }

    fn decode_interleaved(&mut self, buf: &mut BytesMut) -> Result<Option<Item>, DecodeError> {
        let [_, channel, hi, lo, ..] = buf[..] else {
            return Ok(None);
        };
        let length = usize::from(u16::from_be_bytes([hi, lo]));
        if length > self.limits.max_interleaved {
            return Err(DecodeError::InterleavedTooLarge {
                offset: self.consumed,
                channel,
                length,
                limit: self.limits.max_interleaved,
            });
        }
        if buf.len() < 4 + length {
            buf.reserve(4 + length - buf.len());
            return Ok(None);
        }
        self.advance(buf, 4);
        let payload = buf.split_to(length).freeze();
        self.consumed += length as u64;
        Ok(Some(Item::Interleaved { channel, payload }))
    }

    fn advance(&mut self, buf: &mut BytesMut, n: usize) {
        buf.advance(n);
        self.consumed += n as u64;
    }

    /// A buffer shorter than what was already scanned means the caller broke the contract;
    /// start over rather than index out of bounds.
    fn recover_from_misuse(&mut self, len: usize) {
        let scanned = match &self.state {
            State::Scan(scan) => scan.pos,
            State::Body { head_len, .. } => *head_len,
        };
        if scanned > len {
            self.state = fresh_state();
        }
    }
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(Limits::default())
    }
}

fn fresh_state() -> State {
    State::Scan(Scan::default())
}

/// Advances `scan` over new bytes; returns the head length once the blank line is found.
/// Lines end in `\n` with an optional `\r` before it: bare `\n` is what sloppy clients send.
fn scan_head(
    scan: &mut Scan,
    buf: &[u8],
    base: u64,
    limits: &Limits,
) -> Result<Option<usize>, DecodeError> {
    while scan.pos < buf.len() {
        let i = scan.pos;
        let b = buf[i];
        scan.pos += 1;
        if scan.pos > limits.max_head {
            return Err(DecodeError::HeaderTooLarge {
                offset: base,
                limit: limits.max_head,
            });
        }
        if b != b'\n' {
            // Binary garbage (or RTP without a `$` frame) fails at once, not after 8 KiB.
            if i == 0 && !is_token_byte(b) {
                return Err(DecodeError::BadStartLine {
                    offset: base,
                    expected: "a method or RTSP/1.0",
                });
            }
            if is_forbidden_byte(b) {
                return Err(bad_byte(scan, base, i));
            }
            continue;
        }
        let line = trim_cr(&buf[scan.line_start..i]);
        if let Some(cr) = line.iter().position(|&b| b == b'\r') {
            return Err(bad_byte(scan, base, scan.line_start + cr));
        }
        if scan.start.is_none() {
            scan.start = Some(parse_start_line(line, base + scan.line_start as u64)?);
        } else if line.is_empty() {
            return Ok(Some(scan.pos));
        }
        scan.line_start = scan.pos;
    }
    Ok(None)
}

/// Control bytes other than HT never occur in a head; CR only right before LF (checked
/// per line, since the LF may not have arrived yet).
fn is_forbidden_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t' && b != b'\r') || b == 0x7f
}

fn bad_byte(scan: &Scan, base: u64, i: usize) -> DecodeError {
    let offset = base + i as u64;
    if scan.start.is_none() {
        DecodeError::BadStartLine {
            offset,
            expected: "printable text",
        }
    } else {
        DecodeError::BadHeader {
            offset,
            expected: "printable text",
        }
    }
}

fn trim_cr(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn parse_start_line(line: &[u8], offset: u64) -> Result<StartLine, DecodeError> {
    let bad = |expected| DecodeError::BadStartLine { offset, expected };
    let text = std::str::from_utf8(line).map_err(|_| bad("UTF-8 text"))?;
    if text
        .get(..5)
        .is_some_and(|p| p.eq_ignore_ascii_case("RTSP/"))
    {
        return parse_status_line(text, offset);
    }
    // Runs of blanks are accepted: nothing else can be meant.
    let mut parts = text.split([' ', '\t']).filter(|p| !p.is_empty());
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad("'METHOD URI RTSP/1.0'"));
    };
    if !is_token(method) {
        return Err(bad("a method token"));
    }
    check_version(version, offset)?;
    let uri = if uri == "*" {
        None
    } else {
        let url = Url::parse(uri).map_err(|e| DecodeError::BadRequestUri {
            offset,
            reason: e.to_string(),
        })?;
        Some(url)
    };
    Ok(StartLine::Request {
        method: Method::from(method),
        uri,
    })
}

fn parse_status_line(text: &str, offset: u64) -> Result<StartLine, DecodeError> {
    let bad = |expected| DecodeError::BadStartLine { offset, expected };
    let (version, rest) = text.split_once([' ', '\t']).unwrap_or((text, ""));
    check_version(version, offset)?;
    let rest = rest.trim_start_matches([' ', '\t']);
    let (code, reason) = rest.split_once([' ', '\t']).unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("a three-digit status code"));
    }
    let code: u16 = code.parse().map_err(|_| bad("a three-digit status code"))?;
    if code < 100 {
        return Err(bad("a status code of 100 or more"));
    }
    Ok(StartLine::Response {
        status: StatusCode::from(code),
        reason: reason.trim_matches([' ', '\t']).to_owned(),
    })
}

fn check_version(version: &str, offset: u64) -> Result<(), DecodeError> {
    if version.eq_ignore_ascii_case("RTSP/1.0") {
        Ok(())
    } else if version.contains('/') {
        Err(DecodeError::UnsupportedVersion {
            offset,
            version: clip(version),
        })
    } else {
        Err(DecodeError::BadStartLine {
            offset,
            expected: "RTSP/1.0",
        })
    }
}

/// Parses the header lines of a complete head (`head` ends with the blank line).
fn parse_head(scan: &Scan, head: &[u8], base: u64, limits: &Limits) -> Result<Head, DecodeError> {
    let Some(start) = scan.start.clone() else {
        // scan_head only reports a head end after the start line.
        return Err(DecodeError::BadStartLine {
            offset: base,
            expected: "a start line",
        });
    };
    let mut lines: Vec<(HeaderName, String, u64)> = Vec::new();
    let mut line_start = head
        .iter()
        .position(|&b| b == b'\n')
        .map_or(head.len(), |i| i + 1);
    while line_start < head.len() {
        let end = head[line_start..]
            .iter()
            .position(|&b| b == b'\n')
            .map_or(head.len(), |i| line_start + i);
        let line = trim_cr(&head[line_start..end]);
        let offset = base + line_start as u64;
        line_start = end + 1;
        if line.is_empty() {
            break;
        }
        if let Some(continuation) = line.strip_prefix(b" ").or(line.strip_prefix(b"\t")) {
            // Obsolete line folding: the value continues after one space.
            let Some((_, value, _)) = lines.last_mut() else {
                return Err(DecodeError::BadHeader {
                    offset,
                    expected: "a header name, not a continuation line",
                });
            };
            let continuation = String::from_utf8_lossy(continuation);
            let continuation = trim_blanks(&continuation);
            if !continuation.is_empty() {
                if !value.is_empty() {
                    value.push(' ');
                }
                value.push_str(continuation);
            }
            continue;
        }
        if lines.len() == limits.max_headers {
            return Err(DecodeError::TooManyHeaders {
                offset,
                limit: limits.max_headers,
            });
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err(DecodeError::BadHeader {
                offset,
                expected: "':' after the header name",
            });
        };
        let name = std::str::from_utf8(&line[..colon])
            .map(|n| n.trim_end_matches([' ', '\t']))
            .ok()
            .filter(|n| is_token(n))
            .and_then(|n| HeaderName::try_from(n).ok())
            .ok_or(DecodeError::BadHeader {
                offset,
                expected: "a header name token",
            })?;
        // Two lengths make the framing ambiguous (request smuggling); two CSeqs the answer.
        for (unique, label) in [
            (names::CONTENT_LENGTH, "Content-Length"),
            (names::CSEQ, "CSeq"),
        ] {
            if name == unique && lines.iter().any(|(n, _, _)| *n == unique) {
                return Err(DecodeError::DuplicateHeader {
                    offset,
                    name: label,
                });
            }
        }
        // Values are free text; a camera's Latin-1 `Server` line must not kill the session.
        let value = String::from_utf8_lossy(&line[colon + 1..]);
        lines.push((name, trim_blanks(&value).to_owned(), offset));
    }

    let mut content_length = 0;
    let mut headers = Headers::new();
    let mut has_cseq = false;
    for (name, value, offset) in lines {
        if name == names::CONTENT_LENGTH {
            content_length =
                parse_decimal(&value).ok_or_else(|| DecodeError::BadContentLength {
                    offset,
                    value: clip(&value),
                })?;
            if content_length > limits.max_body {
                return Err(DecodeError::BodyTooLarge {
                    offset,
                    length: content_length,
                    limit: limits.max_body,
                });
            }
            continue;
        }
        if name == names::CSEQ {
            if parse_decimal::<u32>(&value).is_none() {
                return Err(DecodeError::BadCSeq {
                    offset,
                    value: clip(&value),
                });
            }
            has_cseq = true;
        }
        headers.append(name, value);
    }
    // Responses from broken cameras sometimes lack it; requests must be answerable.
    if !has_cseq && matches!(start, StartLine::Request { .. }) {
        return Err(DecodeError::MissingCSeq { offset: base });
    }
    Ok(Head {
        start,
        headers,
        content_length,
    })
}

/// Digits only: `+5`, `-1`, `0x10` and `5, 5` are all rejected, unlike `str::parse`.
pub(crate) fn parse_decimal<T: std::str::FromStr>(text: &str) -> Option<T> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}

fn build(head: Head, body: Bytes) -> Item {
    match head.start {
        StartLine::Request { method, uri } => Item::Request(Request {
            method,
            uri,
            headers: head.headers,
            body,
        }),
        StartLine::Response { status, reason } => Item::Response(Response {
            status,
            reason,
            headers: head.headers,
            body,
        }),
    }
}

fn trim_blanks(text: &str) -> &str {
    text.trim_matches([' ', '\t'])
}

/// RFC 2616 token characters: what method and header names are made of.
pub(crate) fn is_token(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(is_token_byte)
}

fn is_token_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Keeps untrusted text in errors short enough for a log line.
pub(crate) fn clip(text: &str) -> String {
    const MAX: usize = 64;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &text[..cut]),
        None => text.to_owned(),
    }
}

/// Writes a request (as RTSP/1.0). `Content-Length` is derived from the body.
pub fn encode_request(request: &Request, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let method = <&str>::from(&request.method);
    if !is_token(method) {
        return Err(EncodeError::BadMethod {
            method: clip(method),
        });
    }
    let uri = request.uri.as_ref().map_or("*", Url::as_str);
    check_headers(&request.headers)?;
    dst.reserve(64 + uri.len() + request.body.len());
    dst.extend_from_slice(method.as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(uri.as_bytes());
    dst.extend_from_slice(b" RTSP/1.0\r\n");
    write_headers_and_body(&request.headers, &request.body, dst);
    Ok(())
}

/// Writes a response (as RTSP/1.0). `Content-Length` is derived from the body.
pub fn encode_response(response: &Response, dst: &mut BytesMut) -> Result<(), EncodeError> {
    let reason = response.reason.as_str();
    if reason.contains(['\r', '\n', '\0']) {
        return Err(EncodeError::BadReasonPhrase {
            reason: clip(reason),
        });
    }
    let code = u16::from(response.status);
    if !(100..1000).contains(&code) {
        return Err(EncodeError::BadStatusCode { code });
    }
    check_headers(&response.headers)?;
    dst.reserve(64 + reason.len() + response.body.len());
    dst.extend_from_slice(b"RTSP/1.0 ");
    dst.extend_from_slice(code.to_string().as_bytes());
    dst.extend_from_slice(b" ");
    dst.extend_from_slice(reason.as_bytes());
    dst.extend_from_slice(b"\r\n");
    write_headers_and_body(&response.headers, &response.body, dst);
    Ok(())
}

/// The 4-byte `$` header of an interleaved frame, for vectored writes that send a shared
/// payload without copying it.
pub fn interleaved_header(channel: u8, length: usize) -> Result<[u8; 4], EncodeError> {
    let length16 = u16::try_from(length).map_err(|_| EncodeError::PayloadTooLarge { length })?;
    let [hi, lo] = length16.to_be_bytes();
    Ok([b'$', channel, hi, lo])
}

/// Writes an interleaved frame.
pub fn encode_interleaved(
    channel: u8,
    payload: &[u8],
    dst: &mut BytesMut,
) -> Result<(), EncodeError> {
    let header = interleaved_header(channel, payload.len())?;
    dst.reserve(4 + payload.len());
    dst.extend_from_slice(&header);
    dst.extend_from_slice(payload);
    Ok(())
}

fn check_headers(headers: &Headers) -> Result<(), EncodeError> {
    headers.iter().try_for_each(|(name, value)| {
        if !is_token(name.as_str()) {
            return Err(EncodeError::BadHeaderName {
                name: clip(name.as_str()),
            });
        }
        if value.contains(['\r', '\n', '\0']) {
            return Err(EncodeError::BadHeaderValue {
                name: clip(name.as_str()),
            });
        }
        Ok(())
    })
}

fn write_headers_and_body(headers: &Headers, body: &[u8], dst: &mut BytesMut) {
    for (name, value) in headers.iter() {
        if *name == names::CONTENT_LENGTH {
            continue;
        }
        dst.extend_from_slice(name.as_str().as_bytes());
        dst.extend_from_slice(b": ");
        dst.extend_from_slice(value.as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    if !body.is_empty() {
        dst.extend_from_slice(b"Content-Length: ");
        dst.extend_from_slice(body.len().to_string().as_bytes());
        dst.extend_from_slice(b"\r\n");
    }
    dst.extend_from_slice(b"\r\n");
    dst.extend_from_slice(body);
}

#[cfg(test)]
#[path = "codec_tests.rs"]
mod tests;
