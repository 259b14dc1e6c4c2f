//! Arbitrary bytes as an H.264 RTP payload and as fmtp text: nothing panics, aggregated NAL
//! units re-aggregate to the same units, and parameter sets survive an sprop round trip.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use streamplane_media_core::h264::{
    H264ParameterSets, H264Payload, is_keyframe_start, parse_payload, write_fu_a, write_stap_a,
};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let _ = is_keyframe_start(data);
    let mut sets = H264ParameterSets::default();
    sets.update_from_payload(&payload);

    match parse_payload(data) {
        Ok(H264Payload::StapA(stap)) => {
            let units: Vec<&[u8]> = stap.nal_units().collect();
            let mut buf = BytesMut::new();
            write_stap_a(&units, &mut buf).expect("parsed units fit a STAP-A");
            let Ok(H264Payload::StapA(again)) = parse_payload(&buf) else {
                panic!("a written STAP-A parses");
            };
            assert!(again.nal_units().eq(units.iter().copied()));
        }
        Ok(H264Payload::FuA(fu)) => {
            let mut buf = BytesMut::new();
            write_fu_a(fu.nal_header, fu.fragment, fu.start, fu.end, &mut buf);
            assert_eq!(parse_payload(&buf), Ok(H264Payload::FuA(fu)));
        }
        Ok(H264Payload::Single(nal)) => assert_eq!(nal, data),
        Err(_) => {}
    }

    if let Some(sprop) = sets.to_sprop() {
        assert_eq!(H264ParameterSets::from_sprop(&sprop), Ok(sets));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = H264ParameterSets::from_fmtp(text);
    }
});
