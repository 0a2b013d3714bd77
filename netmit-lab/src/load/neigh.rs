//! Finding the server's MAC address: the requests are built by hand (XDP, no kernel
//! stack), so the client needs what the kernel's neighbour table knows.
//!
//! First the route to the server is looked up (rtnetlink `RTM_GETROUTE`, as `ip route
//! get` does): there must be one, and through the client's interface; its gateway, if it
//! has one, is the neighbour whose MAC the frames need (a server behind a router is
//! reached through the router's MAC). Then the neighbour table is read (`RTM_GETNEIGH`
//! dump). If it has no usable entry, a UDP socket bound to the interface sends one empty
//! datagram to the server's discard port (9), which makes the kernel resolve the
//! neighbour by ARP or ND, and the table is read again every 10 ms. The server's kernel
//! answers that datagram with an ICMP port-unreachable at most: the server application
//! never sees it.
//!
//! (A socket bound to the interface cannot serve as the route check: when a lookup
//! restricted to an interface finds no route, the kernel assumes the destination is on
//! that link.)

use std::{
    io,
    net::{IpAddr, SocketAddr, UdpSocket},
    os::fd::AsFd,
    time::{Duration, Instant},
};

use netlink_bindings::{
    rt_neigh::{self, Ndmsg},
    rt_route::{self, Rtmsg},
};
use netlink_socket2::NetlinkSocket;
use netmit_user::sys::socket;

use super::LoadError;
use crate::r#gen::MacAddr;

/// Neighbour states with a usable link-layer address (`NUD_REACHABLE | NUD_STALE |
/// NUD_DELAY | NUD_PROBE | NUD_NOARP | NUD_PERMANENT`).
const NUD_VALID: u16 = 0x02 | 0x04 | 0x08 | 0x10 | 0x40 | 0x80;
/// The discard port: where the resolution datagram goes.
const DISCARD_PORT: u16 = 9;

/// The MAC address frames to `server` need on `iface` (the server's, or its gateway's),
/// resolving it if needed (up to `wait`).
pub(crate) fn resolve(
    iface: &str,
    ifindex: u32,
    server: IpAddr,
    wait: Duration,
) -> Result<MacAddr, LoadError> {
    let neighbour = route(iface, ifindex, server)?;
    if let Some(mac) = lookup(iface, ifindex, neighbour)? {
        return Ok(mac);
    }
    let sock = trigger_socket(iface, server)?;
    // The send itself may fail (EHOSTUNREACH once an earlier resolution failed); the
    // table says whether it worked.
    let _ = sock.send(&[]);
    let start = Instant::now();
    loop {
        std::thread::sleep(Duration::from_millis(10));
        if let Some(mac) = lookup(iface, ifindex, neighbour)? {
            return Ok(mac);
        }
        if start.elapsed() >= wait {
            return Err(LoadError::NoNeighbour {
                iface: iface.to_string(),
                neighbour,
                waited_ms: wait.as_millis() as u64,
            });
        }
    }
}

/// The neighbour that frames to `server` go to: the route's gateway, or the server
/// itself when it is on the link. The route must leave through `ifindex`.
fn route(iface: &str, ifindex: u32, server: IpAddr) -> Result<IpAddr, LoadError> {
    let no_route = |source: io::Error| LoadError::NoRoute {
        iface: iface.to_string(),
        server,
        source,
    };
    let header = Rtmsg {
        rtm_family: if server.is_ipv4() {
            libc::AF_INET as u8
        } else {
            libc::AF_INET6 as u8
        },
        rtm_dst_len: if server.is_ipv4() { 32 } else { 128 },
        ..Rtmsg::new()
    };
    let mut sock = NetlinkSocket::new();
    let mut request = rt_route::Request::new().op_getroute_do(&header);
    request.encode().push_dst(server);
    let mut replies = sock.request(&request).map_err(no_route)?;
    let (_, attrs) = replies
        .recv_one()
        .map_err(|e| no_route(io::Error::new(e.as_io_error().kind(), e.to_string())))?;
    let oif = attrs.get_oif().unwrap_or(0);
    if oif != ifindex {
        return Err(LoadError::OtherInterface {
            iface: iface.to_string(),
            server,
            ifindex: oif,
        });
    }
    Ok(attrs.get_gateway().unwrap_or(server))
}

/// A UDP socket bound to `iface` and connected to the server's discard port.
fn trigger_socket(iface: &str, server: IpAddr) -> Result<UdpSocket, LoadError> {
    let no_route = |source: io::Error| LoadError::NoRoute {
        iface: iface.to_string(),
        server,
        source,
    };
    let any: SocketAddr = match server {
        IpAddr::V4(_) => "0.0.0.0:0".parse().expect("valid"),
        IpAddr::V6(_) => "[::]:0".parse().expect("valid"),
    };
    let sock = UdpSocket::bind(any).map_err(no_route)?;
    socket::set_bytes(
        sock.as_fd(),
        libc::SOL_SOCKET,
        libc::SO_BINDTODEVICE,
        iface.as_bytes(),
    )
    .map_err(no_route)?;
    sock.connect(SocketAddr::new(server, DISCARD_PORT))
        .map_err(no_route)?;
    Ok(sock)
}

/// The table's usable entry for `server` on `ifindex`, if any.
fn lookup(iface: &str, ifindex: u32, server: IpAddr) -> Result<Option<MacAddr>, LoadError> {
    let err = |source: io::Error| LoadError::Neighbours {
        iface: iface.to_string(),
        source,
    };
    let header = Ndmsg {
        ndm_family: if server.is_ipv4() {
            libc::AF_INET as u8
        } else {
            libc::AF_INET6 as u8
        },
        ..Ndmsg::new()
    };
    let mut sock = NetlinkSocket::new();
    let request = rt_neigh::Request::new().op_getneigh_dump(&header);
    let mut replies = sock.request(&request).map_err(err)?;
    let mut found = None;
    while let Some(reply) = replies.recv() {
        let (hdr, attrs) =
            reply.map_err(|e| err(io::Error::new(e.as_io_error().kind(), e.to_string())))?;
        if found.is_some()
            || hdr.ndm_ifindex != ifindex as i32
            || hdr.ndm_state & NUD_VALID == 0
            || attrs.get_dst().ok() != Some(server)
        {
            continue;
        }
        found = attrs
            .get_lladdr()
            .ok()
            .and_then(|a| <[u8; 6]>::try_from(a).ok())
            .map(MacAddr);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_has_no_neighbours_and_routes_to_itself() {
        // The loopback device never has neighbour entries.
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(lookup("lo", 1, lo).unwrap(), None);
        // 127.0.0.1 is routed through lo (ifindex 1), without a gateway.
        assert_eq!(route("lo", 1, lo).unwrap(), lo);
        assert!(matches!(
            route("other", 999_999, lo),
            Err(LoadError::OtherInterface { ifindex: 1, .. })
        ));
    }
}
