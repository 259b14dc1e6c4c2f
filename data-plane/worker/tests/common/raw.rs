//! A raw RTSP client for tests that need exact requests: requests as text, responses and `$`
//! frames read back one by one.

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpStream, UdpSocket};

use super::{DEADLINE, RTSP, read_response};
use streamplane_testkit::{Worker, free_udp_port_pair};

/// A one-track G.711 µ-law session description for raw publishers.
pub const PCMU_SDP: &str = "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=raw\r\nt=0 0\r\n\
m=audio 0 RTP/AVP 0\r\na=control:trackID=0\r\n";

pub async fn connect(worker: &Worker) -> TcpStream {
    TcpStream::connect(worker.address(RTSP)).await.unwrap()
}

pub fn status_line(head: &str) -> &str {
    head.lines().next().unwrap_or_default()
}

pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
}

/// The id of the `Session` header (without `;timeout=`).
pub fn session_id(head: &str) -> String {
    let value = header(head, "Session").unwrap_or_else(|| panic!("no Session in:\n{head}"));
    value.split(';').next().unwrap().trim().to_owned()
}

/// An interleaved `$` frame.
pub fn frame(channel: u8, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![b'$', channel];
    out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
    out.extend_from_slice(payload);
    out
}

pub fn seq(rtp: &[u8]) -> u16 {
    u16::from_be_bytes([rtp[2], rtp[3]])
}

/// The `seq` of the single `RTP-Info` entry.
pub fn rtp_info_seq(head: &str) -> u16 {
    let info = header(head, "RTP-Info").unwrap_or_else(|| panic!("no RTP-Info:\n{head}"));
    info.split(';')
        .find_map(|p| p.trim().strip_prefix("seq="))
        .unwrap_or_else(|| panic!("no seq in RTP-Info: {info}"))
        .parse()
        .unwrap()
}

/// What the server sent next on a connection.
pub enum Item {
    Frame { channel: u8, payload: Vec<u8> },
    Response(String),
    Closed,
}

pub async fn read_item(conn: &mut TcpStream) -> Item {
    let mut first = [0u8; 1];
    let n = tokio::time::timeout(DEADLINE, conn.read(&mut first))
        .await
        .expect("something from the server")
        .unwrap();
    if n == 0 {
        return Item::Closed;
    }
    if first[0] == b'$' {
        let mut header = [0u8; 3];
        conn.read_exact(&mut header).await.unwrap();
        let mut payload = vec![0; usize::from(u16::from_be_bytes([header[1], header[2]]))];
        conn.read_exact(&mut payload).await.unwrap();
        return Item::Frame {
            channel: header[0],
            payload,
        };
    }
    let mut head = vec![first[0]];
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        conn.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    if let Some(len) = header(&head, "Content-Length") {
        let mut body = vec![0; len.trim().parse().unwrap()];
        conn.read_exact(&mut body).await.unwrap();
    }
    Item::Response(head)
}

/// The next response on a connection that may be receiving frames (they are skipped).
pub async fn next_response(conn: &mut TcpStream) -> String {
    loop {
        match read_item(conn).await {
            Item::Response(head) => return head,
            Item::Frame { .. } => {}
            Item::Closed => panic!("connection closed before the response"),
        }
    }
}

/// Sends `request` on a connection that may be receiving frames; the response head.
pub async fn ask_playing(conn: &mut TcpStream, request: &str) -> String {
    conn.write_all(request.as_bytes()).await.unwrap();
    next_response(conn).await
}

/// Sends `request`; the response head.
pub async fn ask(conn: &mut TcpStream, request: &str) -> String {
    conn.write_all(request.as_bytes()).await.unwrap();
    read_response(conn).await.0
}

/// The next RTP packet on `channel`, skipping other channels.
pub async fn next_rtp(conn: &mut TcpStream, channel: u8) -> Vec<u8> {
    loop {
        match read_item(conn).await {
            Item::Frame {
                channel: c,
                payload,
            } if c == channel => return payload,
            Item::Frame { .. } => {}
            Item::Response(head) => panic!("unexpected response:\n{head}"),
            Item::Closed => panic!("connection closed while waiting for rtp"),
        }
    }
}

/// An even/odd pair of bound UDP sockets. A port picked as free can be taken by a parallel test
/// before we bind it, so a taken pair is skipped rather than failing the test.
pub async fn udp_pair() -> (UdpSocket, UdpSocket, (u16, u16)) {
    for _ in 0..50 {
        let ports = free_udp_port_pair();
        let Ok(rtp) = UdpSocket::bind(("127.0.0.1", ports.0)).await else {
            continue;
        };
        let Ok(rtcp) = UdpSocket::bind(("127.0.0.1", ports.1)).await else {
            continue;
        };
        return (rtp, rtcp, ports);
    }
    panic!("no free even/odd UDP port pair after 50 tries");
}

/// `METHOD url` with `CSeq` and `Session` and nothing else (PLAY, PAUSE, keep-alives,
/// TEARDOWN).
pub fn in_session(method: &str, url: &str, cseq: u32, session: &str) -> String {
    format!("{method} {url} RTSP/1.0\r\nCSeq: {cseq}\r\nSession: {session}\r\n\r\n")
}
