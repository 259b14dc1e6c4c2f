//! Arbitrary bytes as a compound RTCP packet: parsing never panics, and whatever parses
//! writes back to bytes that parse to the same packets.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use streamplane_media_core::rtcp::RtcpPacket;

fuzz_target!(|data: &[u8]| {
    let Ok(packets) = RtcpPacket::parse_compound(&Bytes::copy_from_slice(data)) else {
        return;
    };
    let wire = RtcpPacket::write_compound(&packets).expect("parsed packets are writable");
    assert_eq!(wire.len() % 4, 0);
    let again = RtcpPacket::parse_compound(&wire).expect("written packets parse");
    assert_eq!(again, packets);
});
