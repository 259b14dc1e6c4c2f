//! UDP batch sends, `sendmmsg` against one `try_send_to` per datagram: batches of 64 RTP-sized
//! datagrams to two loopback receivers (two tracks) that never read, on one thread for a fixed
//! time each. Prints system calls per packet and the sending thread's CPU per Gbit/s.
//!
//!   cargo bench -p streamplane-worker --bench udp_send [-- SECONDS]
//!
//! On loopback the kernel also does the receive side's work in the sender's thread, so the CPU
//! figures are higher than towards a NIC; the ratio between the two methods is what matters.

use std::io;
use std::time::{Duration, Instant};

use streamplane_worker::rtsp::udp_send::{self, Datagram};
use tokio::net::UdpSocket;

const PAYLOAD: usize = 1316;
const BATCH: usize = 64;

/// CPU seconds (user + system) of the calling thread, from procfs (10 ms resolution).
fn thread_cpu() -> f64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(") ")
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    (ticks(11) + ticks(12)) as f64 / 100.0
}

type SendFn = fn(&UdpSocket, &[Datagram<'_>], &mut dyn FnMut(usize, io::Result<usize>)) -> usize;

async fn run(name: &str, send: SendFn, seconds: f64) {
    let sender = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    sender.writable().await.expect("writable");
    let a = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let b = UdpSocket::bind("127.0.0.1:0").await.expect("bind");
    let to = [a.local_addr().expect("addr"), b.local_addr().expect("addr")];
    let payload = vec![0x5a_u8; PAYLOAD];
    let datagrams: Vec<Datagram<'_>> = (0..BATCH)
        .map(|i| Datagram {
            payload: &payload,
            to: to[i % 2],
        })
        .collect();
    let (mut sent, mut dropped, mut bytes, mut calls) = (0u64, 0u64, 0u64, 0u64);
    let cpu0 = thread_cpu();
    let start = Instant::now();
    let deadline = start + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        for _ in 0..100 {
            calls += send(&sender, &datagrams, &mut |_, r| match r {
                Ok(n) => {
                    sent += 1;
                    bytes += n as u64;
                }
                Err(_) => dropped += 1,
            }) as u64;
        }
        // Let the receivers' backlog drain, as a paced stream would.
        tokio::task::yield_now().await;
    }
    let wall = start.elapsed().as_secs_f64();
    let cpu = thread_cpu() - cpu0;
    let packets = sent + dropped;
    let gbit = bytes as f64 * 8.0 / 1e9;
    println!(
        "{name:<12} packets {packets:>9}  dropped {dropped:>7}  syscalls/packet {:.4}  \
         CPU ns/packet {:>6.0}  {:.2} Gbit/s  {:.3} cores per Gbit/s  (cpu {cpu:.2} s in {wall:.2} s)",
        calls as f64 / packets.max(1) as f64,
        cpu * 1e9 / packets.max(1) as f64,
        gbit / wall,
        if gbit > 0.0 {
            // CPU seconds per Gbit sent = cores busy per Gbit/s.
            cpu / gbit
        } else {
            0.0
        },
    );
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find_map(|a| a.parse().ok())
        .unwrap_or(3.0);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(async {
        run(
            "try_send_to",
            |s, d, o| udp_send::send_each(s, d, o),
            seconds,
        )
        .await;
        #[cfg(target_os = "linux")]
        run("sendmmsg", |s, d, o| udp_send::send_mmsg(s, d, o), seconds).await;
        run(
            "try_send_to",
            |s, d, o| udp_send::send_each(s, d, o),
            seconds,
        )
        .await;
        #[cfg(target_os = "linux")]
        run("sendmmsg", |s, d, o| udp_send::send_mmsg(s, d, o), seconds).await;
    });
}
