//! What the generator needs to know about its interface, read in the calling thread's
//! network namespace: index, MAC address, MTU and transmit counters (rtnetlink
//! `RTM_GETLINK`), and a default source address (`getifaddrs(3)`).

use std::{
    ffi::{CStr, CString},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use netlink_bindings::rt_link::{self, Ifinfomsg};
use netlink_socket2::NetlinkSocket;

use super::{GenError, MacAddr, report::IfaceCounters};

/// The link attributes the generator uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub counters: IfaceCounters,
}

/// Resolves `iface` in the calling thread's network namespace.
pub(crate) fn ifindex(iface: &str) -> Result<u32, GenError> {
    let unknown = || GenError::UnknownInterface(iface.to_string());
    let c = CString::new(iface).map_err(|_| unknown())?;
    // SAFETY: `c` is a valid NUL-terminated string.
    match unsafe { libc::if_nametoindex(c.as_ptr()) } {
        0 => Err(unknown()),
        i => Ok(i),
    }
}

/// Reads MAC, MTU and transmit counters of `ifindex`.
pub(crate) fn link_info(iface: &str, ifindex: u32) -> Result<LinkInfo, GenError> {
    let err = |source: io::Error| GenError::Netlink {
        iface: iface.to_string(),
        source,
    };
    let mut sock = NetlinkSocket::new();
    let header = Ifinfomsg {
        ifi_index: ifindex as i32,
        ..Ifinfomsg::new()
    };
    let request = rt_link::Request::new().op_getlink_do(&header);
    let mut replies = sock.request(&request).map_err(err)?;
    let (_, attrs) = replies
        .recv_one()
        .map_err(|e| err(io::Error::new(e.as_io_error().kind(), e.to_string())))?;
    let mac = attrs
        .get_address()
        .ok()
        .and_then(|a| <[u8; 6]>::try_from(a).ok())
        .map(MacAddr);
    let mtu = attrs.get_mtu().unwrap_or(1500);
    let counters = attrs
        .get_stats64()
        .map(|s| IfaceCounters {
            tx_packets: s.tx_packets,
            tx_bytes: s.tx_bytes,
            tx_dropped: s.tx_dropped,
            tx_errors: s.tx_errors,
        })
        .unwrap_or_default();
    Ok(LinkInfo { mac, mtu, counters })
}

/// Counter deltas, tolerating counters that went backwards (a device reset).
pub(crate) fn delta(before: &IfaceCounters, after: &IfaceCounters) -> IfaceCounters {
    IfaceCounters {
        tx_packets: after.tx_packets.saturating_sub(before.tx_packets),
        tx_bytes: after.tx_bytes.saturating_sub(before.tx_bytes),
        tx_dropped: after.tx_dropped.saturating_sub(before.tx_dropped),
        tx_errors: after.tx_errors.saturating_sub(before.tx_errors),
    }
}

/// An address of `iface` of the same family as `like`: the first global one, else any.
pub(crate) fn source_address(iface: &str, like: IpAddr) -> Result<IpAddr, GenError> {
    let mut addrs = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(GenError::Addresses {
            iface: iface.to_string(),
            source: io::Error::last_os_error(),
        });
    }
    let mut cur = ifap;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        cur = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
            continue;
        }
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        if unsafe { CStr::from_ptr(ifa.ifa_name) }.to_bytes() != iface.as_bytes() {
            continue;
        }
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                addrs.push(IpAddr::V4(Ipv4Addr::from(u32::from_be(
                    sin.sin_addr.s_addr,
                ))));
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                addrs.push(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)));
            }
            _ => {}
        }
    }
    // SAFETY: `ifap` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    pick_source(&addrs, like).ok_or_else(|| GenError::NoSourceAddress {
        iface: iface.to_string(),
        family: if like.is_ipv4() { "IPv4" } else { "IPv6" },
    })
}

fn pick_source(addrs: &[IpAddr], like: IpAddr) -> Option<IpAddr> {
    let same = || {
        addrs
            .iter()
            .copied()
            .filter(|a| a.is_ipv4() == like.is_ipv4())
    };
    let link_local = |a: &IpAddr| match a {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_unicast_link_local(),
    };
    same().find(|a| !link_local(a)).or_else(|| same().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_prefers_global_of_the_same_family() {
        let addrs: Vec<IpAddr> = ["fe80::1", "198.18.0.2", "2001:db8::2"]
            .iter()
            .map(|a| a.parse().unwrap())
            .collect();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        let v4: IpAddr = "198.18.0.1".parse().unwrap();
        assert_eq!(
            pick_source(&addrs, v6),
            Some("2001:db8::2".parse().unwrap())
        );
        assert_eq!(pick_source(&addrs, v4), Some("198.18.0.2".parse().unwrap()));
        assert_eq!(
            pick_source(&addrs[..1], v6),
            Some("fe80::1".parse().unwrap())
        );
        assert_eq!(pick_source(&addrs[..1], v4), None);
    }

    #[test]
    fn unknown_interface() {
        assert!(matches!(
            ifindex("nmnosuch0"),
            Err(GenError::UnknownInterface(n)) if n == "nmnosuch0"
        ));
        assert!(ifindex("bad\0name").is_err());
        assert!(ifindex("lo").is_ok());
    }

    #[test]
    fn deltas_saturate() {
        let a = IfaceCounters {
            tx_packets: 10,
            tx_bytes: 5,
            tx_dropped: 1,
            tx_errors: 0,
        };
        let b = IfaceCounters {
            tx_packets: 15,
            tx_bytes: 4,
            tx_dropped: 1,
            tx_errors: 2,
        };
        assert_eq!(
            delta(&a, &b),
            IfaceCounters {
                tx_packets: 5,
                tx_bytes: 0,
                tx_dropped: 0,
                tx_errors: 2
            }
        );
    }
}
