//! Reads of the readers' TCP sockets with the kernel's receive timestamp (Linux `SO_TIMESTAMPNS`),
//! so the latency figure can exclude the load client's own scheduling delay.
//!
//! On TCP, Linux attaches one `SCM_TIMESTAMPNS` to each `recvmsg` that returns data: the software
//! timestamp (CLOCK_REALTIME) of the last skb the read copied from. On loopback it is taken when the
//! sender's segment enters the receive path (`netif_rx`), so it marks "bytes arrived at the reader's
//! socket" independently of when the client gets to read them. Elsewhere, or when the option is
//! refused, reads carry no timestamp and only the client-observed latency is reported.
//!
//! Approximation: one timestamp per read, of the newest segment it returned (a segment the kernel
//! coalesces into one already queued also passes on its newer time). For a packet completed by a
//! read it is thus an upper bound on the packet's arrival: exact when the packet's last bytes came
//! in the newest segment, later by the gap to that segment otherwise; a server that writes an
//! access unit's packets back to back keeps that gap small, and a read spans two access units
//! (33 ms apart) only when the client is that far behind.

use std::io;

use bytes::BytesMut;
use tokio::net::TcpStream;

/// Bytes read per call: about one 4 Mbit/s keyframe, and a bound on what one timestamp covers.
const READ_SIZE: usize = 64 * 1024;

/// Reads a TCP stream into a buffer, with the kernel receive timestamp of each read where available.
pub struct TimestampedReader {
    scratch: Vec<u8>,
    /// Why reads carry no timestamp (`None` when they do).
    unavailable: Option<String>,
    #[cfg(target_os = "linux")]
    cmsg: Vec<u8>,
}

impl TimestampedReader {
    /// Asks the kernel to timestamp what `stream` receives from now on.
    pub fn new(stream: &TcpStream) -> Self {
        Self {
            scratch: vec![0; READ_SIZE],
            unavailable: enable(stream).err(),
            #[cfg(target_os = "linux")]
            cmsg: nix::cmsg_space!(nix::sys::time::TimeSpec),
        }
    }

    /// Why this reader's reads have no kernel timestamp, if they have none.
    pub fn unavailable(&self) -> Option<&str> {
        self.unavailable.as_deref()
    }

    /// Reads once (waiting until readable), appends the bytes to `buf` and returns their count (0
    /// at end of stream) with the kernel receive time of the last of them, in ns since the epoch.
    pub async fn read(
        &mut self,
        stream: &TcpStream,
        buf: &mut BytesMut,
    ) -> io::Result<(usize, Option<u64>)> {
        loop {
            stream.readable().await?;
            match self.try_read(stream) {
                Ok((n, timestamp)) => {
                    buf.extend_from_slice(&self.scratch[..n]);
                    return Ok((n, timestamp));
                }
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Err(error),
            }
        }
    }

    #[cfg(target_os = "linux")]
    fn try_read(&mut self, stream: &TcpStream) -> io::Result<(usize, Option<u64>)> {
        use std::io::IoSliceMut;
        use std::os::fd::AsRawFd;

        use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
        use tokio::io::Interest;

        if self.unavailable.is_some() {
            return stream.try_read(&mut self.scratch).map(|n| (n, None));
        }
        let (scratch, cmsg) = (&mut self.scratch, &mut self.cmsg);
        stream.try_io(Interest::READABLE, || {
            let mut iov = [IoSliceMut::new(scratch)];
            let msg = recvmsg::<()>(
                stream.as_raw_fd(),
                &mut iov,
                Some(cmsg),
                MsgFlags::MSG_DONTWAIT,
            )?;
            let mut timestamp = None;
            for message in msg.cmsgs()? {
                if let ControlMessageOwned::ScmTimestampns(ts) = message {
                    timestamp = u64::try_from(ts.tv_sec())
                        .ok()
                        .zip(u64::try_from(ts.tv_nsec()).ok())
                        .map(|(s, ns)| s * 1_000_000_000 + ns);
                }
            }
            Ok((msg.bytes, timestamp))
        })
    }

    #[cfg(not(target_os = "linux"))]
    fn try_read(&mut self, stream: &TcpStream) -> io::Result<(usize, Option<u64>)> {
        stream.try_read(&mut self.scratch).map(|n| (n, None))
    }
}

#[cfg(target_os = "linux")]
fn enable(stream: &TcpStream) -> Result<(), String> {
    use nix::sys::socket::{setsockopt, sockopt::ReceiveTimestampns};
    setsockopt(stream, ReceiveTimestampns, &true).map_err(|e| format!("SO_TIMESTAMPNS: {e}"))
}

#[cfg(not(target_os = "linux"))]
fn enable(_stream: &TcpStream) -> Result<(), String> {
    Err("kernel receive timestamps are read on Linux only".to_owned())
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use std::time::{SystemTime, UNIX_EPOCH};

    use tokio::io::AsyncWriteExt;
    use tokio::net::TcpListener;

    use super::*;

    fn now_ns() -> u64 {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock after 1970");
        u64::try_from(since.as_nanos()).expect("fits until 2554")
    }

    #[tokio::test]
    async fn reads_carry_the_kernel_receive_time() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("address");
        let client = TcpStream::connect(addr).await.expect("connect");
        let (mut server, _) = listener.accept().await.expect("accept");
        let mut reader = TimestampedReader::new(&client);
        assert_eq!(reader.unavailable(), None);

        // The kernel turns receive timestamping on asynchronously the first time a socket asks for
        // it: wait (with a deadline) for a first timestamped read, then every read must have one.
        let mut buf = BytesMut::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        loop {
            server.write_all(&[9; 10]).await.expect("write");
            let (n, timestamp) = reader.read(&client, &mut buf).await.expect("read");
            assert!(n > 0);
            if timestamp.is_some() {
                break;
            }
            assert!(std::time::Instant::now() < deadline, "no kernel timestamp");
        }
        // The warm-up bytes may still be in flight.
        server.write_all(&[0xff]).await.expect("write");
        while buf.last() != Some(&0xff) {
            reader.read(&client, &mut buf).await.expect("read");
        }
        buf.clear();

        for round in 0..3u8 {
            let before = now_ns();
            server.write_all(&[round; 1000]).await.expect("write");
            let mut got = 0;
            while got < 1000 {
                let (n, timestamp) = reader.read(&client, &mut buf).await.expect("read");
                assert!(n > 0);
                let timestamp = timestamp.expect("a kernel timestamp on every read");
                assert!(before <= timestamp, "received before it was sent");
                assert!(timestamp <= now_ns(), "received after it was read");
                got += n;
            }
        }
        assert_eq!(buf.len(), 3000);
        assert!(buf[2000..].iter().all(|&b| b == 2));

        drop(server);
        let (n, _) = reader.read(&client, &mut buf).await.expect("read at end");
        assert_eq!(n, 0, "end of stream");
    }
}
