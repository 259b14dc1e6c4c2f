//! Request URLs to path names, track controls and queries, the way MediaMTX (gortsplib) reads
//! them, so that a client that works there works here.
//!
//! Clients do not agree on where a track control goes. GStreamer, VLC and ffmpeg without a
//! query append it to the path (`/cam/trackID=0`); ffmpeg with a query appends it to the query
//! (`/cam?token=x/trackID=0`), and uses a trailing `/` on the query or path of aggregate
//! requests (`/cam?token=x/`). Only SETUP names a track; for other methods a trailing slash is
//! dropped, except on ANNOUNCE, where the URL is taken as is.

use std::fmt;

use super::codec::{clip, parse_decimal};
use super::message::{Method, Url};
use crate::path::{InvalidPathName, PathName};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// The reason comes from the URL parser; the URL itself is left out since it may carry
    /// credentials or a token.
    #[error("request URL does not parse ({reason})")]
    Invalid { reason: String },
    #[error("URL scheme {scheme:?} is not rtsp or rtsps")]
    UnsupportedScheme { scheme: String },
    #[error("request URL has no host")]
    MissingHost,
    #[error("bad percent-encoding in path {path:?}")]
    BadPercentEncoding { path: String },
    #[error("SETUP control {control:?} is not trackID=N")]
    BadTrackId { control: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Rtsp,
    Rtsps,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Rtsp => "rtsp",
            Self::Rtsps => "rtsps",
        }
    }
}

/// An absolute `rtsp://` or `rtsps://` request URL, split but not yet interpreted. `Debug`
/// masks a `token=` value.
#[derive(Clone, PartialEq, Eq)]
pub struct RtspUrl {
    scheme: Scheme,
    /// `host[:port]` as the client wrote it, for URLs we send back.
    authority: String,
    /// Still percent-encoded; empty or starting with `/`.
    path: String,
    /// Without the `?`; `None` when absent.
    query: Option<String>,
}

/// What a request addresses: a path name (percent-decoded, without the leading `/`) and the
/// raw query, which may carry `token=` (masked by `Debug`).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Target {
    pub path: String,
    pub query: Option<String>,
}

impl fmt::Debug for RtspUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RtspUrl")
            .field("scheme", &self.scheme)
            .field("authority", &self.authority)
            .field("path", &self.path)
            .field("query", &self.query.as_deref().map(redact_query))
            .finish()
    }
}

impl fmt::Debug for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Target")
            .field("path", &self.path)
            .field("query", &self.query.as_deref().map(redact_query))
            .finish()
    }
}

/// Masks the value of `token=` parameters for logs. A JWT has no `/`, so an ffmpeg track
/// control appended after it (`token=x/trackID=0`) stays visible.
pub(crate) fn redact_query(query: &str) -> String {
    query
        .split('&')
        .map(|param| match param.strip_prefix("token=") {
            Some(value) => match value.find('/') {
                Some(slash) => format!("token=***{}", &value[slash..]),
                None => "token=***".to_owned(),
            },
            None => param.to_owned(),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// What a SETUP addresses: the target and the track control, e.g. `trackID=0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SetupTarget {
    pub target: Target,
    /// Raw (not percent-decoded), to compare with SDP `a=control` values.
    pub control: Option<String>,
}

impl RtspUrl {
    pub fn parse(text: &str) -> Result<Self, UrlError> {
        let url = Url::parse(text).map_err(|e| UrlError::Invalid {
            reason: e.to_string(),
        })?;
        Self::from_url(&url)
    }

    /// From a decoded request's URI.
    pub fn from_url(url: &Url) -> Result<Self, UrlError> {
        let scheme = match url.scheme() {
            "rtsp" => Scheme::Rtsp,
            "rtsps" => Scheme::Rtsps,
            other => {
                return Err(UrlError::UnsupportedScheme {
                    scheme: clip(other),
                });
            }
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or(UrlError::MissingHost)?;
        let authority = match url.port() {
            Some(port) => format!("{host}:{port}"),
            None => host.to_owned(),
        };
        Ok(Self {
            scheme,
            authority,
            path: url.path().to_owned(),
            query: url.query().map(str::to_owned),
        })
    }

    pub fn scheme(&self) -> Scheme {
        self.scheme
    }

    pub fn authority(&self) -> &str {
        &self.authority
    }

    /// The raw path, e.g. `/mystream/trackID=0`.
    pub fn raw_path(&self) -> &str {
        &self.path
    }

    pub fn raw_query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// Path and query for every method but SETUP (gortsplib `getPathAndQuery`).
    pub fn target(&self, method: &Method) -> Result<Target, UrlError> {
        let mut path = self.path.as_str();
        let mut query = self.query.as_deref();
        if *method != Method::Announce {
            if let Some(q) = query.and_then(|q| q.strip_suffix('/')) {
                query = Some(q);
            } else if path.len() > 1
                && let Some(p) = path.strip_suffix('/')
            {
                path = p;
            }
        }
        make_target(path, query)
    }

    /// Path, query and track control of a SETUP: the control is whatever follows the last
    /// `/` of the query (ffmpeg) or else of the path (everyone else). A trailing `/` and a
    /// single-segment path mean no control.
    pub fn setup_target(&self) -> Result<SetupTarget, UrlError> {
        let path = self.path.as_str();
        if let Some((query, control)) = self.query.as_deref().and_then(|q| q.rsplit_once('/')) {
            return Ok(SetupTarget {
                target: make_target(path, Some(query))?,
                control: non_empty(control),
            });
        }
        let query = self.query.as_deref();
        if path.len() > 1
            && let Some(p) = path.strip_suffix('/')
        {
            return Ok(SetupTarget {
                target: make_target(p, query)?,
                control: None,
            });
        }
        match path.rsplit_once('/') {
            Some((base, control)) if !base.is_empty() => Ok(SetupTarget {
                target: make_target(base, query)?,
                control: non_empty(control),
            }),
            _ => Ok(SetupTarget {
                target: make_target(path, query)?,
                control: None,
            }),
        }
    }

    /// For a SETUP while publishing: which announced track this URL names, given the ANNOUNCE
    /// target and the tracks' `a=control` values (gortsplib `findMediaByURL`). Absolute
    /// controls match on path and query only, since clients behind NAT rewrite the host.
    pub fn record_track<'a>(
        &self,
        announced: &Target,
        controls: impl IntoIterator<Item = Option<&'a str>>,
    ) -> Option<usize> {
        let setup = self.decoded_path_and_query()?;
        let base = format!("/{}", announced.path);
        controls.into_iter().position(|control| {
            let control = control.map(str::trim).unwrap_or_default();
            if control.is_empty() || control == "*" {
                return setup == with_query(base.clone(), announced.query.as_deref());
            }
            if has_rtsp_scheme(control) {
                return RtspUrl::parse(control)
                    .ok()
                    .and_then(|url| url.decoded_path_and_query())
                    .is_some_and(|abs| abs == setup);
            }
            let control = control.trim_start_matches('/');
            // ffmpeg appends the control to the query when there is one.
            let ffmpeg = match announced.query.as_deref() {
                Some(q) => with_query(base.clone(), Some(&format!("{q}/{control}"))),
                None => format!("{base}/{control}"),
            };
            let others = with_query(format!("{base}/{control}"), announced.query.as_deref());
            setup == ffmpeg || setup == others
        })
    }

    /// An absolute URL for `path` (a path name) on the host the client used, for
    /// `Content-Base` and `RTP-Info`.
    pub fn url_for(&self, path: &str) -> String {
        format!("{}://{}/{}", self.scheme.as_str(), self.authority, path)
    }

    fn decoded_path_and_query(&self) -> Option<String> {
        let path = percent_decode(&self.path)?;
        Some(with_query(path, self.query.as_deref()))
    }
}

impl SetupTarget {
    /// The track index of a SETUP for reading: controls are the `trackID=N` of our DESCRIBE;
    /// no control means the first track.
    pub fn track_id(&self) -> Result<usize, UrlError> {
        let Some(control) = &self.control else {
            return Ok(0);
        };
        control
            .strip_prefix("trackID=")
            .and_then(parse_decimal)
            .ok_or_else(|| UrlError::BadTrackId {
                control: clip(control),
            })
    }
}

impl Target {
    pub fn path_name(&self) -> Result<PathName, InvalidPathName> {
        self.path.parse()
    }

    /// A query parameter, decoded like Go's `url.ParseQuery` (`+` is a space), which is what
    /// MediaMTX users' URLs were written for.
    pub fn query_param(&self, name: &str) -> Option<String> {
        self.query.as_deref()?.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key = form_decode(key)?;
            (key == name).then(|| form_decode(value)).flatten()
        })
    }

    /// The `token=` query parameter (a JWT issued by the control plane).
    pub fn token(&self) -> Option<String> {
        self.query_param("token")
    }
}

fn make_target(path: &str, query: Option<&str>) -> Result<Target, UrlError> {
    let decoded =
        percent_decode(path).ok_or_else(|| UrlError::BadPercentEncoding { path: clip(path) })?;
    let path = decoded.strip_prefix('/').unwrap_or(&decoded).to_owned();
    Ok(Target {
        path,
        query: query.and_then(non_empty),
    })
}

fn with_query(mut path: String, query: Option<&str>) -> String {
    if let Some(query) = query.filter(|q| !q.is_empty()) {
        path.push('?');
        path.push_str(query);
    }
    path
}

fn non_empty(text: &str) -> Option<String> {
    (!text.is_empty()).then(|| text.to_owned())
}

fn has_rtsp_scheme(text: &str) -> bool {
    let lower = text.get(..8).unwrap_or(text).to_ascii_lowercase();
    lower.starts_with("rtsp://") || lower.starts_with("rtsps://")
}

/// `%XX` decoding; `None` on a malformed escape or a result that is not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    if !text.contains('%') {
        return Some(text.to_owned());
    }
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            if !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn form_decode(text: &str) -> Option<String> {
    percent_decode(&text.replace('+', " "))
}

#[cfg(test)]
#[path = "url_tests.rs"]
mod tests;
