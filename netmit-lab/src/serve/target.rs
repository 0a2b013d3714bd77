//! Where to serve: an interface name or an IP address, resolved in the calling thread's
//! network namespace (interface addresses from `getifaddrs(3)`).
//!
//! An interface stands for its first IPv4 address that is not link-local, else its first
//! global IPv6 address: one address, so that replies leave from the address the requests
//! were sent to (an unconnected socket bound to the wildcard address would let routing
//! pick the source, and a client with a connected socket drops replies from any other).
//! An address stands for itself; the interface that holds it is looked up too, because
//! xsk mode needs it (kernel modes only report it).

use std::{
    ffi::{CStr, CString},
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use super::ServeError;

/// A resolved place to serve.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The interface: the one named, or the one holding the address (`None` for an
    /// address no interface holds, such as the unspecified address).
    pub iface: Option<String>,
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
    if let Ok(addr) = spec.parse::<IpAddr>() {
        let iface = interface_addresses()?
            .into_iter()
            .find(|(_, a)| *a == addr)
            .map(|(name, _)| name);
        return Ok(Target { iface, addr });
    }
    if !interface_exists(spec) {
        return Err(ServeError::UnknownTarget(spec.to_string()));
    }
    let addrs: Vec<IpAddr> = interface_addresses()?
        .into_iter()
        .filter(|(name, _)| name == spec)
        .map(|(_, a)| a)
        .collect();
    let addr = pick_address(&addrs).ok_or_else(|| ServeError::NoAddress {
        iface: spec.to_string(),
    })?;
    Ok(Target {
        iface: Some(spec.to_string()),
        addr,
    })
}

fn interface_exists(name: &str) -> bool {
    let Ok(c) = CString::new(name) else {
        return false;
    };
    // SAFETY: `c` is a valid NUL-terminated string.
    !name.is_empty() && unsafe { libc::if_nametoindex(c.as_ptr()) } != 0
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

/// Every (interface, address) pair of the calling thread's network namespace.
fn interface_addresses() -> Result<Vec<(String, IpAddr)>, ServeError> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list that is freed below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(ServeError::io(
            "listing interface addresses (getifaddrs)",
            io::Error::last_os_error(),
        ));
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
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        // SAFETY: ifa_addr points to a sockaddr whose family says which struct it is.
        let addr = match i32::from(unsafe { (*ifa.ifa_addr).sa_family }) {
            libc::AF_INET => {
                // SAFETY: AF_INET addresses are sockaddr_in.
                let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
                IpAddr::V4(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)))
            }
            libc::AF_INET6 => {
                // SAFETY: AF_INET6 addresses are sockaddr_in6.
                let sin6 = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in6) };
                IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr))
            }
            _ => continue,
        };
        out.push((name, addr));
    }
    // SAFETY: `ifap` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    Ok(out)
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
        assert_eq!(lo.addr, IpAddr::V4(Ipv4Addr::LOCALHOST));
        assert_eq!(lo.iface.as_deref(), Some("lo"));
        let by_addr = resolve("127.0.0.1").unwrap();
        assert_eq!(by_addr.iface.as_deref(), Some("lo"));
        let any = resolve("0.0.0.0").unwrap();
        assert_eq!(any.iface, None);
    }
}
