//! Arbitrary bytes as an ANNOUNCE body. Parsing never panics, and whatever parses is
//! described again by the SDP we generate for DESCRIBE: same payload types, codecs and
//! rtpmap/fmtp lines, so a relayed stream means the same thing to readers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use streamplane_media_core::sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(parsed) = SessionDescription::parse(data) else {
        return;
    };
    let generated = SessionDescription::generate(&parsed.tracks);
    let again = SessionDescription::parse(generated.as_bytes()).expect("our SDP parses");
    assert_eq!(again.tracks.len(), parsed.tracks.len());
    for (a, b) in parsed.tracks.iter().zip(&again.tracks) {
        assert_eq!(a.media, b.media);
        assert_eq!(a.payload_type, b.payload_type);
        assert_eq!(a.clock_rate, b.clock_rate);
        assert_eq!(a.codec, b.codec);
        assert_eq!((&a.rtpmap, &a.fmtp), (&b.rtpmap, &b.fmtp));
    }
    assert_eq!(SessionDescription::generate(&again.tracks), generated);
});
