//! The data path of [`XskSocket`]: waiting, receiving, transmitting and echoing in
//! batches, with the ring bookkeeping (fill, completion, wakeups) they share. Opening,
//! binding and registering are in the parent module.

use std::time::{Duration, Instant};

use super::{
    XskSocket, socket_error,
    sys::{self, Kick},
};
use crate::xsk::{WaitStrategy, XskCounters, XskError, XskStats};

impl XskSocket {
    /// Waits until the RX ring holds frames or `timeout` passes; `Ok(true)` when frames
    /// are there. Returns at once, without a system call, if frames are waiting.
    ///
    /// Without busy polling this sleeps in `poll(2)` (rounded up to whole milliseconds).
    /// With [`crate::xsk::BusyPoll`] configured it spins instead, calling
    /// `recvfrom(MSG_DONTWAIT)`, which runs the queue's NAPI instance in this thread, until
    /// frames arrive or the timeout passes.
    ///
    /// # Errors
    ///
    /// [`XskError::Io`] if `poll` or `recvfrom` fails for another reason than a signal.
    pub fn poll(&self, timeout: Duration) -> Result<bool, XskError> {
        if self.words.rx.used() > 0 {
            return Ok(true);
        }
        let wakeup = Self::poll_wakeup;
        if self.cfg.busy_poll.is_some() {
            // No deadline (spin until frames arrive) if the timeout does not fit.
            let deadline = Instant::now().checked_add(timeout);
            loop {
                wakeup(self)?;
                if self.words.rx.used() > 0 {
                    return Ok(true);
                }
                if deadline.is_some_and(|d| Instant::now() >= d) {
                    return Ok(false);
                }
                std::hint::spin_loop();
            }
        }
        if self.cfg.need_wakeup && self.words.fill.needs_wakeup() {
            wakeup(self)?;
        }
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as libc::c_int;
        sys::poll_in(self.fd(), ms).map_err(self.os_err("poll"))
    }

    /// Waits until the RX ring holds frames or `timeout` passes, the way `strategy` says;
    /// `Ok(true)` when frames are there. Returns at once, without a system call, if
    /// frames are waiting.
    ///
    /// [`WaitStrategy::Sleep`] is [`Self::poll`]. [`WaitStrategy::Spin`] reads the RX
    /// ring's producer word in a loop (one shared cache line, no system call) until
    /// frames arrive or the timeout passes, making the `recvfrom` wakeups the kernel asks
    /// for through need_wakeup (and, with [`crate::xsk::BusyPoll`], one per round, which
    /// runs the queue's NAPI). [`WaitStrategy::SpinThenSleep`] spins for at most its
    /// duration and then calls [`Self::poll`] for the rest of `timeout`.
    ///
    /// # Errors
    ///
    /// [`XskError::Io`] if `poll` or `recvfrom` fails for another reason than a signal.
    pub fn wait(&self, strategy: WaitStrategy, timeout: Duration) -> Result<bool, XskError> {
        if self.words.rx.used() > 0 {
            return Ok(true);
        }
        let plan = strategy.plan(timeout);
        if !plan.spin.is_zero() && self.spin(plan.spin)? {
            return Ok(true);
        }
        if plan.sleep.is_zero() {
            return Ok(self.words.rx.used() > 0);
        }
        self.poll(plan.sleep)
    }

    /// Checks the RX ring in a loop for up to `limit`; `Ok(true)` when frames arrived.
    fn spin(&self, limit: Duration) -> Result<bool, XskError> {
        // No deadline (spin until frames arrive) if the limit does not fit.
        let deadline = Instant::now().checked_add(limit);
        loop {
            if self.words.rx.used() > 0 {
                return Ok(true);
            }
            if self.cfg.busy_poll.is_some()
                || (self.cfg.need_wakeup && self.words.fill.needs_wakeup())
            {
                self.poll_wakeup()?;
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(self.words.rx.used() > 0);
            }
            std::hint::spin_loop();
        }
    }

    /// A `recvfrom(MSG_DONTWAIT)` from a wait, counted in [`XskCounters::wakeups`].
    fn poll_wakeup(&self) -> Result<(), XskError> {
        self.poll_wakeups.set(self.poll_wakeups.get() + 1);
        sys::kick_rx(self.fd())
            .map(drop)
            .map_err(self.os_err("recvfrom (RX wakeup)"))
    }

    /// Takes up to `max` frames off the RX ring into `self.batch`.
    fn take_rx(&mut self, max: usize) -> usize {
        self.batch.limit_to(max);
        // SAFETY: the frames are given back to `self.umem` (free list or TX ring) before
        // the calling method returns; the UMEM outlives the rings (field order).
        let n = unsafe { self.rx.recv(&self.umem, &mut self.batch) };
        self.in_fill = self.in_fill.saturating_sub(n as u32);
        n
    }

    /// Tops the fill ring up to [`XskConfig::fill_target`] from the free list, and wakes
    /// the kernel if it asked for it.
    pub(super) fn refill(&mut self) -> Result<(), XskError> {
        let want = self.cfg.fill_target().saturating_sub(self.in_fill) as usize;
        if want > 0 {
            // SAFETY: `self.umem` is the UMEM registered with this socket and outlives
            // the rings (field order).
            let n = unsafe { self.producers.fill(&mut self.umem, want) };
            self.in_fill += n as u32;
        }
        if self.cfg.need_wakeup && self.words.fill.needs_wakeup() {
            self.wake_rx()?;
        }
        Ok(())
    }

    fn wake_rx(&mut self) -> Result<(), XskError> {
        self.counters.wakeups += 1;
        sys::kick_rx(self.fd()).map(drop).map_err(|e| {
            XskError::os(
                self.dev.name.as_str(),
                self.queue,
                "recvfrom (RX wakeup)",
                e,
            )
        })
    }

    /// With nothing received: the kernel may be waiting for a wakeup (need_wakeup) or, in
    /// busy-poll mode, for us to run its NAPI.
    fn idle_rx(&mut self) -> Result<(), XskError> {
        if self.cfg.busy_poll.is_some() || (self.cfg.need_wakeup && self.words.fill.needs_wakeup())
        {
            self.wake_rx()?;
        }
        Ok(())
    }

    /// Moves completed TX frames back to the free list.
    fn reap_completions(&mut self) -> usize {
        let n = self
            .completion
            .dequeue(&mut self.umem, self.cfg.completion_ring as usize);
        self.counters.tx_completed += n as u64;
        n
    }

    /// Makes the kernel process the TX ring: `sendto(MSG_DONTWAIT)` while descriptors are
    /// pending and the kernel needs a kick (always without need_wakeup; with it, when the
    /// ring's flag says so, which in copy mode is always). In copy mode one call sends at
    /// most 32 frames, so a large batch takes several; the loop stops when the ring is
    /// empty or a call made no progress (the rest goes with the next call).
    fn flush_tx(&mut self) -> Result<(), XskError> {
        loop {
            if self.words.tx.used() == 0 {
                return Ok(());
            }
            if self.cfg.need_wakeup && !self.words.tx.needs_wakeup() {
                return Ok(());
            }
            let before = self.words.tx.consumer();
            self.counters.wakeups += 1;
            let kick = sys::kick_tx(self.fd()).map_err(|e| {
                XskError::os(self.dev.name.as_str(), self.queue, "sendto (TX kick)", e)
            })?;
            let reaped = self.reap_completions();
            if kick == Kick::Again && reaped == 0 && self.words.tx.consumer() == before {
                return Ok(());
            }
        }
    }

    /// Receives up to `max` frames: hands each frame's bytes to `f` in arrival order and
    /// gives the frames back to the fill ring in one batch. Returns the number of frames.
    ///
    /// No system call is made unless the kernel asks for one (need_wakeup) or busy
    /// polling is configured and the RX ring was empty. Returns 0 at once when nothing is
    /// there; use [`XskSocket::poll`] to wait. If `f` panics, the frames of that batch are
    /// lost to the socket (it keeps working with fewer frames).
    ///
    /// # Errors
    ///
    /// [`XskError::Io`] if a wakeup system call fails.
    pub fn recv_batch(&mut self, max: usize, mut f: impl FnMut(&[u8])) -> Result<usize, XskError> {
        let n = self.take_rx(max);
        if n == 0 {
            self.idle_rx()?;
            return Ok(0);
        }
        while let Some(frame) = self.batch.pop_oldest() {
            self.counters.rx_bytes += frame.len() as u64;
            f(&frame);
            self.umem.free_packet(frame);
        }
        self.counters.rx_packets += n as u64;
        self.refill()?;
        Ok(n)
    }

    /// Copies frames into free UMEM frames, puts them on the TX ring in one batch, kicks
    /// the kernel if it needs it, and reaps the completion ring. Returns how many frames
    /// were queued.
    ///
    /// Frames are taken from `frames` only while there is room on the TX ring and a free
    /// UMEM frame (frames the fill ring is owed come first); pass `iter.by_ref()` to
    /// continue with the rest later. Each frame is a whole Ethernet frame without FCS,
    /// with its checksums filled in. An empty iterator just flushes the TX ring and reaps
    /// completions ([`XskCounters::tx_completed`](super::XskCounters)).
    ///
    /// # Errors
    ///
    /// - [`XskError::FrameTooLarge`] for a frame longer than
    ///   [`crate::xsk::XskConfig::max_frame_len`]; nothing of that call is queued;
    /// - [`XskError::Io`] if the TX kick fails (not for `EAGAIN`, `EBUSY`, `ENOBUFS`:
    ///   those leave frames queued for the next call).
    pub fn send_batch<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<usize, XskError> {
        self.reap_completions();
        let room = self.words.tx.free() as usize;
        let owed_to_fill = self.cfg.fill_target().saturating_sub(self.in_fill) as usize;
        let spare = self.umem.allocatable().saturating_sub(owed_to_fill);
        let max = self.cfg.max_frame_len();
        let limit = room.min(spare);
        let mut frames = frames.into_iter();
        let mut bytes = 0u64;
        while self.batch.len() < limit {
            let Some(frame) = frames.next() else { break };
            // SAFETY: the frame goes to the TX ring or back to `self.umem` below.
            let packet = unsafe { self.umem.alloc() };
            let Some(mut packet) = packet else { break };
            if frame.len() > max || packet.append(frame).is_err() {
                self.umem.free_packet(packet);
                while let Some(p) = self.batch.pop_oldest() {
                    self.umem.free_packet(p);
                }
                return Err(XskError::FrameTooLarge {
                    len: frame.len(),
                    max,
                });
            }
            bytes += frame.len() as u64;
            self.batch.push_newest(packet);
        }
        let queued = self.transmit_batch(bytes);
        self.flush_tx()?;
        Ok(queued)
    }

    /// Puts `self.batch` on the TX ring (the callers made sure it fits).
    fn transmit_batch(&mut self, bytes: u64) -> usize {
        if self.batch.is_empty() {
            return 0;
        }
        let n = self.batch.len();
        // SAFETY: every frame in the batch came from `self.umem`.
        let sent = unsafe { self.producers.send(&mut self.batch) };
        if sent == 0 {
            // The ring had no room after all; nothing was queued.
            while let Some(p) = self.batch.pop_oldest() {
                self.umem.free_packet(p);
            }
            return 0;
        }
        debug_assert_eq!(sent, n);
        self.counters.tx_packets += sent as u64;
        self.counters.tx_bytes += bytes;
        sent
    }

    /// Receives up to `max` frames and lets `f` rewrite each in place; a frame for which
    /// `f` returns `true` is transmitted from the same UMEM frame (its RX descriptor goes
    /// to the TX ring, no copy), the others go back to the fill ring. Completed frames go
    /// back to the fill ring. Returns the number of frames received.
    ///
    /// The frame length cannot change. At most as many frames are taken as the TX ring
    /// has room for, so a stalled TX side slows receiving down rather than dropping.
    ///
    /// # Errors
    ///
    /// [`XskError::Io`] if a wakeup or TX kick fails.
    pub fn echo_batch(
        &mut self,
        max: usize,
        mut f: impl FnMut(&mut [u8]) -> bool,
    ) -> Result<usize, XskError> {
        self.reap_completions();
        let room = self.words.tx.free() as usize;
        let n = self.take_rx(max.min(room));
        if n == 0 {
            // Frames may still wait on TX (a kick's budget ran out), and completions may
            // have freed frames for the fill ring.
            self.flush_tx()?;
            self.refill()?;
            self.idle_rx()?;
            return Ok(0);
        }
        let mut bytes = 0u64;
        for _ in 0..n {
            let Some(mut frame) = self.batch.pop_oldest() else {
                break;
            };
            self.counters.rx_bytes += frame.len() as u64;
            if f(&mut frame) {
                bytes += frame.len() as u64;
                // The kept frames end up in the batch in arrival order.
                self.batch.push_newest(frame);
            } else {
                self.umem.free_packet(frame);
            }
        }
        self.counters.rx_packets += n as u64;
        self.transmit_batch(bytes);
        self.flush_tx()?;
        self.refill()?;
        Ok(n)
    }

    /// The kernel's `XDP_STATISTICS` for this socket and its own counters.
    ///
    /// # Errors
    ///
    /// [`XskError::Io`] if the getsockopt fails.
    pub fn statistics(&self) -> Result<XskStats, XskError> {
        let kernel = self
            .socket
            .statistics()
            .map_err(|e| socket_error(self.dev.name.as_str(), self.queue, e))?;
        Ok(XskStats::from_kernel(&kernel, self.counters()))
    }

    /// Frames waiting on the RX ring: one read of the ring's producer index, no system
    /// call. A receiver that spins checks this before calling [`Self::recv_batch`], so
    /// that an idle ring costs one shared cache line, not the fill ring's too.
    pub fn rx_pending(&self) -> u32 {
        self.words.rx.used()
    }

    /// The socket's own counters, without a system call (cheap enough to read after
    /// every batch; [`Self::statistics`] adds the kernel's and costs a `getsockopt`).
    pub fn counters(&self) -> XskCounters {
        let mut counters = self.counters;
        counters.wakeups += self.poll_wakeups.get();
        counters
    }
}
