//! Sending a batch of datagrams from one UDP socket without waiting: one `sendmmsg` system
//! call per batch on Linux (through rustix, whose wrapper is safe), a `try_send_to` per
//! datagram elsewhere.
//!
//! Every datagram gets an outcome, in order. A datagram the kernel does not take (the socket
//! buffer is full: `WouldBlock`, or an error) is a drop for the caller to count; after
//! `WouldBlock` the rest of the batch is dropped without further system calls, as the loop
//! would have dropped them one by one.

use std::io;
use std::net::SocketAddr;

use tokio::net::UdpSocket;

/// One datagram of a batch.
#[derive(Debug, Clone, Copy)]
pub struct Datagram<'a> {
    pub payload: &'a [u8],
    pub to: SocketAddr,
}

/// Most datagrams handed to the kernel in one call (Linux accepts up to `UIO_MAXIOV`, 1024).
pub const MAX_BATCH: usize = 64;

/// Sends `datagrams` in order; `outcome(i, result)` is called once per datagram, in order,
/// with the bytes sent or why it was dropped. Returns the number of system calls made.
pub fn send_batch(
    socket: &UdpSocket,
    datagrams: &[Datagram<'_>],
    outcome: impl FnMut(usize, io::Result<usize>),
) -> usize {
    #[cfg(target_os = "linux")]
    {
        send_mmsg(socket, datagrams, outcome)
    }
    #[cfg(not(target_os = "linux"))]
    {
        send_each(socket, datagrams, outcome)
    }
}

/// One `try_send_to` per datagram: the portable path, and the baseline of the benchmark.
pub fn send_each(
    socket: &UdpSocket,
    datagrams: &[Datagram<'_>],
    mut outcome: impl FnMut(usize, io::Result<usize>),
) -> usize {
    for (i, d) in datagrams.iter().enumerate() {
        outcome(i, socket.try_send_to(d.payload, d.to));
    }
    datagrams.len()
}

/// `sendmmsg` in chunks of [`MAX_BATCH`]. A partial send continues after the datagrams sent; an
/// error other than `WouldBlock` belongs to the first datagram not sent, which is skipped.
#[cfg(target_os = "linux")]
pub fn send_mmsg(
    socket: &UdpSocket,
    datagrams: &[Datagram<'_>],
    mut outcome: impl FnMut(usize, io::Result<usize>),
) -> usize {
    let mut calls = 0;
    let mut next = 0;
    while next < datagrams.len() {
        let end = datagrams.len().min(next + MAX_BATCH);
        let chunk = &datagrams[next..end];
        calls += 1;
        // `try_io` clears the socket's write readiness on `WouldBlock`, as `try_send_to` does.
        let result = socket.try_io(tokio::io::Interest::WRITABLE, || mmsg(socket, chunk));
        match result {
            Ok(sent) if !sent.is_empty() => {
                let taken = sent.len();
                for (k, bytes) in sent.into_iter().enumerate() {
                    outcome(next + k, Ok(bytes));
                }
                next += taken;
            }
            Ok(_) => {
                // Nothing taken and no error: treat like a full buffer rather than spin.
                for i in next..datagrams.len() {
                    outcome(i, Err(io::ErrorKind::WouldBlock.into()));
                }
                return calls;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                for i in next..datagrams.len() {
                    outcome(i, Err(io::ErrorKind::WouldBlock.into()));
                }
                return calls;
            }
            Err(e) => {
                outcome(next, Err(e));
                next += 1;
            }
        }
    }
    calls
}

/// One `sendmmsg` call; the bytes the kernel took for each datagram it sent.
#[cfg(target_os = "linux")]
fn mmsg(socket: &UdpSocket, chunk: &[Datagram<'_>]) -> io::Result<Vec<usize>> {
    use rustix::net::addr::SocketAddrArg;
    use rustix::net::{MMsgHdr, SendAncillaryBuffer, SendFlags, SocketAddrAny};
    use std::io::IoSlice;

    let addrs: Vec<SocketAddrAny> = chunk.iter().map(|d| d.to.as_any()).collect();
    let iovs: Vec<[IoSlice<'_>; 1]> = chunk.iter().map(|d| [IoSlice::new(d.payload)]).collect();
    let mut controls: Vec<SendAncillaryBuffer<'_, '_, '_>> = chunk
        .iter()
        .map(|_| SendAncillaryBuffer::default())
        .collect();
    let mut msgs: Vec<MMsgHdr<'_>> = addrs
        .iter()
        .zip(&iovs)
        .zip(controls.iter_mut())
        .map(|((addr, iov), control)| MMsgHdr::new_with_addr(addr, iov, control))
        .collect();
    let sent = rustix::net::sendmmsg(socket, &mut msgs, SendFlags::empty())?;
    Ok(msgs.iter().take(sent).map(MMsgHdr::bytes_sent).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// Datagram `i` of a test batch: its index, then filler up to a size that varies.
    fn payload(i: usize) -> Vec<u8> {
        let mut p = vec![0xab; 200 + 37 * i];
        p[..2].copy_from_slice(&u16::try_from(i).unwrap().to_be_bytes());
        p
    }

    async fn receive(socket: &UdpSocket, count: usize) -> Vec<Vec<u8>> {
        let mut got = Vec::new();
        let mut buf = vec![0u8; 65_536];
        while got.len() < count {
            let n = tokio::time::timeout(std::time::Duration::from_secs(10), socket.recv(&mut buf))
                .await
                .expect("every datagram arrives")
                .unwrap();
            got.push(buf[..n].to_vec());
        }
        got
    }

    type SendFn =
        fn(&UdpSocket, &[Datagram<'_>], &mut dyn FnMut(usize, io::Result<usize>)) -> usize;

    async fn batch_arrives_complete_and_in_order(send: SendFn) -> usize {
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Sends never wait, so the reactor must have seen the new socket writable first.
        sender.writable().await.unwrap();
        let a = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let payloads: Vec<Vec<u8>> = (0..MAX_BATCH + 6).map(payload).collect();
        // Two destinations, interleaved, as two tracks of one reader.
        let to = [a.local_addr().unwrap(), b.local_addr().unwrap()];
        let datagrams: Vec<Datagram<'_>> = payloads
            .iter()
            .enumerate()
            .map(|(i, p)| Datagram {
                payload: p,
                to: to[i % 2],
            })
            .collect();
        let mut outcomes = Vec::new();
        let calls = send(&sender, &datagrams, &mut |i, r| {
            outcomes.push((i, r.unwrap()))
        });
        let expected: Vec<(usize, usize)> = payloads.iter().map(Vec::len).enumerate().collect();
        assert_eq!(outcomes, expected, "one outcome per datagram, in order");
        let (got_a, got_b) = (
            receive(&a, payloads.len() / 2).await,
            receive(&b, payloads.len() / 2).await,
        );
        assert_eq!(
            got_a,
            payloads.iter().step_by(2).cloned().collect::<Vec<_>>()
        );
        assert_eq!(
            got_b,
            payloads
                .iter()
                .skip(1)
                .step_by(2)
                .cloned()
                .collect::<Vec<_>>()
        );
        calls
    }

    #[tokio::test]
    async fn a_batch_arrives_complete_and_in_order() {
        let calls = batch_arrives_complete_and_in_order(|s, d, o| send_batch(s, d, o)).await;
        if cfg!(target_os = "linux") {
            assert_eq!(calls, 2, "one sendmmsg per {MAX_BATCH} datagrams");
        }
        let calls = batch_arrives_complete_and_in_order(|s, d, o| send_each(s, d, o)).await;
        assert_eq!(calls, MAX_BATCH + 6);
    }

    #[cfg(target_os = "linux")]
    #[tokio::test]
    async fn an_error_drops_one_datagram_and_the_batch_goes_on() {
        // An IPv6 destination from an IPv4 socket fails alone: sendmmsg stops before it, the
        // retry fails on it, the next call sends the rest.
        let sender = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        // Sends never wait, so the reactor must have seen the new socket writable first.
        sender.writable().await.unwrap();
        let receiver = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let good = receiver.local_addr().unwrap();
        let bad: SocketAddr = "[::1]:9".parse().unwrap();
        let payloads: Vec<Vec<u8>> = (0..5).map(payload).collect();
        let to = [good, good, bad, good, good];
        let datagrams: Vec<Datagram<'_>> = payloads
            .iter()
            .zip(to)
            .map(|(p, to)| Datagram { payload: p, to })
            .collect();
        let mut outcomes = Vec::new();
        send_mmsg(&sender, &datagrams, |i, r| outcomes.push((i, r.is_ok())));
        assert_eq!(
            outcomes,
            [(0, true), (1, true), (2, false), (3, true), (4, true)]
        );
        let got = receive(&receiver, 4).await;
        let sent: Vec<Vec<u8>> = [0, 1, 3, 4].iter().map(|&i| payloads[i].clone()).collect();
        assert_eq!(got, sent);
    }
}
