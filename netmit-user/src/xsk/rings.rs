//! Read-only views of the four rings' producer, consumer and flags words.
//!
//! The `xdp` crate maps the rings and moves their indices, but keeps the words private
//! and does not map the `flags` word at all, so it cannot say whether the kernel has set
//! `XDP_RING_NEED_WAKEUP`, how many TX descriptors the kernel has not consumed yet, or
//! whether the RX ring holds frames without consuming them. [`RingWords`] maps the head
//! of each ring a second time, read-only, before the socket is bound (the kernel refuses
//! ring mappings afterwards), and answers exactly those questions. Ring indices are
//! free-running `u32` counters, so every difference is a wrapping subtraction.

use std::{
    io,
    os::fd::RawFd,
    sync::atomic::{AtomicU32, Ordering},
};

use super::sys::{self, MmapOffsets, RingOffset, XDP_RING_NEED_WAKEUP};

/// Entries between a consumer and a producer index (free-running `u32` counters).
pub(crate) fn used(producer: u32, consumer: u32) -> u32 {
    producer.wrapping_sub(consumer)
}

/// Free entries of a ring of `size` entries.
pub(crate) fn free(size: u32, producer: u32, consumer: u32) -> u32 {
    size.saturating_sub(used(producer, consumer))
}

/// The head of one ring, mapped read-only.
pub(crate) struct RingHead {
    base: *mut u8,
    len: usize,
    producer: usize,
    consumer: usize,
    flags: usize,
    size: u32,
}

// SAFETY: the mapping belongs to this value alone and is only read through atomics, so
// moving it to another thread is fine; the words are shared with the kernel, which is
// what the atomics are for.
unsafe impl Send for RingHead {}

impl RingHead {
    fn map(fd: RawFd, pgoff: libc::off_t, off: &RingOffset, size: u32) -> io::Result<Self> {
        // The descriptors start after the three words; mapping up to there covers them.
        let len = usize::try_from(off.desc).map_err(|_| io::ErrorKind::InvalidData)?;
        let last = off.producer.max(off.consumer).max(off.flags) + 4;
        if len == 0
            || last > off.desc
            || !off.producer.is_multiple_of(4)
            || !off.consumer.is_multiple_of(4)
            || !off.flags.is_multiple_of(4)
        {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("unexpected ring offsets {off:?}"),
            ));
        }
        let base = sys::mmap_ring(fd, pgoff, len)?;
        Ok(Self {
            base,
            len,
            producer: off.producer as usize,
            consumer: off.consumer as usize,
            flags: off.flags as usize,
            size,
        })
    }

    fn word(&self, offset: usize) -> u32 {
        // SAFETY: `offset` is 4-aligned and `offset + 4 <= len` (checked in `map`); the
        // page is mapped for as long as `self` lives; the kernel and the `xdp` crate
        // access the word atomically too.
        unsafe { AtomicU32::from_ptr(self.base.add(offset).cast()) }.load(Ordering::Acquire)
    }

    /// The producer index.
    pub(crate) fn producer(&self) -> u32 {
        self.word(self.producer)
    }

    /// The consumer index.
    pub(crate) fn consumer(&self) -> u32 {
        self.word(self.consumer)
    }

    /// Entries produced and not consumed yet.
    pub(crate) fn used(&self) -> u32 {
        used(self.producer(), self.consumer())
    }

    /// Entries a producer may still add.
    pub(crate) fn free(&self) -> u32 {
        free(self.size, self.producer(), self.consumer())
    }

    /// Whether the kernel set `XDP_RING_NEED_WAKEUP` (only with `XDP_USE_NEED_WAKEUP`).
    pub(crate) fn needs_wakeup(&self) -> bool {
        self.word(self.flags) & XDP_RING_NEED_WAKEUP != 0
    }
}

impl Drop for RingHead {
    fn drop(&mut self) {
        // SAFETY: unmapping exactly the region `map` created; nothing refers to it after.
        unsafe { libc::munmap(self.base.cast(), self.len) };
    }
}

/// Heads of the RX, TX and fill rings (the completion ring needs none: the `xdp` crate
/// consumes it in full each time).
pub(crate) struct RingWords {
    pub rx: RingHead,
    pub tx: RingHead,
    pub fill: RingHead,
}

impl RingWords {
    /// Maps the ring heads of an unbound socket whose rings are sized.
    pub(crate) fn map(fd: RawFd, cfg: &super::XskConfig) -> io::Result<Self> {
        let off: MmapOffsets = sys::mmap_offsets(fd)?;
        Ok(Self {
            rx: RingHead::map(fd, sys::XDP_PGOFF_RX_RING, &off.rx, cfg.rx_ring)?,
            tx: RingHead::map(fd, sys::XDP_PGOFF_TX_RING, &off.tx, cfg.tx_ring)?,
            fill: RingHead::map(fd, sys::XDP_UMEM_PGOFF_FILL_RING, &off.fill, cfg.fill_ring)?,
        })
    }
}

/// The two rings user space produces into. The `xdp` crate has a plain and a "wakable"
/// type of each, and binds with `XDP_USE_NEED_WAKEUP` only when the wakable ones are
/// built; both are used here with the crate's own wakeup off, because the socket decides
/// about wakeups from the flags word (see [`RingHead::needs_wakeup`]).
pub(crate) enum Producers {
    /// Built with `build_rings`: bound without `XDP_USE_NEED_WAKEUP`.
    Plain {
        fill: xdp::FillRing,
        tx: xdp::TxRing,
    },
    /// Built with `build_wakable_rings`: bound with `XDP_USE_NEED_WAKEUP`.
    Wakable {
        fill: xdp::WakableFillRing,
        tx: xdp::WakableTxRing,
    },
}

impl Producers {
    /// Moves up to `n` frames from the UMEM's free list to the fill ring.
    ///
    /// # Safety
    ///
    /// `umem` must be the UMEM registered with this socket and must outlive the rings.
    pub(crate) unsafe fn fill(&mut self, umem: &mut xdp::Umem, n: usize) -> usize {
        match self {
            // SAFETY: forwarded from the caller.
            Producers::Plain { fill, .. } => unsafe { fill.enqueue(umem, n) },
            // SAFETY: forwarded from the caller. Without a wakeup no system call is made,
            // so there is no error to report.
            Producers::Wakable { fill, .. } => unsafe { fill.enqueue(umem, n, false) }.unwrap_or(0),
        }
    }

    /// Puts every frame of `batch` on the TX ring, or none if the ring has no room for
    /// all of them (the crate reserves the whole batch at once).
    ///
    /// # Safety
    ///
    /// The frames must come from the UMEM registered with this socket.
    pub(crate) unsafe fn send(&mut self, batch: &mut super::umem::Frames) -> usize {
        match self {
            // SAFETY: forwarded from the caller.
            Producers::Plain { tx, .. } => unsafe { tx.send(batch) },
            // SAFETY: forwarded from the caller; no system call without a wakeup.
            Producers::Wakable { tx, .. } => unsafe { tx.send(batch, false) }.unwrap_or(0),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapping_arithmetic() {
        assert_eq!(used(10, 4), 6);
        assert_eq!(free(8, 10, 4), 2);
        assert_eq!(free(8, 4, 4), 8);
        // Across the u32 wrap.
        assert_eq!(used(3, u32::MAX - 2), 6);
        assert_eq!(free(2048, 3, u32::MAX - 2), 2042);
        assert_eq!(used(u32::MAX, u32::MAX), 0);
        // A full ring has no room.
        assert_eq!(free(2048, 2048u32.wrapping_add(7), 7), 0);
    }
}
