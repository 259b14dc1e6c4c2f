//! RTP over UDP unicast end to end: the real worker binary, ffmpeg publishing over UDP and TCP,
//! ffmpeg and GStreamer reading over UDP and TCP (packets are shared, so every mix works), and
//! a scripted client for bad RTP and TEARDOWN.
//!
//! Needs `cargo build -p streamplane-worker` first, and ffmpeg and gst-launch-1.0.

#![allow(clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::raw::{session_id, udp_pair};
use common::{
    DEADLINE, RTCP, RTP, RTSP, assert_decoded, assert_gst_decoded, ffmpeg_reader, gst_reader,
    publish, read_response, start_worker, url,
};
use streamplane_testkit::{WorkerBuilder, eventually};
use tokio::io::AsyncWriteExt as _;
use tokio::net::TcpStream;

#[tokio::test]
async fn udp_publisher_is_read_over_udp_by_ffmpeg_and_gstreamer_and_over_tcp() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "cam", "udp").await;
    let url = url(&worker, "cam");

    let udp_reader = ffmpeg_reader(&url, "ffmpeg-udp", "udp");
    let gst = gst_reader(&url, "udp");
    let tcp_reader = ffmpeg_reader(&url, "ffmpeg-tcp", "tcp");
    assert_decoded(&udp_reader).await;
    assert_gst_decoded(&gst).await;
    assert_decoded(&tcp_reader).await;
}

#[tokio::test]
async fn tcp_publisher_is_read_over_udp() {
    let worker = start_worker().await;
    let _publisher = publish(&worker, "cam", "tcp").await;
    let url = url(&worker, "cam");

    let readers: Vec<_> = (0..3)
        .map(|i| ffmpeg_reader(&url, &format!("ffmpeg-udp-{i}"), "udp"))
        .collect();
    let gst = gst_reader(&url, "udp");
    for reader in &readers {
        assert_decoded(reader).await;
    }
    assert_gst_decoded(&gst).await;
}

/// One request on `conn`; returns the response head and body.
async fn request(conn: &mut TcpStream, text: String) -> (String, Vec<u8>) {
    conn.write_all(text.as_bytes()).await.unwrap();
    read_response(conn).await
}

const SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=x\r\nt=0 0\r\n\
m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\na=control:streamid=0\r\n";

#[tokio::test]
async fn bad_rtp_over_udp_is_counted_and_teardown_stops_a_udp_reader() {
    let worker = start_worker().await;
    let rtsp = worker.address(RTSP);
    let server_rtp = worker.address(RTP);

    // A scripted publisher over UDP that sends garbage.
    let base = format!("rtsp://{rtsp}/raw");
    let mut conn = TcpStream::connect(rtsp).await.unwrap();
    let (head, _) = request(
        &mut conn,
        format!(
            "ANNOUNCE {base} RTSP/1.0\r\nCSeq: 1\r\nContent-Type: application/sdp\r\n\
             Content-Length: {}\r\n\r\n{SDP}",
            SDP.len()
        ),
    )
    .await;
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    let session = session_id(&head);
    let (publisher_rtp, _publisher_rtcp, ports) = udp_pair().await;
    let (head, _) = request(
        &mut conn,
        format!(
            "SETUP {base}/streamid=0 RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\
             Transport: RTP/AVP/UDP;unicast;client_port={}-{};mode=record\r\n\r\n",
            ports.0, ports.1
        ),
    )
    .await;
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    let server_port = format!(
        "server_port={}-{}",
        server_rtp.port(),
        worker.address(RTCP).port()
    );
    assert!(head.contains(&server_port), "{head}");
    let (head, _) = request(
        &mut conn,
        format!("RECORD {base} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    // Version 0, and shorter than a header.
    publisher_rtp.send_to(&[0u8; 12], server_rtp).await.unwrap();
    publisher_rtp
        .send_to(&[0x80, 96], server_rtp)
        .await
        .unwrap();
    let metrics = worker.metrics_url();
    eventually(DEADLINE, "the invalid rtp counter", || async {
        let text = async { reqwest::get(&metrics).await?.text().await }
            .await
            .map_err(|e| e.to_string())?;
        if text.contains("streamplane_rtp_invalid_packets_total 2") {
            Ok(())
        } else {
            Err(format!("metrics:\n{text}"))
        }
    })
    .await;

    // A scripted reader over UDP of a real stream: packets arrive, and stop after TEARDOWN.
    let _publisher = publish(&worker, "cam", "tcp").await;
    let base = format!("rtsp://{rtsp}/cam");
    let mut conn = TcpStream::connect(rtsp).await.unwrap();
    let (reader_rtp, _reader_rtcp, ports) = udp_pair().await;
    let (head, _) = request(
        &mut conn,
        format!(
            "SETUP {base}/trackID=0 RTSP/1.0\r\nCSeq: 1\r\n\
             Transport: RTP/AVP;unicast;client_port={}-{};destination=192.0.2.1\r\n\r\n",
            ports.0, ports.1
        ),
    )
    .await;
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    assert!(head.contains(&server_port), "{head}");
    // Known once the publisher's first packet arrived; then it is the relayed SSRC.
    let ssrc = head
        .split(";ssrc=")
        .nth(1)
        .map(|rest| u32::from_str_radix(&rest[..8], 16).unwrap());
    assert!(!head.contains("destination"), "{head}");
    let session = session_id(&head);
    let (head, _) = request(
        &mut conn,
        format!("PLAY {base} RTSP/1.0\r\nCSeq: 2\r\nSession: {session}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    let mut buf = vec![0u8; 2048];
    let (n, from) = tokio::time::timeout(DEADLINE, reader_rtp.recv_from(&mut buf))
        .await
        .expect("rtp over udp")
        .unwrap();
    assert_eq!(from, server_rtp, "rtp comes from the server's rtp port");
    assert!(n >= 12 && buf[0] >> 6 == 2, "an rtp packet");
    if let Some(ssrc) = ssrc {
        assert_eq!(u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]), ssrc);
    }

    let mark = worker.process().mark();
    let (head, _) = request(
        &mut conn,
        format!("TEARDOWN {base} RTSP/1.0\r\nCSeq: 3\r\nSession: {session}\r\n\r\n"),
    )
    .await;
    assert!(head.starts_with("RTSP/1.0 200"), "{head}");
    worker
        .process()
        .wait_for_line_since(mark, "udp reader left", DEADLINE)
        .await;
    // Whatever was in flight drains; then nothing more comes for a while.
    eventually(DEADLINE, "rtp to stop after TEARDOWN", || async {
        match tokio::time::timeout(
            Duration::from_millis(500),
            reader_rtp.recv_from(&mut [0; 2048]),
        )
        .await
        {
            Err(_) => Ok(()),
            Ok(_) => Err("still receiving rtp".to_owned()),
        }
    })
    .await;
}

#[tokio::test]
async fn a_busy_rtp_port_names_its_key() {
    let (rtp, rtcp, _) = udp_pair().await;
    let worker = WorkerBuilder::standalone()
        .address(RTP, rtp.local_addr().unwrap())
        .address(RTCP, rtcp.local_addr().unwrap())
        .spawn()
        .await;
    let status = worker.process().wait_exit(DEADLINE).await;
    let output = worker.process().output();
    assert!(!status.success(), "{output}");
    assert!(
        output.contains("rtpAddress") && output.contains("STREAMPLANE_RTP_ADDRESS"),
        "{output}"
    );
}
