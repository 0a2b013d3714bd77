//! Registering a socket in netmit's XSKMAP, so that the steering program redirects the
//! `action=xsk` packets of its queue to it.
//!
//! The map is pinned by `netmit attach` in the device's attachment directory
//! (`/sys/fs/bpf/netmit/netns-COOKIE/IFINDEX/NETMIT_XSKS`, [`crate::ebpf::pins`]) and
//! keyed by RX queue index. A registration remembers the attachment's link, so that a
//! socket can tell when netmit was detached under it ([`RegistrationState`]).
//!
//! # Removal
//!
//! An XSKMAP entry cannot be read back from user space (the kernel answers lookups with
//! `EOPNOTSUPP`), so user space cannot check that an entry still refers to a given socket
//! before deleting it. The kernel can: when an AF_XDP socket is released, it removes the
//! socket from every XSKMAP slot that *still* holds it, under the map's lock, and leaves
//! slots that were overwritten since alone (`xsk_delete_from_maps` in `net/xdp/xsk.c`).
//! Dropping an [`super::XskSocket`] therefore unregisters it exactly when it should, with
//! no race against a newer socket registered at the same queue; it issues no delete of
//! its own. [`super::XskSocket::unregister`] exists for taking a live socket out of the
//! data path, and deletes the slot unconditionally.

use std::io;

use aya::maps::MapError;

use super::XskError;
use crate::{
    ebpf::{PinLayout, PinRoot, SteerTables, TableError},
    sys::{Netdev, bpf},
};

/// Where a socket is registered: the attachment (by its link, which `netmit attach`
/// creates anew with new maps every time) and the slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Registration {
    pub layout: PinLayout,
    pub link_id: u32,
    pub index: u32,
}

/// Whether a socket still receives what netmit steers to its queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum RegistrationState {
    /// Not registered (never, or [`super::XskSocket::unregister`]ed).
    Unregistered,
    /// In the XSKMAP of the attachment that runs on the device.
    Current,
    /// netmit was detached from the device, or the device went away: no netmit program
    /// redirects to the socket any more.
    Detached,
    /// netmit was detached and attached again: the new program has a new XSKMAP, and the
    /// socket is not in it. [`super::XskSocket::register`] puts it there.
    Replaced,
}

impl RegistrationState {
    /// Whether the steering program can still redirect packets to the socket.
    pub fn is_current(self) -> bool {
        self == RegistrationState::Current
    }
}

/// Where `reg` stands now. Reads pins and link info only.
pub(crate) fn state(dev: &Netdev, reg: &Registration) -> Result<RegistrationState, XskError> {
    let layout = match PinRoot::default().find(dev) {
        Ok(Some(layout)) => layout,
        Ok(None) => return Ok(RegistrationState::Detached),
        Err(e) => {
            return Err(XskError::NotAttached {
                iface: dev.name.to_string(),
                note: format!(" ({e})"),
            });
        }
    };
    Ok(match bpf::pinned_link_info(&layout.link()) {
        // Unpinned between the two reads, or defunct (its device is gone).
        Err(_) => RegistrationState::Detached,
        Ok(link) if link.ifindex == 0 => RegistrationState::Detached,
        Ok(link) if link.id == reg.link_id && layout == reg.layout => RegistrationState::Current,
        Ok(_) => RegistrationState::Replaced,
    })
}

/// Opens the pinned maps of `dev` and checks that they belong to it.
fn open_tables(dev: &Netdev, queue: u32) -> Result<(SteerTables, PinLayout), XskError> {
    let (iface, ifindex) = (dev.name.as_str(), dev.ifindex);
    let layout = match PinRoot::default().find(dev) {
        Ok(Some(layout)) => layout,
        Ok(None) => {
            return Err(XskError::NotAttached {
                iface: iface.into(),
                note: String::new(),
            });
        }
        Err(e) => {
            return Err(XskError::NotAttached {
                iface: iface.into(),
                note: format!(" ({e})"),
            });
        }
    };
    let map_err = |source: TableError| XskError::Map {
        iface: iface.into(),
        queue,
        source: Box::new(source),
    };
    let tables = SteerTables::from_pins(&layout).map_err(|e| match e {
        TableError::MissingMap { name, path } => XskError::NotAttached {
            iface: iface.into(),
            note: format!(" (its pins are incomplete: {name} missing at {path})"),
        },
        e => map_err(e),
    })?;
    let pinned = tables.config().map_err(map_err)?.ifindex;
    if pinned != ifindex {
        return Err(XskError::NotAttached {
            iface: iface.into(),
            note: format!(
                " (the pins at {} belong to interface index {pinned}, not to this \
                 namespace's {iface} with index {ifindex})",
                layout.dir().display()
            ),
        });
    }
    Ok((tables, layout))
}

fn syscall_errno(e: &TableError) -> Option<i32> {
    match e {
        TableError::Map {
            source: MapError::SyscallError(s),
            ..
        } => s.io_error.raw_os_error(),
        _ => None,
    }
}

/// Maps a failed map write to the error to report.
fn write_error(iface: &str, queue: u32, step: &str, source: TableError) -> XskError {
    match syscall_errno(&source) {
        Some(errno @ (libc::EPERM | libc::EACCES)) => {
            XskError::os(iface, queue, step, io::Error::from_raw_os_error(errno))
        }
        _ => XskError::Map {
            iface: iface.into(),
            queue,
            source: Box::new(source),
        },
    }
}

/// Puts `fd` into the XSKMAP of `iface` at index `queue`.
pub(crate) fn register(
    dev: &Netdev,
    queue: u32,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Result<Registration, XskError> {
    let iface = dev.name.as_str();
    let (mut tables, layout) = open_tables(dev, queue)?;
    let link_id = bpf::pinned_link_info(&layout.link())
        .map_err(|e| XskError::NotAttached {
            iface: iface.into(),
            note: format!(" (its link pin cannot be read: {e})"),
        })?
        .id;
    let xsks = tables.xsks_mut();
    if queue >= xsks.len() {
        return Err(XskError::QueueOutOfRange {
            iface: iface.into(),
            queue,
            queues: xsks.len(),
        });
    }
    xsks.set(queue, fd, 0).map_err(|e| {
        write_error(
            iface,
            queue,
            "XSKMAP update",
            TableError::Map {
                name: netmit_common::names::MAP_XSKS,
                source: e,
            },
        )
    })?;
    Ok(Registration {
        layout,
        link_id,
        index: queue,
    })
}

/// Deletes the XSKMAP slot of a registration (unconditionally: see the module docs).
/// A slot that is already empty is not an error.
pub(crate) fn unregister(dev: &Netdev, reg: &Registration) -> Result<(), XskError> {
    let iface = dev.name.as_str();
    let (mut tables, _) = open_tables(dev, reg.index)?;
    match tables.xsks_mut().unset(reg.index) {
        Ok(()) => Ok(()),
        Err(MapError::SyscallError(s)) if s.io_error.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        Err(e) => Err(write_error(
            iface,
            reg.index,
            "XSKMAP delete",
            TableError::Map {
                name: netmit_common::names::MAP_XSKS,
                source: e,
            },
        )),
    }
}
