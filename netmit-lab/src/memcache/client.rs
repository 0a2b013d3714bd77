//! The driver: preload with sets, then closed loop (a fixed number of requests in
//! flight) or open loop (requests on a fixed schedule, latency from the scheduled send
//! time so a stalled server is not hidden by a stalled client).
//!
//! One UDP socket, non-blocking, one thread that both sends and receives; the caller
//! pins it and puts it in the client's namespace. Request ids are the slots of a table
//! of send times, so a reply is matched by its id alone; a request without a reply
//! after [`LOST_AFTER`] counts as lost and its slot is reused.

use std::{
    io,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use serde::Serialize;

use super::{Reply, Rng, Workload, get_frame, parse_reply, set_frame};
use crate::load::{Buckets, LatencySummary};

/// A request without a reply for this long is lost.
pub const LOST_AFTER: Duration = Duration::from_millis(200);

/// What one run measured.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct McReport {
    /// Requests sent.
    pub sent: u64,
    /// Replies matched to a request.
    pub replies: u64,
    /// Gets that found their key.
    pub hits: u64,
    /// Gets that did not.
    pub misses: u64,
    /// Requests without a reply within [`LOST_AFTER`].
    pub lost: u64,
    /// Replies that were neither a value, a miss nor `STORED`.
    pub errors: u64,
    /// The measured time, s.
    pub secs: f64,
    /// Replies per second.
    pub rate: f64,
    /// Latency of the replies.
    pub latency: LatencySummary,
}

/// A memcached UDP client.
#[derive(Debug)]
pub struct McClient {
    socket: UdpSocket,
    workload: Workload,
    rng: Rng,
    /// Send time (ns since `epoch`) and kind (get = true) per request id; 0 = free.
    slots: Vec<(u64, bool)>,
    next_id: u16,
    /// Slots in use.
    flying: usize,
    epoch: Instant,
    frame: Vec<u8>,
    value: Vec<u8>,
}

impl McClient {
    /// A client of `server` with `workload`, bound to `local` (port 0: any).
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub fn new(local: SocketAddr, server: SocketAddr, workload: Workload) -> io::Result<Self> {
        let socket = UdpSocket::bind(local)?;
        socket.connect(server)?;
        socket.set_nonblocking(true)?;
        Ok(McClient {
            socket,
            workload,
            rng: Rng::new(7),
            slots: vec![(0, false); 1 << 16],
            next_id: 0,
            flying: 0,
            epoch: Instant::now(),
            frame: Vec::with_capacity(2048),
            value: vec![b'v'; super::MAX_VALUE],
        })
    }

    fn now_ns(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64 + 1
    }

    /// Sends request `key` (a get, or a set when `set`) stamped `at`; false when every id
    /// is in use or the socket would block.
    fn send(&mut self, key: usize, set: bool, at: u64) -> io::Result<bool> {
        let id = self.next_id;
        if self.slots[id as usize].0 != 0 {
            return Ok(false);
        }
        let k = &self.workload.keys[key];
        if set {
            let len = self.workload.value_lens[key];
            set_frame(id, k, &self.value[..len], &mut self.frame);
        } else {
            get_frame(id, k, &mut self.frame);
        }
        match self.socket.send(&self.frame) {
            Ok(_) => {
                self.slots[id as usize] = (at, !set);
                self.flying += 1;
                self.next_id = id.wrapping_add(1);
                Ok(true)
            }
            // Full, or an ICMP port unreachable from before the server listened.
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionRefused
                ) =>
            {
                Ok(false)
            }
            Err(e) => Err(e),
        }
    }

    /// Receives what has arrived; counts into `r` and `hist` when given. Returns the
    /// replies matched.
    fn drain(&mut self, mut r: Option<(&mut McReport, &mut Buckets)>) -> io::Result<u64> {
        let mut buf = [0u8; 2048];
        let mut matched = 0;
        loop {
            let n = match self.socket.recv(&mut buf) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(matched),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => continue,
                Err(e) => return Err(e),
            };
            let Some(reply) = parse_reply(&buf[..n]) else {
                continue;
            };
            let slot = &mut self.slots[reply.id() as usize];
            if slot.0 == 0 {
                continue; // late or duplicate
            }
            let sent = slot.0;
            *slot = (0, false);
            self.flying -= 1;
            matched += 1;
            if let Some((r, hist)) = r.as_mut() {
                r.replies += 1;
                match reply {
                    Reply::Value { .. } => r.hits += 1,
                    Reply::Miss { .. } => r.misses += 1,
                    Reply::Stored { .. } => {}
                    Reply::Other { .. } => r.errors += 1,
                }
                hist.record(self.now_ns().saturating_sub(sent));
            }
        }
    }

    /// Frees the slots of requests older than [`LOST_AFTER`]; returns how many.
    fn expire(&mut self) -> u64 {
        let cutoff = self
            .now_ns()
            .saturating_sub(LOST_AFTER.as_nanos() as u64)
            .max(1);
        let mut lost = 0;
        for s in self.slots.iter_mut() {
            if s.0 != 0 && s.0 < cutoff {
                *s = (0, false);
                lost += 1;
            }
        }
        self.flying -= lost as usize;
        lost
    }

    fn in_flight(&self) -> usize {
        self.flying
    }

    /// Sets every key once (`depth` in flight, lost sets sent again), so gets hit.
    ///
    /// # Errors
    ///
    /// The socket's errors, or `TimedOut` when the server stores nothing for 5 s.
    pub fn preload(&mut self, depth: usize) -> io::Result<()> {
        let keys = self.workload.keys.len();
        let mut stored = vec![false; keys];
        let mut pending: Vec<usize> = (0..keys).rev().collect();
        let mut by_id = vec![usize::MAX; 1 << 16];
        let mut last_progress = Instant::now();
        let mut buf = [0u8; 2048];
        let mut left = keys;
        while left > 0 {
            while self.in_flight() < depth
                && let Some(k) = pending.pop()
            {
                let id = self.next_id;
                let at = self.now_ns();
                if !self.send(k, true, at)? {
                    pending.push(k);
                    break;
                }
                by_id[id as usize] = k;
            }
            match self.socket.recv(&mut buf) {
                Ok(n) => {
                    if let Some(Reply::Stored { id }) = parse_reply(&buf[..n]) {
                        let k = by_id[id as usize];
                        if self.slots[id as usize].0 != 0 && k != usize::MAX && !stored[k] {
                            stored[k] = true;
                            left -= 1;
                            last_progress = Instant::now();
                        }
                        if self.slots[id as usize].0 != 0 {
                            self.slots[id as usize] = (0, false);
                            self.flying -= 1;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::yield_now();
                }
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => return Err(e),
            }
            if self.expire() > 0 {
                let mut flying = vec![false; keys];
                for (id, s) in self.slots.iter().enumerate() {
                    if s.0 != 0 && by_id[id] != usize::MAX {
                        flying[by_id[id]] = true;
                    }
                }
                pending = (0..keys)
                    .rev()
                    .filter(|k| !stored[*k] && !flying[*k])
                    .collect();
            }
            if last_progress.elapsed() > Duration::from_secs(5) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("memcached stored nothing for 5 s ({left} of {keys} keys left)"),
                ));
            }
        }
        self.slots.iter_mut().for_each(|s| *s = (0, false));
        self.flying = 0;
        Ok(())
    }

    fn pick(&mut self) -> (usize, bool) {
        let key = (self.rng.next_u64() % self.workload.keys.len() as u64) as usize;
        let set = self.rng.unit() >= self.workload.get_fraction;
        (key, set)
    }

    /// `depth` requests in flight for `warmup` then `window`; the window is reported.
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub fn closed_loop(
        &mut self,
        depth: usize,
        warmup: Duration,
        window: Duration,
    ) -> io::Result<McReport> {
        self.run(warmup, window, |c, _| c.in_flight() < depth)
    }

    /// Requests at `rate` per second for `warmup` then `window`.
    ///
    /// # Errors
    ///
    /// The socket's errors.
    pub fn open_loop(
        &mut self,
        rate: f64,
        warmup: Duration,
        window: Duration,
    ) -> io::Result<McReport> {
        let interval = (1e9 / rate.max(1.0)) as u64;
        let mut next = self.now_ns();
        self.run(warmup, window, move |_, now| {
            if now >= next {
                next += interval;
                // Behind by more than a second: the schedule restarts (counted as lost).
                if now > next + 1_000_000_000 {
                    next = now;
                }
                true
            } else {
                false
            }
        })
    }

    fn run(
        &mut self,
        warmup: Duration,
        window: Duration,
        mut may_send: impl FnMut(&Self, u64) -> bool,
    ) -> io::Result<McReport> {
        let start = Instant::now();
        let mut report = McReport::default();
        let mut hist = Buckets::default();
        let mut measuring = false;
        let mut window_start = start;
        let mut last_expire = start;
        loop {
            let elapsed = start.elapsed();
            if !measuring && elapsed >= warmup {
                measuring = true;
                window_start = Instant::now();
            }
            if measuring && window_start.elapsed() >= window {
                break;
            }
            let mut sent = 0;
            loop {
                let now = self.now_ns();
                if sent >= 64 || !may_send(self, now) {
                    break;
                }
                let (key, set) = self.pick();
                if !self.send(key, set, now)? {
                    break;
                }
                sent += 1;
                if measuring {
                    report.sent += 1;
                }
            }
            if measuring {
                self.drain(Some((&mut report, &mut hist)))?;
            } else {
                self.drain(None)?;
            }
            if last_expire.elapsed() >= Duration::from_millis(50) {
                last_expire = Instant::now();
                let lost = self.expire();
                if measuring {
                    report.lost += lost;
                }
            }
        }
        report.secs = window_start.elapsed().as_secs_f64();
        report.rate = report.replies as f64 / report.secs;
        report.latency = hist.summary(None);
        Ok(report)
    }
}
