//! What the generator needs to know about its interface, read in the calling thread's
//! network namespace: the device, its MAC address, MTU and transmit counters (rtnetlink,
//! [`netmit_user::sys::link`]), and a default source address ([`netmit_user::sys::ifaddr`]).

use std::net::IpAddr;

use netmit_user::sys::{IfName, Netdev, ifaddr, link};

use super::{GenError, MacAddr, report::IfaceCounters};

/// The link attributes the generator uses.
#[derive(Clone, Copy, Debug)]
pub(crate) struct LinkInfo {
    pub mac: Option<MacAddr>,
    pub mtu: u32,
    pub counters: IfaceCounters,
}

/// Resolves `iface` in the calling thread's network namespace.
pub(crate) fn resolve(iface: &str) -> Result<Netdev, GenError> {
    let unknown = || GenError::UnknownInterface(iface.to_string());
    let name: IfName = iface.parse().map_err(|_| unknown())?;
    Netdev::resolve(&name).map_err(|_| unknown())
}

/// Reads MAC, MTU and transmit counters of `dev`.
pub(crate) fn link_info(dev: &Netdev) -> Result<LinkInfo, GenError> {
    let attrs = link::get(dev).map_err(|e| GenError::Netlink {
        iface: dev.name.to_string(),
        source: std::io::Error::other(netmit_user::error::chain(&e)),
    })?;
    Ok(LinkInfo {
        mac: attrs.mac.map(MacAddr),
        mtu: attrs.mtu,
        counters: IfaceCounters {
            tx_packets: attrs.counters.tx_packets,
            tx_bytes: attrs.counters.tx_bytes,
            tx_dropped: attrs.counters.tx_dropped,
            tx_errors: attrs.counters.tx_errors,
        },
    })
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
    let addrs = ifaddr::of(iface).map_err(|source| GenError::Addresses {
        iface: iface.to_string(),
        source,
    })?;
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
            resolve("nmnosuch0"),
            Err(GenError::UnknownInterface(n)) if n == "nmnosuch0"
        ));
        assert!(resolve("bad\0name").is_err());
        assert!(resolve("lo").is_ok());
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
