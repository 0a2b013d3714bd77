//! The IP addresses of the calling thread's network namespace, per interface
//! (`getifaddrs(3)`).

use std::{
    ffi::CStr,
    io,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

/// Every (interface name, address) pair of the calling thread's network namespace, in the
/// order the kernel lists them.
///
/// # Errors
///
/// The error of `getifaddrs`.
pub fn addresses() -> io::Result<Vec<(String, IpAddr)>> {
    let mut out = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list that is freed below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return Err(io::Error::last_os_error());
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

/// The addresses of one interface.
///
/// # Errors
///
/// As [`addresses`].
pub fn of(iface: &str) -> io::Result<Vec<IpAddr>> {
    Ok(addresses()?
        .into_iter()
        .filter(|(n, _)| n == iface)
        .map(|(_, a)| a)
        .collect())
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_has_its_address() {
        let lo = super::of("lo").unwrap();
        assert!(lo.contains(&"127.0.0.1".parse().unwrap()), "{lo:?}");
    }
}
