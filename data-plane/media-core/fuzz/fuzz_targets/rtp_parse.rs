//! Arbitrary bytes as an RTP packet: parsing never panics, and whatever parses is consistent
//! with itself, rebuilds to the same header and payload, and survives a header rewrite.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamplane_media_core::rtp::{RtpPacket, Ssrc};

fuzz_target!(|data: &[u8]| {
    let Ok(packet) = RtpPacket::parse(Bytes::copy_from_slice(data)) else {
        return;
    };
    assert_eq!(packet.len(), data.len());
    assert!(packet.payload_len() + usize::from(packet.padding()) <= data.len() - 12);
    assert_eq!(packet.payload_bytes(), packet.payload());

    let header = packet.header();
    let rebuilt = RtpPacket::new(&header, packet.payload()).expect("a parsed header is writable");
    let reparsed = RtpPacket::parse(rebuilt.to_bytes()).expect("a written packet parses");
    assert_eq!(reparsed.header(), header);
    assert_eq!(reparsed.payload(), packet.payload());

    let rewritten = packet.rewritten(!packet.sequence_number(), !packet.timestamp(), Ssrc(7));
    let reparsed = RtpPacket::parse(rewritten.to_bytes()).expect("a rewrite stays valid");
    assert_eq!(reparsed, rewritten);
    assert_eq!(reparsed.payload(), packet.payload());
});
