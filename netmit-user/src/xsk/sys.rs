//! The AF_XDP system calls the `xdp` crate does not make for us: `XDP_MMAP_OFFSETS` and
//! `XDP_OPTIONS`, busy-poll socket options, the `recvfrom`/`sendto` kicks, `poll(2)`.
//! Constants are from the kernel's uapi (`linux/if_xdp.h`, `asm-generic/socket.h`).

use std::{io, mem, os::fd::RawFd, ptr};

/// `SOL_XDP`.
pub(crate) const SOL_XDP: libc::c_int = 283;
const XDP_MMAP_OFFSETS: libc::c_int = 1;
const XDP_OPTIONS: libc::c_int = 8;
const XDP_OPTIONS_ZEROCOPY: u32 = 1 << 0;
/// `XDP_RING_NEED_WAKEUP` in a ring's flags word.
pub(crate) const XDP_RING_NEED_WAKEUP: u32 = 1 << 0;

/// mmap page offsets of the four rings.
pub(crate) const XDP_PGOFF_RX_RING: libc::off_t = 0;
pub(crate) const XDP_PGOFF_TX_RING: libc::off_t = 0x8000_0000;
pub(crate) const XDP_UMEM_PGOFF_FILL_RING: libc::off_t = 0x1_0000_0000;

const SO_BUSY_POLL: libc::c_int = 46;
const SO_INCOMING_NAPI_ID: libc::c_int = 56;
const SO_PREFER_BUSY_POLL: libc::c_int = 69;
const SO_BUSY_POLL_BUDGET: libc::c_int = 70;

/// `struct xdp_ring_offset`: where a ring's words live in its mapping.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct RingOffset {
    pub producer: u64,
    pub consumer: u64,
    pub desc: u64,
    pub flags: u64,
}

/// `struct xdp_mmap_offsets`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MmapOffsets {
    pub rx: RingOffset,
    pub tx: RingOffset,
    pub fill: RingOffset,
    pub completion: RingOffset,
}

fn getsockopt<T: Default>(fd: RawFd, level: libc::c_int, opt: libc::c_int) -> io::Result<T> {
    let mut value = T::default();
    let mut len = mem::size_of::<T>() as libc::socklen_t;
    // SAFETY: `value` is a writable, plain-data `T` of `len` bytes; the kernel writes at
    // most `len` bytes and reports how many.
    let rc = unsafe { libc::getsockopt(fd, level, opt, (&raw mut value).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    if len as usize != mem::size_of::<T>() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "getsockopt {opt}: kernel returned {len} bytes, expected {}",
                mem::size_of::<T>()
            ),
        ));
    }
    Ok(value)
}

fn setsockopt_int(fd: RawFd, level: libc::c_int, opt: libc::c_int, value: i32) -> io::Result<()> {
    // SAFETY: a pointer to a live c_int and its size.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            opt,
            (&raw const value).cast(),
            mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The ring offsets of a socket whose rings are sized (`XDP_MMAP_OFFSETS`).
pub(crate) fn mmap_offsets(fd: RawFd) -> io::Result<MmapOffsets> {
    getsockopt(fd, SOL_XDP, XDP_MMAP_OFFSETS)
}

/// Whether a bound socket runs in zero-copy mode (`XDP_OPTIONS`).
pub(crate) fn is_zero_copy(fd: RawFd) -> io::Result<bool> {
    getsockopt::<u32>(fd, SOL_XDP, XDP_OPTIONS).map(|flags| flags & XDP_OPTIONS_ZEROCOPY != 0)
}

/// The NAPI id the socket is served by (`SO_INCOMING_NAPI_ID`; 0 for none).
pub(crate) fn napi_id(fd: RawFd) -> io::Result<u32> {
    getsockopt(fd, libc::SOL_SOCKET, SO_INCOMING_NAPI_ID)
}

/// Sets the three busy-poll options; returns the option that failed.
pub(crate) fn set_busy_poll(
    fd: RawFd,
    bp: &super::BusyPoll,
) -> Result<(), (&'static str, io::Error)> {
    let set = |name, opt, value: u32| {
        setsockopt_int(fd, libc::SOL_SOCKET, opt, value as i32).map_err(|e| (name, e))
    };
    set(
        "setsockopt(SO_PREFER_BUSY_POLL)",
        SO_PREFER_BUSY_POLL,
        u32::from(bp.prefer),
    )?;
    set("setsockopt(SO_BUSY_POLL)", SO_BUSY_POLL, bp.usecs)?;
    set(
        "setsockopt(SO_BUSY_POLL_BUDGET)",
        SO_BUSY_POLL_BUDGET,
        bp.budget,
    )
}

/// Maps the first `len` bytes of a ring read-only (the socket must not be bound yet:
/// the kernel refuses ring mappings of a bound socket with `EBUSY`).
pub(crate) fn mmap_ring(fd: RawFd, pgoff: libc::off_t, len: usize) -> io::Result<*mut u8> {
    // SAFETY: a fresh shared mapping of the socket's ring; nothing else is affected, and
    // the caller unmaps it with `len`.
    let ptr = unsafe {
        libc::mmap(
            ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_SHARED | libc::MAP_POPULATE,
            fd,
            pgoff,
        )
    };
    if ptr == libc::MAP_FAILED {
        Err(io::Error::last_os_error())
    } else {
        Ok(ptr.cast())
    }
}

/// What a kick (`sendto`/`recvfrom` with no data) came back with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Kick {
    /// The kernel did what it could.
    Done,
    /// The kernel stopped early (`EAGAIN`, `EBUSY`, `ENOBUFS`, `EINTR`): room is
    /// needed in the completion ring, or its TX budget per call (32 frames in copy mode)
    /// ran out; call again.
    Again,
}

/// Classifies the result of a kick the way libxdp's samples do: these errors mean
/// "try again", not failure. `ENETDOWN` too: the interface went down, frames stay queued.
fn classify_kick(rc: isize) -> io::Result<Kick> {
    if rc >= 0 {
        Ok(Kick::Done)
    } else {
        classify_kick_error(io::Error::last_os_error())
    }
}

/// The error half of [`classify_kick`].
pub(crate) fn classify_kick_error(err: io::Error) -> io::Result<Kick> {
    match err.raw_os_error() {
        Some(libc::EAGAIN | libc::EBUSY | libc::ENOBUFS | libc::EINTR | libc::ENETDOWN) => {
            Ok(Kick::Again)
        }
        _ => Err(err),
    }
}

/// `sendto(fd, NULL, 0, MSG_DONTWAIT)`: makes the kernel process the TX ring.
pub(crate) fn kick_tx(fd: RawFd) -> io::Result<Kick> {
    // SAFETY: no buffer and no address are passed; the call only reads `fd`.
    let rc = unsafe { libc::sendto(fd, ptr::null(), 0, libc::MSG_DONTWAIT, ptr::null(), 0) };
    classify_kick(rc)
}

/// `recvfrom(fd, NULL, 0, MSG_DONTWAIT)`: wakes the driver to refill from the fill ring
/// and, with busy polling, runs the queue's NAPI instance in this thread.
pub(crate) fn kick_rx(fd: RawFd) -> io::Result<Kick> {
    // SAFETY: no buffer and no address are passed; the call only reads `fd`.
    let rc = unsafe {
        libc::recvfrom(
            fd,
            ptr::null_mut(),
            0,
            libc::MSG_DONTWAIT,
            ptr::null_mut(),
            ptr::null_mut(),
        )
    };
    classify_kick(rc)
}

/// `poll(2)` for `POLLIN`; `Ok(false)` on timeout or `EINTR`.
pub(crate) fn poll_in(fd: RawFd, timeout_ms: libc::c_int) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    let rc = unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
    if rc < 0 {
        let err = io::Error::last_os_error();
        return if err.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(err)
        };
    }
    Ok(rc > 0 && pfd.revents & libc::POLLIN != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_errors() {
        for errno in [
            libc::EAGAIN,
            libc::EBUSY,
            libc::ENOBUFS,
            libc::EINTR,
            libc::ENETDOWN,
        ] {
            let r = classify_kick_error(io::Error::from_raw_os_error(errno));
            assert_eq!(r.unwrap(), Kick::Again, "errno {errno}");
        }
        for errno in [libc::ENXIO, libc::EINVAL, libc::EBADF] {
            let r = classify_kick_error(io::Error::from_raw_os_error(errno));
            assert_eq!(r.unwrap_err().raw_os_error(), Some(errno));
        }
    }

    #[test]
    fn struct_sizes_match_the_uapi() {
        assert_eq!(mem::size_of::<RingOffset>(), 32);
        assert_eq!(mem::size_of::<MmapOffsets>(), 128);
    }
}
