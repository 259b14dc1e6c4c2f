//! Arbitrary bytes as an H.265 RTP payload and as fmtp text: nothing panics, aggregated NAL
//! units re-aggregate to the same units, and parameter sets survive an sprop round trip.
#![no_main]

use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use streamplane_media_core::h265::{
    H265ParameterSets, H265Payload, is_keyframe_start, parse_payload, write_ap, write_fu,
};

fuzz_target!(|data: &[u8]| {
    let payload = Bytes::copy_from_slice(data);
    let _ = is_keyframe_start(data);
    let mut sets = H265ParameterSets::default();
    sets.update_from_payload(&payload);

    match parse_payload(data) {
        Ok(H265Payload::Ap(ap)) => {
            let units: Vec<&[u8]> = ap.nal_units().collect();
            let mut buf = BytesMut::new();
            write_ap(&units, &mut buf).expect("parsed units fit an AP");
            let Ok(H265Payload::Ap(again)) = parse_payload(&buf) else {
                panic!("a written AP parses");
            };
            assert!(again.nal_units().eq(units.iter().copied()));
        }
        Ok(H265Payload::Fu(fu)) => {
            let mut buf = BytesMut::new();
            write_fu(fu.nal_header, fu.fragment, fu.start, fu.end, &mut buf);
            assert_eq!(parse_payload(&buf), Ok(H265Payload::Fu(fu)));
        }
        Ok(H265Payload::Single(nal)) => assert_eq!(nal, data),
        Err(_) => {}
    }

    if let Some((vps, sps, pps)) = sets.to_sprop() {
        let fmtp = format!("sprop-vps={vps};sprop-sps={sps};sprop-pps={pps}");
        assert_eq!(H265ParameterSets::from_fmtp(&fmtp), Ok(sets));
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = H265ParameterSets::from_fmtp(text);
    }
});
