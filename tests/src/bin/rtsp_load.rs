//! RTSP load client for `scripts/bench rtsp`: N readers over TCP interleaved, or a publisher that
//! stamps every access unit with its send time (an H.264 SEI), so readers measure publish → read
//! latency without decoding.
//!
//! Readers:   streamplane-rtsp-load --url rtsp://127.0.0.1:8554/stream --readers 100 --duration 20 \
//!              [--ramp 20] [--settle 2] [--server-pid PID]
//!   Opens sessions (OPTIONS, DESCRIBE, SETUP per track with interleaved=2i-2i+1, PLAY) at --ramp per
//!   second, waits --settle seconds after the last one, then measures for --duration seconds and prints
//!   one JSON object: throughput, sequence gaps, first packet / first keyframe delay (from PLAY sent),
//!   latency (arrival - SEI send time) and, with --server-pid, the server's CPU and RSS over the window.
//!   Latency has two arrivals: client observed (`latency_ms`: when the client decoded the packet, so
//!   it includes the client's own scheduling, ~12 µs per reader and frame here) and socket arrival
//!   (`latency_kernel_ms`, Linux: the kernel receive timestamp of the read that completed the SEI's
//!   RTP packet, i.e. of the last segment that read returned, an upper bound on the SEI's own arrival
//!   that is close to it since a server sends an access unit's packets back to back).
//!   `kernel_after_client` counts samples whose socket arrival is after the client's (must be 0).
//! Publisher: streamplane-rtsp-load --publish --url rtsp://127.0.0.1:8554/stream --file clip.h264 \
//!              [--fps 30] [--paths K] [--duration S]
//!   Reads an Annex-B H.264 file, loops it at --fps with a 90 kHz clock, puts a timestamp SEI first in
//!   every access unit and publishes it (ANNOUNCE, SETUP, RECORD over TCP interleaved). With --paths K
//!   it publishes K copies, to URL-0 ... URL-(K-1).

#[path = "rtsp_load/h264.rs"]
mod h264;
#[path = "rtsp_load/rx_timestamp.rs"]
mod rx_timestamp;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use base64::Engine as _;
use bytes::BytesMut;
use serde_json::json;
use streamplane_media_core::rtsp::{
    Decoder, Item, Limits, Method, Request, Response, Url, encode_interleaved, encode_request,
    names,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;

struct Args {
    url: String,
    publish: bool,
    file: String,
    fps: f64,
    paths: usize,
    readers: usize,
    /// Readers: the measurement window. Publisher: stop after this long (default: never).
    duration: Option<f64>,
    ramp: f64,
    settle: f64,
    server_pid: Option<u32>,
}

fn parse_args() -> anyhow::Result<Args> {
    let mut args = Args {
        url: String::new(),
        publish: false,
        file: String::new(),
        fps: 30.0,
        paths: 1,
        readers: 100,
        duration: None,
        ramp: 20.0,
        settle: 2.0,
        server_pid: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().with_context(|| format!("{flag} needs a value"));
        match flag.as_str() {
            "--url" => args.url = value()?,
            "--publish" => args.publish = true,
            "--file" => args.file = value()?,
            "--fps" => args.fps = value()?.parse()?,
            "--paths" => args.paths = value()?.parse()?,
            "--readers" => args.readers = value()?.parse()?,
            "--duration" => args.duration = Some(value()?.parse()?),
            "--ramp" => args.ramp = value()?.parse()?,
            "--settle" => args.settle = value()?.parse()?,
            "--server-pid" => args.server_pid = Some(value()?.parse()?),
            other => bail!("unknown argument {other}; see the file's doc comment"),
        }
    }
    if args.url.is_empty() {
        bail!("--url is required");
    }
    if args.publish && args.file.is_empty() {
        bail!("--publish needs --file");
    }
    Ok(args)
}

fn main() -> anyhow::Result<()> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    if args.publish {
        runtime.block_on(publish_all(args))
    } else {
        runtime.block_on(read_all(args))
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// One RTSP client connection: requests with CSeq, responses read past interleaved frames.
struct Conn {
    reader: tokio::net::tcp::OwnedReadHalf,
    writer: OwnedWriteHalf,
    buf: BytesMut,
    decoder: Decoder,
    cseq: u32,
    session: Option<String>,
}

impl Conn {
    async fn connect(url: &Url) -> anyhow::Result<Self> {
        let host = url.host_str().context("URL has no host")?;
        let port = url.port().unwrap_or(554);
        let stream = TcpStream::connect((host, port))
            .await
            .with_context(|| format!("connecting to {host}:{port}"))?;
        stream.set_nodelay(true)?;
        let (reader, writer) = stream.into_split();
        Ok(Self {
            reader,
            writer,
            buf: BytesMut::with_capacity(64 * 1024),
            decoder: Decoder::new(Limits::default()),
            cseq: 0,
            session: None,
        })
    }

    async fn request(
        &mut self,
        method: Method,
        url: &Url,
        headers: &[(streamplane_media_core::rtsp::HeaderName, String)],
        body: Option<bytes::Bytes>,
    ) -> anyhow::Result<Response> {
        self.cseq += 1;
        let mut request = Request::new(method.clone(), Some(url.clone()))
            .with_header(names::CSEQ, self.cseq.to_string())
            .with_header(names::USER_AGENT, "streamplane-rtsp-load");
        if let Some(session) = &self.session {
            request = request.with_header(names::SESSION, session.clone());
        }
        for (name, value) in headers {
            request = request.with_header(name.clone(), value.clone());
        }
        if let Some(body) = body {
            request = request.with_body(body);
        }
        let mut out = BytesMut::new();
        encode_request(&request, &mut out)?;
        self.writer.write_all(&out).await?;
        loop {
            while let Some(item) = self.decoder.decode(&mut self.buf)? {
                if let Item::Response(response) = item {
                    let status = u16::from(response.status);
                    if status != 200 {
                        bail!("{method:?} {url}: RTSP {status} {}", response.reason);
                    }
                    if let Some(session) = response.header(&names::SESSION) {
                        let id = session.split(';').next().unwrap_or_default().trim();
                        self.session = Some(id.to_owned());
                    }
                    return Ok(response);
                }
            }
            self.buf.reserve(16 * 1024);
            if self.reader.read_buf(&mut self.buf).await? == 0 {
                bail!("{method:?} {url}: connection closed");
            }
        }
    }
}

/// A media section of a DESCRIBE answer.
struct Track {
    control: String,
    h264: bool,
}

fn parse_sdp(sdp: &str) -> Vec<Track> {
    let mut tracks: Vec<Track> = Vec::new();
    for line in sdp.lines().map(str::trim) {
        if line.starts_with("m=") {
            tracks.push(Track {
                control: String::new(),
                h264: false,
            });
        } else if let Some(track) = tracks.last_mut() {
            if let Some(control) = line.strip_prefix("a=control:") {
                control.clone_into(&mut track.control);
            } else if let Some(rtpmap) = line.strip_prefix("a=rtpmap:") {
                track.h264 |= rtpmap.to_ascii_uppercase().contains("H264/");
            }
        }
    }
    tracks
}

fn track_url(base: &Url, control: &str) -> anyhow::Result<Url> {
    if control.is_empty() || control == "*" {
        return Ok(base.clone());
    }
    if control.starts_with("rtsp://") || control.starts_with("rtsps://") {
        return Ok(Url::parse(control)?);
    }
    let mut text = base.as_str().to_owned();
    if !text.ends_with('/') {
        text.push('/');
    }
    text.push_str(control);
    Ok(Url::parse(&text)?)
}

// ---------------------------------------------------------------------------------------------
// Readers

#[derive(Default)]
struct ReaderStats {
    ok: bool,
    error: Option<String>,
    /// Bytes and RTP packets received inside the measurement window.
    window_bytes: u64,
    window_packets: u64,
    packets: u64,
    gaps: u64,
    gap_events: u64,
    reordered: u64,
    first_packet_ms: Option<f64>,
    first_keyframe_ms: Option<f64>,
    /// Arrival - send of the timestamp SEIs received inside the window, in microseconds, arrival
    /// being when the client decoded the packet (client observed).
    latencies_us: Vec<f64>,
    /// Per latency sample: the same with arrival = the kernel receive timestamp of the read that
    /// completed the SEI's RTP packet (socket arrival); `None` when that read had none.
    kernel_latencies_us: Vec<Option<f64>>,
    /// Samples whose socket arrival is later than their client-observed arrival (must stay 0).
    kernel_after_client: u64,
    /// Why this reader has no kernel timestamps at all.
    kernel_unavailable: Option<String>,
    /// Per latency sample: whether its access unit is a keyframe (an IDR or SPS follows the
    /// SEI with the same RTP timestamp), to tell keyframe fan-out from the rest.
    keyframe: Vec<bool>,
}

#[derive(Clone, Copy)]
struct Window {
    start: Instant,
    end: Instant,
}

async fn run_reader(url: Url, window: Window) -> ReaderStats {
    let mut stats = ReaderStats::default();
    let deadline = window.end;
    let result = tokio::time::timeout_at(deadline.into(), read_session(&url, window, &mut stats));
    match result.await {
        Ok(Ok(())) | Err(_) => {}
        Ok(Err(error)) => stats.error = Some(format!("{error:#}")),
    }
    stats
}

async fn read_session(url: &Url, window: Window, stats: &mut ReaderStats) -> anyhow::Result<()> {
    let mut conn = Conn::connect(url).await?;
    let mut rx = rx_timestamp::TimestampedReader::new(conn.reader.as_ref());
    stats.kernel_unavailable = rx.unavailable().map(str::to_owned);
    conn.request(Method::Options, url, &[], None).await?;
    let describe = conn
        .request(
            Method::Describe,
            url,
            &[(names::ACCEPT, "application/sdp".to_owned())],
            None,
        )
        .await?;
    let base = match describe.header(&streamplane_media_core::rtsp::names::CONTENT_BASE) {
        Some(base) => Url::parse(base).unwrap_or_else(|_| url.clone()),
        None => url.clone(),
    };
    let tracks = parse_sdp(&String::from_utf8_lossy(&describe.body));
    if tracks.is_empty() {
        bail!("DESCRIBE: no media in the SDP");
    }
    // channel (RTP) -> (track index, is H.264)
    let mut channels: HashMap<u8, bool> = HashMap::new();
    for (i, track) in tracks.iter().enumerate() {
        let channel = u8::try_from(2 * i)?;
        let transport = format!(
            "RTP/AVP/TCP;unicast;interleaved={}-{}",
            channel,
            channel + 1
        );
        let response = conn
            .request(
                Method::Setup,
                &track_url(&base, &track.control)?,
                &[(names::TRANSPORT, transport)],
                None,
            )
            .await?;
        let granted = response
            .header(&names::TRANSPORT)
            .and_then(|t| t.split(';').find_map(|p| p.strip_prefix("interleaved=")))
            .and_then(|range| range.split('-').next())
            .and_then(|c| c.parse::<u8>().ok())
            .unwrap_or(channel);
        channels.insert(granted, track.h264);
    }
    let play_sent = Instant::now();
    conn.request(
        Method::Play,
        &base,
        &[(names::RANGE, "npt=0.000-".to_owned())],
        None,
    )
    .await?;
    stats.ok = true;

    let mut last_seq: HashMap<u8, u16> = HashMap::new();
    // RTP timestamp of the latest latency sample, until its access unit shows a keyframe.
    let mut sample_ts: Option<u32> = None;
    // Kernel receive time of the latest read: every packet decoded after a read was completed by it.
    let mut read_ns: Option<u64> = None;
    loop {
        while let Some(item) = conn.decoder.decode(&mut conn.buf)? {
            let Item::Interleaved { channel, payload } = item else {
                continue;
            };
            let Some(&h264) = channels.get(&channel) else {
                continue; // RTCP
            };
            if payload.len() < 12 {
                continue;
            }
            let arrival = Instant::now();
            let in_window = arrival >= window.start;
            stats.packets += 1;
            if in_window {
                stats.window_packets += 1;
                stats.window_bytes += 4 + payload.len() as u64;
            }
            if stats.first_packet_ms.is_none() {
                stats.first_packet_ms = Some(ms(arrival - play_sent));
            }
            let seq = u16::from_be_bytes([payload[2], payload[3]]);
            if let Some(last) = last_seq.insert(channel, seq) {
                let diff = seq.wrapping_sub(last);
                if diff == 0 || diff >= 0x8000 {
                    stats.reordered += 1;
                    last_seq.insert(channel, last);
                } else if diff > 1 {
                    stats.gaps += u64::from(diff - 1);
                    stats.gap_events += 1;
                }
            }
            if !h264 {
                continue;
            }
            let Some(body) = rtp_payload(&payload) else {
                continue;
            };
            let ts = u32::from_be_bytes([payload[4], payload[5], payload[6], payload[7]]);
            if h264::starts_keyframe(body) {
                if stats.first_keyframe_ms.is_none() {
                    stats.first_keyframe_ms = Some(ms(arrival - play_sent));
                }
                if sample_ts.take() == Some(ts)
                    && let Some(last) = stats.keyframe.last_mut()
                {
                    *last = true;
                }
            }
            if in_window && let Some(send) = h264::find_timestamp(body) {
                let client_ns = now_ns();
                stats
                    .latencies_us
                    .push((client_ns as f64 - send as f64) / 1e3);
                stats
                    .kernel_latencies_us
                    .push(read_ns.map(|kernel| (kernel as f64 - send as f64) / 1e3));
                if read_ns.is_some_and(|kernel| kernel > client_ns) {
                    stats.kernel_after_client += 1;
                }
                stats.keyframe.push(false);
                sample_ts = Some(ts);
            }
        }
        let (n, timestamp) = rx.read(conn.reader.as_ref(), &mut conn.buf).await?;
        if n == 0 {
            bail!("server closed the connection");
        }
        read_ns = timestamp;
    }
}

/// The payload of an RTP packet (after CSRCs, extension and before padding).
fn rtp_payload(packet: &[u8]) -> Option<&[u8]> {
    let csrc = usize::from(packet[0] & 0x0f);
    let mut start = 12 + 4 * csrc;
    if packet[0] & 0x10 != 0 {
        let ext = packet.get(start + 2..start + 4)?;
        start += 4 + 4 * usize::from(u16::from_be_bytes([ext[0], ext[1]]));
    }
    let mut end = packet.len();
    if packet[0] & 0x20 != 0 {
        end = end.checked_sub(usize::from(*packet.last()?))?;
    }
    packet.get(start..end)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn percentile(sorted: &[f64], q: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let index = ((sorted.len() - 1) as f64 * q).round() as usize;
    Some(sorted[index])
}

/// Count, p50, p99 and max in ms of latency samples in µs.
fn latency_json(samples: impl Iterator<Item = f64>) -> serde_json::Value {
    let mut v: Vec<f64> = samples.collect();
    v.sort_by(f64::total_cmp);
    json!({
        "samples": v.len(),
        "p50": round3(percentile(&v, 0.5).map(|v| v / 1e3)),
        "p99": round3(percentile(&v, 0.99).map(|v| v / 1e3)),
        "max": round3(v.last().map(|v| v / 1e3)),
    })
}

fn round3(v: Option<f64>) -> serde_json::Value {
    v.map_or(serde_json::Value::Null, |v| {
        json!((v * 1000.0).round() / 1000.0)
    })
}

/// utime + stime in seconds, and VmRSS in KiB, of a process.
fn proc_sample(pid: u32) -> Option<(f64, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat.rsplit_once(") ")?.1.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let rss = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    // CLK_TCK is 100 on every Linux this runs on.
    Some((ticks as f64 / 100.0, rss))
}

async fn read_all(args: Args) -> anyhow::Result<()> {
    let url = Url::parse(&args.url)?;
    let duration = args.duration.unwrap_or(20.0);
    let ramp_secs = args.readers as f64 / args.ramp.max(0.001);
    let start = Instant::now();
    let window_start = start + Duration::from_secs_f64(ramp_secs + args.settle);
    let window = Window {
        start: window_start,
        end: window_start + Duration::from_secs_f64(duration),
    };
    let mut tasks = Vec::with_capacity(args.readers);
    for i in 0..args.readers {
        let at = start + Duration::from_secs_f64(i as f64 / args.ramp.max(0.001));
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            run_reader(url, window).await
        }));
    }
    let pid = args.server_pid;
    let me = std::process::id();
    let sampler = tokio::spawn(async move {
        tokio::time::sleep_until(window.start.into()).await;
        let before = pid.and_then(proc_sample);
        let me_before = proc_sample(me);
        tokio::time::sleep_until(window.end.into()).await;
        let after = pid.and_then(proc_sample);
        let me_after = proc_sample(me);
        let client_cpu = me_before.zip(me_after).map(|(a, b)| b.0 - a.0);
        (before.zip(after), client_cpu)
    });
    let mut all = Vec::with_capacity(tasks.len());
    for task in tasks {
        all.push(task.await?);
    }
    let (server, client_cpu) = sampler.await?;

    let connected = all.iter().filter(|s| s.ok).count();
    let mut errors: HashMap<String, usize> = HashMap::new();
    for s in &all {
        if let Some(e) = &s.error {
            *errors.entry(e.clone()).or_default() += 1;
        }
    }
    let window_bytes: u64 = all.iter().map(|s| s.window_bytes).sum();
    let window_packets: u64 = all.iter().map(|s| s.window_packets).sum();
    let packets: u64 = all.iter().map(|s| s.packets).sum();
    let gaps: u64 = all.iter().map(|s| s.gaps).sum();
    let gap_events: u64 = all.iter().map(|s| s.gap_events).sum();
    let reordered: u64 = all.iter().map(|s| s.reordered).sum();
    let mut per_reader_mbps: Vec<f64> = all
        .iter()
        .filter(|s| s.ok)
        .map(|s| s.window_bytes as f64 * 8.0 / duration / 1e6)
        .collect();
    per_reader_mbps.sort_by(f64::total_cmp);
    let sorted = |f: &dyn Fn(&ReaderStats) -> Option<f64>| {
        let mut v: Vec<f64> = all.iter().filter_map(f).collect();
        v.sort_by(f64::total_cmp);
        v
    };
    let first_packet = sorted(&|s| s.first_packet_ms);
    let first_keyframe = sorted(&|s| s.first_keyframe_ms);
    // Latency samples (µs) of all readers, all or only keyframes / only the others.
    let client = |key: Option<bool>| {
        latency_json(
            all.iter()
                .flat_map(|s| s.latencies_us.iter().zip(&s.keyframe))
                .filter(|(_, k)| key.is_none_or(|key| **k == key))
                .map(|(l, _)| *l),
        )
    };
    let kernel = |key: Option<bool>| {
        latency_json(
            all.iter()
                .flat_map(|s| s.kernel_latencies_us.iter().zip(&s.keyframe))
                .filter(|(_, k)| key.is_none_or(|key| **k == key))
                .filter_map(|(l, _)| *l),
        )
    };
    let samples: usize = all.iter().map(|s| s.latencies_us.len()).sum();
    let kernel_samples: usize = all
        .iter()
        .flat_map(|s| &s.kernel_latencies_us)
        .filter(|l| l.is_some())
        .count();
    let kernel_after_client: u64 = all.iter().map(|s| s.kernel_after_client).sum();
    let kernel_unavailable = all.iter().find_map(|s| s.kernel_unavailable.clone());
    // Socket arrival over the samples that have it; the note says when some or all lack it.
    let kernel_note = match kernel_unavailable {
        Some(why) => Some(format!("no kernel receive timestamps ({why})")),
        None if kernel_samples < samples => Some(format!(
            "{} of {samples} samples had no kernel receive timestamp",
            samples - kernel_samples
        )),
        None => None,
    };
    let kernel_ok = kernel_samples > 0;
    let kernel_or_null = |key: Option<bool>| {
        if kernel_ok {
            kernel(key)
        } else {
            serde_json::Value::Null
        }
    };
    let no_keyframe = all
        .iter()
        .filter(|s| s.ok && s.first_keyframe_ms.is_none())
        .count();
    let mbps = window_bytes as f64 * 8.0 / duration / 1e6;

    let server_json = match server {
        Some(((cpu0, rss0), (cpu1, rss1))) => {
            let cpu = cpu1 - cpu0;
            let gbit = window_bytes as f64 * 8.0 / 1e9;
            json!({
                "pid": args.server_pid,
                "cpu_seconds": round3(Some(cpu)),
                "cpu_percent": round3(Some(100.0 * cpu / duration)),
                "rss_kib_window_start": rss0,
                "rss_kib_window_end": rss1,
                "egress_gbit_per_cpu_second": round3((cpu > 0.0).then(|| gbit / cpu)),
                "cores_per_gbit_per_s": round3((gbit > 0.0).then(|| cpu / gbit)),
            })
        }
        None => serde_json::Value::Null,
    };
    let summary = json!({
        "url": args.url,
        "readers": args.readers,
        "connected": connected,
        "errors": errors,
        "duration_s": duration,
        "total_mbit_s": round3(Some(mbps)),
        "per_reader_mbit_s": {
            "min": round3(per_reader_mbps.first().copied()),
            "p50": round3(percentile(&per_reader_mbps, 0.5)),
            "max": round3(per_reader_mbps.last().copied()),
        },
        "rtp_packets": packets,
        "rtp_packets_window": window_packets,
        "lost_packets": gaps,
        "loss": gaps as f64 / (packets + gaps).max(1) as f64,
        "gap_events": gap_events,
        "reordered_or_duplicate": reordered,
        "readers_without_keyframe": no_keyframe,
        "first_packet_ms": {
            "p50": round3(percentile(&first_packet, 0.5)),
            "p99": round3(percentile(&first_packet, 0.99)),
            "max": round3(first_packet.last().copied()),
        },
        "first_keyframe_ms": {
            "p50": round3(percentile(&first_keyframe, 0.5)),
            "p99": round3(percentile(&first_keyframe, 0.99)),
            "max": round3(first_keyframe.last().copied()),
        },
        "latency_ms": client(None),
        "latency_keyframe_ms": client(Some(true)),
        "latency_other_ms": client(Some(false)),
        "latency_kernel_ms": kernel_or_null(None),
        "latency_kernel_keyframe_ms": kernel_or_null(Some(true)),
        "latency_kernel_other_ms": kernel_or_null(Some(false)),
        "latency_kernel_unavailable": kernel_note,
        "kernel_timestamp_missing": samples - kernel_samples,
        "kernel_after_client": kernel_after_client,
        "server": server_json,
        "client_cpu_percent": round3(client_cpu.map(|cpu| 100.0 * cpu / duration)),
    });
    if kernel_after_client > 0 {
        eprintln!(
            "warning: {kernel_after_client} samples arrived at the socket after the client saw them \
             (clock step?)"
        );
    }
    println!("{summary}");
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Publisher

async fn publish_all(args: Args) -> anyhow::Result<()> {
    let data = std::fs::read(&args.file).with_context(|| format!("reading {}", args.file))?;
    let nals = h264::split_annex_b(&data);
    let (sps, pps) = h264::parameter_sets(&nals).context("no SPS/PPS in the file")?;
    let aus: Vec<Vec<Vec<u8>>> = h264::access_units(&nals)
        .into_iter()
        .map(|au| au.into_iter().map(<[u8]>::to_vec).collect())
        .collect();
    if aus.is_empty() {
        bail!("no access units in {}", args.file);
    }
    let b64 = base64::engine::general_purpose::STANDARD;
    let sdp = format!(
        "v=0\r\no=- 0 0 IN IP4 127.0.0.1\r\ns=streamplane-rtsp-load\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=video 0 RTP/AVP 96\r\na=rtpmap:96 H264/90000\r\n\
         a=fmtp:96 packetization-mode=1;profile-level-id={:02X}{:02X}{:02X};sprop-parameter-sets={},{}\r\n\
         a=control:trackID=0\r\n",
        sps.get(1).copied().unwrap_or(0x42),
        sps.get(2).copied().unwrap_or(0),
        sps.get(3).copied().unwrap_or(0x1f),
        b64.encode(sps),
        b64.encode(pps),
    );
    let aus = Arc::new(aus);
    let mut tasks = Vec::new();
    for k in 0..args.paths {
        let url = if args.paths == 1 {
            args.url.clone()
        } else {
            format!("{}-{k}", args.url)
        };
        let (aus, sdp) = (aus.clone(), sdp.clone());
        let (fps, duration) = (args.fps, args.duration.unwrap_or(0.0));
        tasks.push(tokio::spawn(async move {
            let result = publish(&url, &sdp, &aus, fps, duration, k).await;
            if let Err(error) = &result {
                eprintln!("publisher {url}: {error:#}");
            }
            result
        }));
    }
    for task in tasks {
        task.await??;
    }
    Ok(())
}

async fn publish(
    url: &str,
    sdp: &str,
    aus: &[Vec<Vec<u8>>],
    fps: f64,
    duration: f64,
    k: usize,
) -> anyhow::Result<()> {
    let url = Url::parse(url)?;
    let mut conn = Conn::connect(&url).await?;
    conn.request(Method::Options, &url, &[], None).await?;
    conn.request(
        Method::Announce,
        &url,
        &[(names::CONTENT_TYPE, "application/sdp".to_owned())],
        Some(bytes::Bytes::from(sdp.to_owned())),
    )
    .await?;
    conn.request(
        Method::Setup,
        &track_url(&url, "trackID=0")?,
        &[(
            names::TRANSPORT,
            "RTP/AVP/TCP;unicast;interleaved=0-1;mode=record".to_owned(),
        )],
        None,
    )
    .await?;
    conn.request(
        Method::Record,
        &url,
        &[(names::RANGE, "npt=0.000-".to_owned())],
        None,
    )
    .await?;
    eprintln!("publishing {url} ({} access units, looped)", aus.len());
    let Conn {
        mut reader,
        mut writer,
        ..
    } = conn;
    // Drain whatever the server sends (RTCP receiver reports, keep-alive answers).
    tokio::spawn(async move {
        let mut sink = vec![0u8; 16 * 1024];
        while let Ok(n) = reader.read(&mut sink).await {
            if n == 0 {
                break;
            }
        }
    });
    let mut packetizer = h264::Packetizer {
        ssrc: 0x5354_0000 + u32::try_from(k).unwrap_or(0),
        seq: 1000,
        max_payload: 1400,
    };
    let start = Instant::now();
    let period = Duration::from_secs_f64(1.0 / fps);
    let ts_step = (90_000.0 / fps).round() as u32;
    let mut out = BytesMut::with_capacity(256 * 1024);
    for frame in 0u64.. {
        let due = start + period.mul_f64(frame as f64);
        if duration > 0.0 && due.duration_since(start).as_secs_f64() >= duration {
            break;
        }
        tokio::time::sleep_until(due.into()).await;
        let au = &aus[(frame % aus.len() as u64) as usize];
        let sei = h264::timestamp_sei(now_ns(), frame);
        let mut nals: Vec<&[u8]> = Vec::with_capacity(au.len() + 1);
        nals.push(&sei);
        nals.extend(au.iter().map(Vec::as_slice));
        let timestamp = 0x1000_u32.wrapping_add(ts_step.wrapping_mul(frame as u32));
        out.clear();
        for packet in packetizer.packetize(&nals, timestamp) {
            encode_interleaved(0, &packet, &mut out)?;
        }
        writer.write_all(&out).await?;
    }
    Ok(())
}
