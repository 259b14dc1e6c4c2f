//! Properties of the RTSP wire layer: what we write reads back identically, however the bytes
//! are split across reads, and no input makes the decoder panic or disagree with itself.

use bytes::{Bytes, BytesMut};
use proptest::prelude::*;
use streamplane_media_core::rtsp::headers::{Delivery, LowerTransport, Profile, TransportMode};
use streamplane_media_core::rtsp::{
    DecodeError, Decoder, HeaderName, Headers, Item, Limits, Method, Request, Response,
    RtpInfoEntry, RtspUrl, SessionHeader, StatusCode, TransportSpec, Url, choose_transport,
    encode_interleaved, encode_request, encode_response, format_rtp_info, names, parse_rtp_info,
    parse_transports,
};

/// Failures are reported with their minimal input; nothing is written next to the sources.
fn config() -> ProptestConfig {
    ProptestConfig {
        cases: 512,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

/// Names repeat and share prefixes on purpose (`C`, `CSeq-X`, `Accept`...). Values have no
/// surrounding blanks, since decoding trims them.
fn headers() -> impl Strategy<Value = Headers> {
    let name = prop_oneof![
        "[A-Za-z][A-Za-z0-9-]{0,15}",
        "C|Accept|Accept-Ranges|Session|CSeq-X"
    ];
    let value = "([!-~]([ -~\u{e9}\u{4e2d}]{0,30}[!-~])?)?";
    prop::collection::vec((name, value), 0..8).prop_map(|lines| {
        let mut headers = Headers::new();
        for (name, value) in lines {
            let name = HeaderName::try_from(name).expect("token");
            if name != names::CONTENT_LENGTH && name != names::CSEQ {
                headers.append(name, value);
            }
        }
        headers
    })
}

fn url() -> impl Strategy<Value = Option<Url>> {
    let path = prop::collection::vec("[A-Za-z0-9_.=-]{1,12}", 0..4);
    let query = prop::option::of("[A-Za-z0-9=&/_.-]{0,20}");
    let scheme = prop_oneof!["rtsp", "rtsps"];
    prop::option::of((scheme, "[a-z0-9.]{1,15}", 1u16.., path, query)).prop_map(|parts| {
        let (scheme, host, port, path, query) = parts?;
        let mut text = format!("{scheme}://{host}:{port}/{}", path.join("/"));
        if let Some(query) = query {
            text.push('?');
            text.push_str(&query);
        }
        Url::parse(&text).ok()
    })
}

fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        prop::sample::select(vec![
            "OPTIONS",
            "DESCRIBE",
            "ANNOUNCE",
            "SETUP",
            "PLAY",
            "PAUSE",
            "RECORD",
            "TEARDOWN",
            "GET_PARAMETER",
            "SET_PARAMETER",
            "REDIRECT",
        ])
        .prop_map(String::from),
        "[A-Za-z_]{1,12}",
    ]
    .prop_map(|m| Method::from(m.as_str()))
}

fn body() -> impl Strategy<Value = Bytes> {
    prop::collection::vec(any::<u8>(), 0..200).prop_map(Bytes::from)
}

fn request() -> impl Strategy<Value = Request> {
    (method(), url(), any::<u32>(), headers(), body()).prop_map(
        |(method, uri, cseq, headers, body)| {
            let mut request = Request {
                method,
                uri,
                headers,
                body,
            };
            request.headers.append(names::CSEQ, cseq.to_string());
            request
        },
    )
}

fn response() -> impl Strategy<Value = Response> {
    let reason = "([!-~]([ -~]{0,20}[!-~])?)?";
    (
        100u16..1000,
        reason,
        prop::option::of(any::<u32>()),
        headers(),
        body(),
    )
        .prop_map(|(status, reason, cseq, mut headers, body)| {
            if let Some(cseq) = cseq {
                headers.append(names::CSEQ, cseq.to_string());
            }
            Response {
                status: StatusCode::from(status),
                reason,
                headers,
                body,
            }
        })
}

fn item() -> impl Strategy<Value = Item> {
    prop_oneof![
        request().prop_map(Item::Request),
        response().prop_map(Item::Response),
        (any::<u8>(), body()).prop_map(|(channel, payload)| Item::Interleaved { channel, payload }),
    ]
}

fn encode(items: &[Item], blank_lines: bool) -> BytesMut {
    let mut buf = BytesMut::new();
    for item in items {
        if blank_lines {
            buf.extend_from_slice(b"\r\n");
        }
        match item {
            Item::Request(r) => encode_request(r, &mut buf).expect("encodable"),
            Item::Response(r) => encode_response(r, &mut buf).expect("encodable"),
            Item::Interleaved { channel, payload } => {
                encode_interleaved(*channel, payload, &mut buf).expect("small")
            }
        }
    }
    buf
}

type Outcome = (Vec<Item>, Result<usize, DecodeError>);

/// Feeds `input` in chunks ending at `cuts`, draining the decoder after each chunk. The `Ok`
/// value is the number of bytes left undecoded.
fn feed(input: &[u8], cuts: &[usize]) -> Outcome {
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    let mut start = 0;
    for &end in cuts.iter().chain(std::iter::once(&input.len())) {
        let end = end.clamp(start, input.len());
        buf.extend_from_slice(&input[start..end]);
        start = end;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(item)) => items.push(item),
                Ok(None) => break,
                Err(e) => return (items, Err(e)),
            }
        }
    }
    (items, Ok(buf.len()))
}

fn whole(input: &[u8]) -> Outcome {
    feed(input, &[])
}

/// Whatever decodes, re-encodes to bytes that decode to the same item.
fn assert_items_reencode(items: &[Item]) -> Result<(), TestCaseError> {
    for item in items {
        let wire = encode(std::slice::from_ref(item), false);
        prop_assert_eq!(whole(&wire), (vec![item.clone()], Ok(0)));
    }
    Ok(())
}

fn byte_by_byte(input: &[u8]) -> Outcome {
    let cuts: Vec<usize> = (1..input.len()).collect();
    feed(input, &cuts)
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(0usize..3000, 0..12).prop_map(|mut c| {
        c.sort_unstable();
        c
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn encoded_items_decode_to_themselves(items in prop::collection::vec(item(), 1..6), blank in any::<bool>()) {
        let wire = encode(&items, blank);
        prop_assert_eq!(whole(&wire), (items, Ok(0)));
    }

    #[test]
    fn any_split_gives_the_same_items(items in prop::collection::vec(item(), 1..5), cuts in cuts()) {
        let wire = encode(&items, false);
        let expected = (items, Ok(0));
        prop_assert_eq!(&feed(&wire, &cuts), &expected);
        prop_assert_eq!(&byte_by_byte(&wire), &expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_splits_agree(input in prop::collection::vec(any::<u8>(), 0..600), cuts in cuts()) {
        let reference = whole(&input);
        prop_assert_eq!(&byte_by_byte(&input), &reference);
        prop_assert_eq!(&feed(&input, &cuts), &reference);
        assert_items_reencode(&reference.0)?;
    }

    #[test]
    fn corrupted_messages_never_panic_and_splits_agree(
        items in prop::collection::vec(item(), 1..4),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
    ) {
        let mut wire = encode(&items, false).to_vec();
        for (at, byte) in edits {
            let i = at.index(wire.len());
            wire[i] = byte;
        }
        let reference = whole(&wire);
        prop_assert_eq!(&byte_by_byte(&wire), &reference);
        assert_items_reencode(&reference.0)?;
    }

    #[test]
    fn transport_specs_round_trip(spec in transport_spec()) {
        let text = spec.to_string();
        prop_assert_eq!(TransportSpec::parse(&text), Ok(spec.clone()));
        let offered = format!("RTP/AVPF;unicast,{text}");
        prop_assert_eq!(choose_transport(&offered, |_| true), Ok(spec));
    }

    #[test]
    fn session_and_rtp_info_round_trip(
        id in "[A-Za-z0-9$_.+-]{1,40}",
        timeout in prop::option::of(any::<u32>()),
        entries in prop::collection::vec(("rtsp://[a-z0-9.:]{1,20}/[A-Za-z0-9/=_-]{0,30}", any::<Option<u16>>(), any::<Option<u32>>()), 0..4),
    ) {
        let session = SessionHeader { id, timeout };
        prop_assert_eq!(SessionHeader::parse(&session.to_string()), Ok(session));
        let entries: Vec<RtpInfoEntry> = entries
            .into_iter()
            .map(|(url, seq, rtptime)| RtpInfoEntry { url, seq, rtptime })
            .collect();
        prop_assert_eq!(parse_rtp_info(&format_rtp_info(&entries)), Ok(entries));
    }

    #[test]
    fn header_and_url_parsers_never_panic(text in "\\PC{0,80}", bytes in "[ -~]{0,80}") {
        for input in [text.as_str(), bytes.as_str()] {
            let _ = parse_transports(input);
            let _ = SessionHeader::parse(input);
            let _ = parse_rtp_info(input);
            for candidate in [input.to_owned(), format!("rtsp://h/{input}")] {
                if let Ok(url) = RtspUrl::parse(&candidate) {
                    let _ = url.target(&Method::Play);
                    let _ = url.target(&Method::Announce);
                    if let Ok(setup) = url.setup_target() {
                        let _ = setup.track_id();
                        let _ = url.record_track(&setup.target, [setup.control.as_deref(), None, Some(input)]);
                        let _ = setup.target.token();
                    }
                }
            }
        }
    }
}

fn pair16() -> impl Strategy<Value = Option<(u16, u16)>> {
    prop::option::of((any::<u16>(), any::<u16>()))
}

fn transport_spec() -> impl Strategy<Value = TransportSpec> {
    let protocol = (
        prop::sample::select(vec![Profile::Avp, Profile::Savp]),
        prop::sample::select(vec![LowerTransport::Udp, LowerTransport::Tcp]),
        prop::option::of(prop::sample::select(vec![
            Delivery::Unicast,
            Delivery::Multicast,
        ])),
        prop::option::of(prop::sample::select(vec![
            TransportMode::Play,
            TransportMode::Record,
        ])),
    );
    let addresses = (
        prop::option::of("[a-z0-9.:]{1,20}"),
        prop::option::of("[a-z0-9.:]{1,20}"),
        any::<Option<u8>>(),
        any::<Option<u32>>(),
    );
    (
        protocol,
        addresses,
        prop::option::of(any::<(u8, u8)>()),
        pair16(),
        pair16(),
        pair16(),
    )
        .prop_map(
            |(
                (profile, lower, delivery, mode),
                (destination, source, ttl, ssrc),
                interleaved,
                client_port,
                server_port,
                port,
            )| {
                let mut spec = TransportSpec::new(profile, lower);
                spec.delivery = delivery;
                spec.mode = mode;
                spec.destination = destination;
                spec.source = source;
                spec.ttl = ttl;
                spec.ssrc = ssrc;
                spec.interleaved = interleaved;
                spec.client_port = client_port;
                spec.server_port = server_port;
                spec.port = port;
                spec
            },
        )
}
