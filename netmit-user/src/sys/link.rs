//! A device as rtnetlink (`RTM_GETLINK`) reports it: MAC address, MTU, counters and the
//! XDP program attached, and removing a netlink-attached XDP program.
//!
//! Requests go through `netlink-bindings`, whose rt-link family is generated from the
//! kernel's YNL spec; the XDP state is the same view `ip -d link` prints, and it sees
//! programs attached both through netlink and through bpf_link. Requests act in the
//! calling thread's network namespace, so every function takes a [`Netdev`] and checks
//! that the thread is in the device's namespace first.

use std::io;

use netlink_bindings::rt_link::{self, Ifinfomsg};
use netlink_socket2::NetlinkSocket;

use super::netdev::{Netdev, NetdevError};

/// Errors of rtnetlink requests.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LinkError {
    /// The device is not (or no longer) in the calling thread's namespace.
    #[error(transparent)]
    Netdev(#[from] NetdevError),
    /// A netlink request failed.
    #[error("netlink {what} for {dev}")]
    Netlink {
        /// The request.
        what: &'static str,
        /// The device.
        dev: String,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// How an XDP program is attached, as `IFLA_XDP_ATTACHED` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttached {
    /// Native (driver) mode.
    Driver,
    /// Generic (skb) mode.
    Generic,
    /// Offloaded to the NIC.
    Hardware,
    /// Several programs in different modes.
    Multi,
}

impl XdpAttached {
    /// The mode's name as `ip link` prints it.
    pub fn name(self) -> &'static str {
        match self {
            XdpAttached::Driver => "native",
            XdpAttached::Generic => "generic",
            XdpAttached::Hardware => "offloaded",
            XdpAttached::Multi => "multi",
        }
    }
}

/// The XDP program on an interface.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct XdpState {
    /// Attachment mode.
    pub attached: XdpAttached,
    /// Program id (the first one reported in multi mode).
    pub prog_id: u32,
}

/// Transmit and receive counters (`IFLA_STATS64`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LinkCounters {
    /// Packets received.
    pub rx_packets: u64,
    /// Packets sent.
    pub tx_packets: u64,
    /// Bytes sent.
    pub tx_bytes: u64,
    /// Packets dropped on transmit.
    pub tx_dropped: u64,
    /// Transmit errors.
    pub tx_errors: u64,
}

/// What `RTM_GETLINK` says of one device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LinkAttrs {
    /// Hardware address, when it is a 6-byte one.
    pub mac: Option<[u8; 6]>,
    /// MTU.
    pub mtu: u32,
    /// Counters.
    pub counters: LinkCounters,
    /// Number of RX queues (`IFLA_NUM_RX_QUEUES`: allocated, not necessarily in use).
    pub rx_queues: Option<u32>,
    /// The XDP program, if one is attached.
    pub xdp: Option<XdpState>,
}

fn netlink_err<'a>(
    what: &'static str,
    dev: &'a Netdev,
) -> impl FnOnce(io::Error) -> LinkError + 'a {
    move |source| LinkError::Netlink {
        what,
        dev: dev.to_string(),
        source,
    }
}

/// Reads the device's link attributes.
///
/// # Errors
///
/// [`LinkError::Netdev`] from another namespace, [`LinkError::Netlink`] when the request
/// fails (the device is gone, for one).
pub fn get(dev: &Netdev) -> Result<LinkAttrs, LinkError> {
    dev.check_here()?;
    let mut sock = NetlinkSocket::new();
    let header = Ifinfomsg {
        ifi_index: dev.ifindex as i32,
        ..Ifinfomsg::new()
    };
    let request = rt_link::Request::new().op_getlink_do(&header);
    let mut replies = sock
        .request(&request)
        .map_err(netlink_err("getlink", dev))?;
    let (_, attrs) = replies.recv_one().map_err(|e| {
        netlink_err("getlink", dev)(io::Error::new(e.as_io_error().kind(), e.to_string()))
    })?;
    let xdp = attrs.get_xdp().ok().and_then(|xdp| {
        let attached = match xdp.get_attached().unwrap_or(0) {
            1 => XdpAttached::Driver,
            2 => XdpAttached::Generic,
            3 => XdpAttached::Hardware,
            4 => XdpAttached::Multi,
            _ => return None,
        };
        let prog_id = xdp
            .get_prog_id()
            .or_else(|_| xdp.get_drv_prog_id())
            .or_else(|_| xdp.get_skb_prog_id())
            .unwrap_or(0);
        Some(XdpState { attached, prog_id })
    });
    Ok(LinkAttrs {
        mac: attrs
            .get_address()
            .ok()
            .and_then(|a| <[u8; 6]>::try_from(a).ok()),
        mtu: attrs.get_mtu().unwrap_or(1500),
        counters: attrs
            .get_stats64()
            .map(|s| LinkCounters {
                rx_packets: s.rx_packets,
                tx_packets: s.tx_packets,
                tx_bytes: s.tx_bytes,
                tx_dropped: s.tx_dropped,
                tx_errors: s.tx_errors,
            })
            .unwrap_or_default(),
        rx_queues: attrs.get_num_rx_queues().ok(),
        xdp,
    })
}

/// The XDP program attached to the device, if any.
///
/// # Errors
///
/// As [`get`].
pub fn xdp_state(dev: &Netdev) -> Result<Option<XdpState>, LinkError> {
    get(dev).map(|a| a.xdp)
}

/// Removes a netlink-attached XDP program (what `ip link set dev X xdp off` does).
///
/// # Errors
///
/// As [`get`].
pub fn netlink_detach(dev: &Netdev, attached: XdpAttached) -> Result<(), LinkError> {
    const XDP_FLAGS_SKB_MODE: u32 = 1 << 1;
    const XDP_FLAGS_DRV_MODE: u32 = 1 << 2;
    dev.check_here()?;
    let flags = match attached {
        XdpAttached::Generic => XDP_FLAGS_SKB_MODE,
        XdpAttached::Driver => XDP_FLAGS_DRV_MODE,
        _ => 0,
    };
    let mut sock = NetlinkSocket::new();
    let header = Ifinfomsg {
        ifi_index: dev.ifindex as i32,
        ..Ifinfomsg::new()
    };
    let mut request = rt_link::Request::new().op_setlink_do(&header);
    request
        .encode()
        .nested_xdp()
        .push_fd(-1)
        .push_flags(flags)
        .end_nested();
    sock.request(&request)
        .map_err(netlink_err("setlink xdp off", dev))?
        .recv_ack()
        .map_err(|e| netlink_err("setlink xdp off", dev)(e.as_io_error().kind().into()))?;
    Ok(())
}
