//! Properties of SDP handling: what we generate parses back to the same tracks, and no body
//! makes the parser panic.

use bytes::Bytes;
use proptest::prelude::*;
use streamplane_media_core::sdp::{
    Codec, H264Params, H265Params, MediaKind, Mpeg4AudioParams, SessionDescription, Track,
};

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Parameter sets starting with the NAL header byte `first`.
fn nal(first: u8) -> impl Strategy<Value = Option<Bytes>> {
    prop::option::of(prop::collection::vec(any::<u8>(), 0..40)).prop_map(move |rest| {
        rest.map(|rest| {
            let mut nal = vec![first];
            nal.extend(rest);
            Bytes::from(nal)
        })
    })
}

fn known_name(name: &str) -> bool {
    ["H264", "H265", "MPEG4-GENERIC", "OPUS", "PCMU", "PCMA"]
        .iter()
        .any(|known| known.eq_ignore_ascii_case(name))
}

fn codec_track() -> impl Strategy<Value = (MediaKind, Codec)> {
    let h264 = (nal(0x67), nal(0x68), 0u8..=2, any::<Option<[u8; 3]>>()).prop_map(
        |(sps, pps, packetization_mode, profile_level_id)| {
            (
                MediaKind::Video,
                Codec::H264(H264Params {
                    sps,
                    pps,
                    packetization_mode,
                    profile_level_id,
                }),
            )
        },
    );
    let h265 = (nal(0x40), nal(0x42), nal(0x44))
        .prop_map(|(vps, sps, pps)| (MediaKind::Video, Codec::H265(H265Params { vps, sps, pps })));
    let aac = (
        prop::collection::vec(any::<u8>(), 1..8),
        prop::sample::select(vec![8_000u32, 16_000, 44_100, 48_000, 96_000]),
        1u8..=8,
        (0u8..=32, 0u8..=32, 0u8..=32),
    )
        .prop_map(|(config, sample_rate, channels, (size, index, delta))| {
            (
                MediaKind::Audio,
                Codec::Mpeg4Audio(Mpeg4AudioParams {
                    config: Bytes::from(config),
                    sample_rate,
                    channels,
                    size_length: size,
                    index_length: index,
                    index_delta_length: delta,
                }),
            )
        });
    let simple_audio = prop_oneof![
        (1u8..=2).prop_map(|channels| Codec::Opus { channels }),
        (1u8..=2).prop_map(|channels| Codec::Pcmu { channels }),
        (1u8..=2).prop_map(|channels| Codec::Pcma { channels }),
    ]
    .prop_map(|codec| (MediaKind::Audio, codec));
    let other = (
        prop_oneof![
            Just(MediaKind::Video),
            Just(MediaKind::Audio),
            Just(MediaKind::Application),
            "[a-z]{1,8}".prop_filter_map("known kind", |k| {
                (!["video", "audio", "application"].contains(&k.as_str()))
                    .then_some(MediaKind::Other(k))
            }),
        ],
        "[A-Za-z][A-Za-z0-9.-]{0,20}".prop_filter("known codec", |n| !known_name(n)),
        1u32..200_000,
        prop::option::of(1u16..=16),
        prop::option::of(
            "[a-z0-9-]{1,10}=[A-Za-z0-9+/=,.-]{1,20}(;[a-z0-9-]{1,10}=[A-Za-z0-9]{1,8}){0,3}",
        ),
    )
        .prop_map(|(kind, encoding_name, clock_rate, channels, fmtp)| {
            (
                kind,
                Codec::Other {
                    encoding_name,
                    clock_rate,
                    channels,
                    fmtp,
                },
            )
        });
    prop_oneof![h264, h265, aac, simple_audio, other]
}

fn tracks() -> impl Strategy<Value = Vec<Track>> {
    prop::collection::vec((codec_track(), 0u8..128), 1..5).prop_map(|tracks| {
        tracks
            .into_iter()
            .map(|((kind, codec), pt)| Track::from_codec(kind, pt, codec))
            .collect()
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn generated_sdp_parses_to_the_same_tracks(tracks in tracks()) {
        let text = SessionDescription::generate(&tracks);
        let parsed = SessionDescription::parse(text.as_bytes());
        prop_assert!(parsed.is_ok(), "{:?} for\n{}", parsed, text);
        let parsed = parsed.expect("checked");
        prop_assert_eq!(parsed.tracks.len(), tracks.len());
        for (i, (sent, got)) in tracks.iter().zip(&parsed.tracks).enumerate() {
            prop_assert_eq!(&got.media, &sent.media);
            prop_assert_eq!(got.payload_type, sent.payload_type);
            prop_assert_eq!(got.clock_rate, sent.clock_rate);
            prop_assert_eq!(&got.codec, &sent.codec);
            prop_assert_eq!((&got.rtpmap, &got.fmtp), (&sent.rtpmap, &sent.fmtp));
            prop_assert_eq!(got.control.clone(), Some(format!("trackID={i}")));
        }
        // Generating again from what was parsed is a fixed point: nothing drifts when a
        // stream is relayed through several servers.
        prop_assert_eq!(SessionDescription::generate(&parsed.tracks), text);
    }

    #[test]
    fn arbitrary_bodies_never_panic(body in prop::collection::vec(any::<u8>(), 0..400)) {
        let _ = SessionDescription::parse(&body);
    }

    #[test]
    fn corrupted_sdp_never_panics(
        tracks in tracks(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut body = SessionDescription::generate(&tracks).into_bytes();
        for (at, byte) in edits {
            let i = at.index(body.len());
            body[i] = byte;
        }
        if let Ok(parsed) = SessionDescription::parse(&body) {
            let again = SessionDescription::generate(&parsed.tracks);
            prop_assert!(SessionDescription::parse(again.as_bytes()).is_ok(), "{}", again);
        }
    }
}
