//! Arbitrary bytes as the stream of an RTSP connection. The decoder never panics, gives the
//! same items and error however the bytes are split across reads, and every item it returns
//! encodes to bytes that decode to the same item. Header values and URLs of decoded requests
//! go through the header and URL parsers a server applies to them.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use streamplane_media_core::rtsp::{
    DecodeError, Decoder, Item, Limits, RtspUrl, SessionHeader, encode_interleaved,
    encode_request, encode_response, names, parse_rtp_info, parse_transports,
};

type Outcome = (Vec<Item>, Result<usize, DecodeError>);

fn feed(input: &[u8], chunk: usize) -> Outcome {
    let mut decoder = Decoder::new(Limits::default());
    let mut buf = BytesMut::new();
    let mut items = Vec::new();
    for piece in input.chunks(chunk.max(1)) {
        buf.extend_from_slice(piece);
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

fn encode(item: &Item) -> BytesMut {
    let mut buf = BytesMut::new();
    match item {
        Item::Request(r) => encode_request(r, &mut buf).expect("decoded requests encode"),
        Item::Response(r) => encode_response(r, &mut buf).expect("decoded responses encode"),
        Item::Interleaved { channel, payload } => {
            encode_interleaved(*channel, payload, &mut buf).expect("decoded frames fit")
        }
    }
    buf
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the read size, the rest is the stream.
    let Some((&chunk, input)) = data.split_first() else {
        return;
    };
    let whole = feed(input, input.len());
    assert_eq!(feed(input, usize::from(chunk)), whole);
    assert_eq!(feed(input, 1), whole);

    for item in &whole.0 {
        let (again, rest) = feed(&encode(item), usize::MAX);
        assert_eq!(rest, Ok(0));
        assert_eq!(again.as_slice(), std::slice::from_ref(item));

        if let Item::Request(request) = item {
            for value in request.headers.get_all(&names::TRANSPORT) {
                let _ = parse_transports(value);
            }
            if let Some(value) = request.header(&names::SESSION) {
                let _ = SessionHeader::parse(value);
            }
            if let Some(value) = request.header(&names::RTP_INFO) {
                let _ = parse_rtp_info(value);
            }
            if let Some(url) = request.uri.as_ref().and_then(|u| RtspUrl::from_url(u).ok()) {
                let _ = url.target(&request.method);
                if let Ok(setup) = url.setup_target() {
                    let _ = setup.track_id();
                    let _ = setup.target.token();
                    let _ = url.record_track(&setup.target, [setup.control.as_deref(), None]);
                }
            }
        }
    }
});
