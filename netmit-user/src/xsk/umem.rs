//! The UMEM: the packet memory shared with the kernel, and the batches of frames that
//! move between it and the rings.
//!
//! The `xdp` crate's [`xdp::Umem`] maps the area and keeps the list of frames that user
//! space owns (neither in the fill ring, nor on the RX ring, nor in flight on TX). A frame
//! is in exactly one place at a time:
//!
//! ```text
//!   free list --fill--> kernel --RX ring--> batch --(recv: done)----> free list
//!                                                 \-(echo: send)--> TX ring --completion--> free list
//!   free list --send_batch: copy in--> TX ring --completion--> free list
//! ```
//!
//! [`Frames`] is the batch: the frames of one call, between taking them off a ring and
//! giving them back. It is always empty when a call returns.

use std::collections::VecDeque;

use xdp::{Packet, slab::Slab, umem::FrameSize};

use super::XskConfig;

/// Maps a UMEM for `cfg` (anonymous memory; the kernel pins it when it is registered).
pub(crate) fn map(cfg: &XskConfig) -> std::io::Result<xdp::Umem> {
    let frame_size = if cfg.frame_size == 2048 {
        FrameSize::TwoK
    } else {
        FrameSize::FourK
    };
    let umem_cfg = xdp::umem::UmemCfgBuilder {
        frame_size,
        frame_count: cfg.frame_count,
        head_room: 0,
        ..Default::default()
    }
    .build()
    .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, format!("{e:?}")))?;
    xdp::Umem::map(umem_cfg)
}

/// A bounded batch of frames (the `xdp` crate's [`Slab`] interface). The rings take as
/// many frames as [`Slab::available`] allows, so the bound is what limits a batch.
pub(crate) struct Frames {
    frames: VecDeque<Packet>,
    limit: usize,
}

// SAFETY: a `Packet` is a raw pointer into the UMEM, which is owned by the same socket
// as this batch and moves with it. Batches are empty between calls, so no pointer is in
// use while the socket changes threads; the UMEM mapping is valid in every thread.
unsafe impl Send for Frames {}

impl Frames {
    /// A batch with room for `capacity` frames (allocated once).
    pub(crate) fn with_capacity(capacity: usize) -> Self {
        Self {
            frames: VecDeque::with_capacity(capacity),
            limit: 0,
        }
    }

    /// Lets the next ring operation fill the batch up to `n` frames in total.
    pub(crate) fn limit_to(&mut self, n: usize) {
        self.limit = n;
    }

    /// Frames in the batch.
    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the batch is empty.
    pub(crate) fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Takes the frames out in ring order.
    pub(crate) fn pop_oldest(&mut self) -> Option<Packet> {
        self.frames.pop_back()
    }

    /// Puts a frame in; it will be the last one out.
    pub(crate) fn push_newest(&mut self, packet: Packet) {
        self.frames.push_front(packet);
    }
}

impl Slab for Frames {
    fn available(&self) -> usize {
        self.limit.saturating_sub(self.frames.len())
    }

    fn len(&self) -> usize {
        self.frames.len()
    }

    fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    fn push_front(&mut self, packet: Packet) -> Option<Packet> {
        if self.frames.len() < self.limit {
            self.frames.push_front(packet);
            None
        } else {
            Some(packet)
        }
    }

    fn pop_back(&mut self) -> Option<Packet> {
        self.frames.pop_back()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_respects_its_limit_and_order() {
        let mut umem = map(&XskConfig {
            frame_count: 8,
            ..Default::default()
        })
        .unwrap();
        let mut batch = Frames::with_capacity(4);
        batch.limit_to(3);
        assert_eq!(batch.available(), 3);
        let mut addrs = Vec::new();
        for i in 0..4u8 {
            // SAFETY: the packet is returned to `umem` before it is dropped.
            let mut p = unsafe { umem.alloc() }.unwrap();
            p.append(&[i]).unwrap();
            match batch.push_front(p) {
                None => addrs.push(i),
                Some(p) => umem.free_packet(p),
            }
        }
        assert_eq!(addrs, [0, 1, 2]);
        assert_eq!(batch.available(), 0);
        let mut out = Vec::new();
        while let Some(p) = batch.pop_oldest() {
            out.push(p[0]);
            umem.free_packet(p);
        }
        assert_eq!(out, [0, 1, 2], "first in, first out");
        assert_eq!(umem.allocatable(), 8);
    }

    #[test]
    fn frame_sizes_map() {
        for (size, cap) in [(2048, 1792), (4096, 3840)] {
            let mut umem = map(&XskConfig {
                frame_size: size,
                frame_count: 2,
                ..Default::default()
            })
            .unwrap();
            // SAFETY: returned below.
            let p = unsafe { umem.alloc() }.unwrap();
            assert_eq!(p.capacity(), cap);
            umem.free_packet(p);
        }
    }
}
