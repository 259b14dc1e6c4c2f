//! RTSP 1.0 on the wire: framing of a TCP connection ([`codec`]), the headers a server
//! negotiates with ([`headers`]) and request URLs ([`url`]). Session state machines build on
//! these; nothing here keeps per-session state beyond a connection's decode buffer position.

pub mod codec;
pub mod headers;
pub mod message;
pub mod server;
pub mod url;

pub use codec::{
    DecodeError, Decoder, EncodeError, Item, Limits, encode_interleaved, encode_request,
    encode_response, interleaved_header,
};
pub use headers::{
    Delivery, HeaderError, LowerTransport, Profile, RANGE_LIVE, RtpInfoEntry, SessionHeader,
    TransportMode, TransportSpec, choose_transport, cseq, format_rtp_info, parse_rtp_info,
    parse_transports, respond_to,
};
pub use message::{
    HeaderName, Headers, Method, Request, Response, StatusCode, Url, names, reason_phrase,
};
pub use url::{RtspUrl, Scheme, SetupTarget, Target, UrlError};
