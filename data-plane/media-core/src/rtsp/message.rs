//! RTSP messages as the codec reads and writes them.
//!
//! Methods, status codes, URLs and header-name constants come from `rtsp-types`; the header
//! collection is ours. `rtsp_types::Headers` is a `BTreeMap` whose key order treats a name and
//! any case-insensitive prefix of it as equal (0.1.3), so `Accept` and `Accept-Language`
//! merge into one entry and a `C:` line captures `CSeq`. It also joins repeated headers with
//! commas, which breaks a 401 offering both Digest and Basic `WWW-Authenticate` lines.

use std::fmt;

use bytes::Bytes;
pub use rtsp_types::{HeaderName, Method, StatusCode, Url};

use super::url::redact_query;

/// Header names a server uses, with the spelling clients expect.
pub mod names {
    pub use rtsp_types::headers::{
        ACCEPT, AUTHORIZATION, CONTENT_BASE, CONTENT_LENGTH, CONTENT_TYPE, CSEQ, PUBLIC, RANGE,
        REQUIRE, RTP_INFO, SERVER, SESSION, TRANSPORT, UNSUPPORTED, USER_AGENT, WWW_AUTHENTICATE,
    };
}

/// Headers in the order received or added; names compare case-insensitively and may repeat.
/// `Content-Length` is never stored: it is framing, derived from the body when writing.
///
/// `Debug` prints `***` for credentials, so messages can be logged whole.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(HeaderName, String)>);

impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secret = [
            rtsp_types::headers::AUTHORIZATION,
            rtsp_types::headers::PROXY_AUTHORIZATION,
        ];
        f.debug_list()
            .entries(self.0.iter().map(|(name, value)| {
                let value = if secret.contains(name) { "***" } else { value };
                (name.as_str(), value)
            }))
            .finish()
    }
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of `name`.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub fn get_all<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a str> + use<'a> {
        let name = name.clone();
        self.0
            .iter()
            .filter(move |(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }

    /// How many lines carry `name`.
    pub fn count(&self, name: &HeaderName) -> usize {
        self.0.iter().filter(|(n, _)| n == name).count()
    }

    /// Adds a line, keeping any existing ones.
    pub fn append(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push((name, value.into()));
    }

    /// Replaces every line of `name` with one.
    pub fn insert(&mut self, name: HeaderName, value: impl Into<String>) {
        self.remove(&name);
        self.append(name, value);
    }

    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|(n, _)| n != name);
    }

    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.0.iter().map(|(n, v)| (n, v.as_str()))
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// An RTSP request. `uri` is `None` for `*`. `Debug` leaves out URL credentials and the
/// value of a `token=` query parameter.
#[derive(Clone, PartialEq, Eq)]
pub struct Request {
    pub method: Method,
    pub uri: Option<Url>,
    pub headers: Headers,
    pub body: Bytes,
}

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("method", &self.method)
            .field("uri", &self.uri.as_ref().map(redacted_url))
            .field("headers", &self.headers)
            .field("body", &self.body)
            .finish()
    }
}

/// The URL without user info and with any token masked.
fn redacted_url(url: &Url) -> String {
    let mut out = format!("{}://{}", url.scheme(), url.host_str().unwrap_or_default());
    if let Some(port) = url.port() {
        out.push_str(&format!(":{port}"));
    }
    out.push_str(url.path());
    if let Some(query) = url.query() {
        out.push('?');
        out.push_str(&redact_query(query));
    }
    out
}

impl Request {
    pub fn new(method: Method, uri: Option<Url>) -> Self {
        Self {
            method,
            uri,
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name)
    }

    /// Appends a header, builder style.
    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    pub fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// An RTSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub status: StatusCode,
    pub reason: String,
    pub headers: Headers,
    pub body: Bytes,
}

impl Response {
    /// A response with the RFC 2326 reason phrase for `status`.
    pub fn new(status: StatusCode) -> Self {
        Self {
            status,
            reason: reason_phrase(status),
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    pub fn header(&self, name: &HeaderName) -> Option<&str> {
        self.headers.get(name)
    }

    /// Appends a header, builder style.
    pub fn with_header(mut self, name: HeaderName, value: impl Into<String>) -> Self {
        self.headers.append(name, value);
        self
    }

    pub fn with_body(mut self, body: Bytes) -> Self {
        self.body = body;
        self
    }
}

/// The standard phrase; rtsp-types spells 200 "Ok", and some clients compare the phrase.
pub fn reason_phrase(status: StatusCode) -> String {
    match status {
        StatusCode::Ok => "OK".to_owned(),
        StatusCode::Extension(_) => String::new(),
        other => other.to_string(),
    }
}
