//! Sans-IO media logic for Streamplane workers: path names and rules, access decisions, the RTSP
//! wire format, SDP, RTP/RTCP, H.264/H.265 awareness and the GOP cache.
//!
//! Architecture invariant: this crate does no I/O and never reads the clock. It owns no
//! sockets, files, tasks or timers; callers pass bytes, addresses and time in, and get
//! decisions, bytes and deadlines out. That keeps every state machine testable with plain
//! unit tests and virtual time.
#![forbid(unsafe_code)]

pub mod acl;
pub mod gop;
pub mod h264;
pub mod h265;
pub mod path;
pub mod rtcp;
pub mod rtp;
pub mod rtsp;
pub mod sdp;

pub use acl::{
    AclRule, Action, InvalidAction, InvalidNetwork, Principal, UserId, allowed, parse_network,
};
pub use path::{
    DuplicatePattern, InvalidPathName, InvalidPathPattern, PathMatch, PathName, PathPattern,
    PathRegex, PathRules,
};
