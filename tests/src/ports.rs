//! Free ports for servers the tests start as separate processes.
//!
//! Processes under test bind their own sockets, so a port is found by binding port 0 and releasing it. Another
//! process could take it in between; that race is rare, and [`crate::ControlPlane`] and [`crate::Worker`] retry
//! with new ports when a binary reports "address in use". Within this process no port is handed out twice.

use std::collections::HashSet;
use std::net::{TcpListener, UdpSocket};
use std::sync::{Mutex, OnceLock};

fn handed_out() -> &'static Mutex<HashSet<(bool, u16)>> {
    static PORTS: OnceLock<Mutex<HashSet<(bool, u16)>>> = OnceLock::new();
    PORTS.get_or_init(Default::default)
}

fn claim(udp: bool, port: u16) -> bool {
    handed_out()
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .insert((udp, port))
}

/// A TCP port on 127.0.0.1 that nothing listened on a moment ago and that this process has not handed out yet.
pub fn free_port() -> u16 {
    for _ in 0..1000 {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 (a free TCP port)");
        let port = listener
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if claim(false, port) {
            return port;
        }
    }
    panic!("no fresh TCP port after 1000 tries: the ephemeral range is exhausted");
}

/// A UDP port on 127.0.0.1, as [`free_port`].
pub fn free_udp_port() -> u16 {
    for _ in 0..1000 {
        let socket = UdpSocket::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 (a free UDP port)");
        let port = socket
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if claim(true, port) {
            return port;
        }
    }
    panic!("no fresh UDP port after 1000 tries: the ephemeral range is exhausted");
}

/// Two adjacent free UDP ports, the first even: an RTP/RTCP pair (RFC 3550 §11).
pub fn free_udp_port_pair() -> (u16, u16) {
    for _ in 0..1000 {
        let rtp = UdpSocket::bind("127.0.0.1:0").expect("binding 127.0.0.1:0 (a free UDP port)");
        let port = rtp
            .local_addr()
            .expect("a bound socket has an address")
            .port();
        if !port.is_multiple_of(2) || port == u16::MAX {
            continue;
        }
        let Ok(_rtcp) = UdpSocket::bind(("127.0.0.1", port + 1)) else {
            continue;
        };
        let mut claimed = handed_out()
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if !claimed.contains(&(true, port)) && !claimed.contains(&(true, port + 1)) {
            claimed.insert((true, port));
            claimed.insert((true, port + 1));
            return (port, port + 1);
        }
    }
    panic!("no free even/odd UDP port pair after 1000 tries");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_are_free_and_never_repeat() {
        let ports: Vec<u16> = (0..200).map(|_| free_port()).collect();
        let distinct: HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
        TcpListener::bind(("127.0.0.1", ports[0])).expect("a free port can be bound");
    }

    #[test]
    fn udp_ports_and_pairs() {
        let port = free_udp_port();
        UdpSocket::bind(("127.0.0.1", port)).expect("a free UDP port can be bound");
        let (rtp, rtcp) = free_udp_port_pair();
        assert_eq!(rtp % 2, 0);
        assert_eq!(rtcp, rtp + 1);
        UdpSocket::bind(("127.0.0.1", rtp)).expect("RTP port is free");
        UdpSocket::bind(("127.0.0.1", rtcp)).expect("RTCP port is free");
    }
}
