//! The device side of a bind: how many RX queues an interface has.
//!
//! The kernel accepts a bind to queue `q` when `q` is below the device's *active* queue
//! count (`real_num_rx_queues`, or the TX count if larger), and answers `EINVAL`
//! otherwise. Two sources, both netlink and so both answering for the caller's network
//! namespace (`/sys/class/net/IFACE/queues/rx-*` does not: sysfs shows the namespace it
//! was mounted in, and netmit enters namespaces with `setns` only):
//!
//! 1. netdev `queue-get` (Linux 6.8+, [`crate::sys::napi::queues`]) lists the active RX
//!    queues, but only of an interface that is up;
//! 2. rtnetlink `IFLA_NUM_RX_QUEUES` is the number of queues *allocated*, which can be
//!    more than are active: a veth allocates one per possible CPU and activates one.
//!
//! The first is used when it answers, the second otherwise.

use std::io;

use crate::sys::{
    Netdev, link,
    napi::{self, QueueKind},
};

/// Where a queue count came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum QueueSource {
    /// netdev queue-get: the active RX queues.
    Active,
    /// rtnetlink `IFLA_NUM_RX_QUEUES`: the allocated RX queues (an upper bound).
    Allocated,
}

/// Number of RX queues of `dev`, and where the number came from.
pub(crate) fn rx_queue_count(dev: &Netdev) -> io::Result<(u32, QueueSource)> {
    if let Ok(queues) = napi::queues(dev) {
        let active = queues
            .iter()
            .filter(|q| q.kind == QueueKind::Rx)
            .map(|q| q.id + 1)
            .max();
        if let Some(n) = active {
            return Ok((n, QueueSource::Active));
        }
    }
    let attrs = link::get(dev).map_err(io::Error::other)?;
    attrs
        .rx_queues
        .map(|n| (n, QueueSource::Allocated))
        .ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                "getlink reply without IFLA_NUM_RX_QUEUES",
            )
        })
}
