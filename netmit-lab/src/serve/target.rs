//! Where to serve: an interface name or an IP address, resolved in the calling thread's
//! network namespace (interface addresses from `getifaddrs(3)`).
//!
//! An interface stands for its first IPv4 address that is not link-local, else its first
//! global IPv6 address: one address, so that replies leave from the address the requests
//! were sent to (an unconnected socket bound to the wildcard address would let routing
//! pick the source, and a client with a connected socket drops replies from any other).
//! An address stands for itself; the interface that holds it is looked up too, because
//! xsk mode needs it (kernel modes only report it).

use std::net::IpAddr;

use netmit_user::sys::{IfName, Netdev, ifaddr};

use super::ServeError;

/// A resolved place to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The interface: the one named, or the one holding the address (`None` for an
    /// address no interface holds, such as the unspecified address).
    pub iface: Option<Netdev>,
    /// The address to bind to.
    pub addr: IpAddr,
}

/// Resolves `spec`, an interface name or an IP address.
///
/// # Errors
///
/// [`ServeError::UnknownTarget`] if it is neither, [`ServeError::NoAddress`] for an
/// interface without a usable address, [`ServeError::Io`] if the addresses cannot be
/// listed. An address that is not local is only found out by `bind`
/// ([`ServeError::AddressNotLocal`]).
pub fn resolve(spec: &str) -> Result<Target, ServeError> {
    let spec = spec.trim();
    let addresses = || {
        ifaddr::addresses()
            .map_err(|e| ServeError::io("listing interface addresses (getifaddrs)", e))
    };
    if let Ok(addr) = spec.parse::<IpAddr>() {
        let iface = addresses()?
            .into_iter()
            .find(|(_, a)| *a == addr)
            .and_then(|(name, _)| Netdev::resolve(&name.parse().ok()?).ok());
        return Ok(Target { iface, addr });
    }
    let unknown = || ServeError::UnknownTarget(spec.to_string());
    let name: IfName = spec.parse().map_err(|_| unknown())?;
    let dev = Netdev::resolve(&name).map_err(|_| unknown())?;
    let addrs: Vec<IpAddr> = addresses()?
        .into_iter()
        .filter(|(n, _)| n == spec)
        .map(|(_, a)| a)
        .collect();
    let addr = pick_address(&addrs).ok_or_else(|| ServeError::NoAddress {
        iface: spec.to_string(),
    })?;
    Ok(Target {
        iface: Some(dev),
        addr,
    })
}

/// The address an interface stands for: the first IPv4 address that is not link-local,
/// else the first IPv6 address that is neither link-local nor loopback, else the first
/// IPv4 address. IPv6 link-local addresses are never picked (they need a scope id).
fn pick_address(addrs: &[IpAddr]) -> Option<IpAddr> {
    let v4 = || addrs.iter().copied().filter(IpAddr::is_ipv4);
    let global_v4 = v4().find(|a| matches!(a, IpAddr::V4(v) if !v.is_link_local()));
    let global_v6 = || {
        addrs
            .iter()
            .copied()
            .find(|a| matches!(a, IpAddr::V6(v) if !v.is_unicast_link_local() && !v.is_loopback()))
    };
    global_v4.or_else(global_v6).or_else(|| v4().next())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn an_interface_stands_for_its_first_routable_address() {
        let pick = |l: &[&str]| pick_address(&ips(l)).map(|a| a.to_string());
        assert_eq!(
            pick(&["fe80::1", "2001:db8::1", "198.18.0.1", "198.18.0.9"]).as_deref(),
            Some("198.18.0.1")
        );
        assert_eq!(
            pick(&["fe80::1", "169.254.1.1", "2001:db8::1"]).as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            pick(&["fe80::1", "169.254.1.1"]).as_deref(),
            Some("169.254.1.1")
        );
        assert_eq!(pick(&["fe80::1"]), None);
        assert_eq!(pick(&["127.0.0.1", "::1"]).as_deref(), Some("127.0.0.1"));
    }

    #[test]
    fn unknown_targets_and_loopback() {
        assert!(matches!(
            resolve("nmnosuch0"),
            Err(ServeError::UnknownTarget(n)) if n == "nmnosuch0"
        ));
        assert!(matches!(resolve(""), Err(ServeError::UnknownTarget(_))));
        let lo = resolve("lo").unwrap();
        assert_eq!(lo.addr, IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
        assert_eq!(lo.iface.as_ref().map(|d| d.name.as_str()), Some("lo"));
        let by_addr = resolve("127.0.0.1").unwrap();
        assert_eq!(by_addr.iface.as_ref().map(|d| d.ifindex), Some(1));
        let any = resolve("0.0.0.0").unwrap();
        assert_eq!(any.iface, None);
    }
}
