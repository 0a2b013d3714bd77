//! [`XskSocket`]: one AF_XDP socket bound to one RX queue, with its own UMEM.

use std::{
    cell::Cell,
    fmt,
    os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd},
    thread,
    time::{Duration, Instant},
};

use xdp::socket::{SocketError, XdpSocketBuilder};

use super::{
    BindMode, XskConfig, XskCounters, XskError, device,
    register::{self, Registration, RegistrationState},
    rings::{Producers, RingWords},
    sys,
    umem::{self, Frames},
};
use crate::sys::{Netdev, Presence};

mod datapath;

/// How long [`XskSocket::open`] retries a bind that fails with `EBUSY`. A queue whose
/// previous socket was just closed stays busy for about a second on Linux 6.18 (the
/// buffer pool is released from a work queue after an RCU grace period).
pub const BUSY_RETRY: Duration = Duration::from_secs(3);

/// The pause before bind attempt `attempt + 1`: 10 ms, doubling up to 200 ms.
pub(crate) fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(10u64.saturating_mul(1 << attempt.min(5)).min(200))
}

/// An AF_XDP socket bound to one RX queue of one interface.
///
/// See the [module documentation](super) for the design. The socket is `Send` (open it
/// in one thread, run it in another) but not `Sync`: every data-path method takes
/// `&mut self`, and one socket serves one queue from one thread.
pub struct XskSocket {
    // Fields drop in this order. The socket closes first: the kernel then stops using the
    // rings, removes the socket from every XSKMAP slot that still refers to it, and
    // releases the queue and the UMEM pages it pinned. Then the ring mappings and the
    // UMEM mapping go.
    socket: xdp::socket::XdpSocket,
    producers: Producers,
    rx: xdp::RxRing,
    completion: xdp::CompletionRing,
    words: RingWords,
    batch: Frames,
    umem: xdp::Umem,
    dev: Netdev,
    queue: u32,
    cfg: XskConfig,
    mode: BindMode,
    /// Frames handed to the kernel through the fill ring and not yet back on the RX ring.
    in_fill: u32,
    counters: XskCounters,
    /// Bind attempts `open` needed (more than 1 after `EBUSY`).
    bind_attempts: u32,
    /// Wakeups made through `&self` ([`XskSocket::poll`]).
    poll_wakeups: Cell<u64>,
    registration: Option<Registration>,
}

/// What one successful bind produced.
struct Bound {
    socket: xdp::socket::XdpSocket,
    producers: Producers,
    rx: xdp::RxRing,
    completion: xdp::CompletionRing,
    words: RingWords,
}

enum BindFailure {
    Busy,
    Fatal(XskError),
}

impl From<XskError> for BindFailure {
    fn from(e: XskError) -> Self {
        BindFailure::Fatal(e)
    }
}

fn socket_error(iface: &str, queue: u32, e: SocketError) -> XskError {
    match e {
        SocketError::SocketCreation(e) => XskError::os(iface, queue, "socket(AF_XDP)", e),
        SocketError::SetSockOpt { inner, option } => {
            XskError::os(iface, queue, format!("setsockopt({option:?})"), inner)
        }
        SocketError::GetSockOpt { inner, option } => {
            XskError::os(iface, queue, format!("getsockopt({option:?})"), inner)
        }
        SocketError::RingMap { inner, ring } => {
            XskError::os(iface, queue, format!("mmap of the {ring:?} ring"), inner)
        }
        SocketError::Bind(e) => XskError::os(iface, queue, "bind", e),
    }
}

/// One attempt: a new socket, registered UMEM, sized and mapped rings, bind.
fn bind_once(
    iface: &str,
    ifindex: u32,
    queue: u32,
    cfg: &XskConfig,
    umem: &xdp::Umem,
) -> Result<Bound, BindFailure> {
    let err = |e| socket_error(iface, queue, e);
    let mut builder = XdpSocketBuilder::new().map_err(err)?;
    let ring_cfg = xdp::RingConfigBuilder {
        rx_count: cfg.rx_ring,
        tx_count: cfg.tx_ring,
        fill_count: cfg.fill_ring,
        completion_count: cfg.completion_ring,
    }
    .build()
    .map_err(|e| XskError::InvalidConfig {
        what: format!("rings: {e:?}"),
    })?;
    let missing = |ring: &str| XskError::InvalidConfig {
        what: format!("{ring} ring of size 0"),
    };
    let (producers, rx, completion, mut flags) = if cfg.need_wakeup {
        let (rings, flags) = builder.build_wakable_rings(umem, ring_cfg).map_err(err)?;
        let tx = rings.tx_ring.ok_or_else(|| missing("TX"))?;
        let rx = rings.rx_ring.ok_or_else(|| missing("RX"))?;
        let fill = rings.fill_ring;
        (
            Producers::Wakable { fill, tx },
            rx,
            rings.completion_ring,
            flags,
        )
    } else {
        let (rings, flags) = builder.build_rings(umem, ring_cfg).map_err(err)?;
        let tx = rings.tx_ring.ok_or_else(|| missing("TX"))?;
        let rx = rings.rx_ring.ok_or_else(|| missing("RX"))?;
        let fill = rings.fill_ring;
        (
            Producers::Plain { fill, tx },
            rx,
            rings.completion_ring,
            flags,
        )
    };
    let words = RingWords::map(builder.as_raw_fd(), cfg)
        .map_err(|e| XskError::os(iface, queue, "mmap of the ring heads", e))?;
    match cfg.mode {
        BindMode::Copy => flags.force_copy(),
        BindMode::ZeroCopy => flags.force_zerocopy(),
        // Neither flag: the kernel tries zero-copy and falls back to copy by itself.
        BindMode::Auto => {}
    }
    let socket = match builder.bind(xdp::nic::NicIndex(ifindex), queue, flags) {
        Ok(s) => s,
        Err(SocketError::Bind(e)) => {
            return Err(match e.raw_os_error() {
                Some(libc::EBUSY) => BindFailure::Busy,
                Some(libc::EOPNOTSUPP) if cfg.mode == BindMode::ZeroCopy => {
                    BindFailure::Fatal(XskError::ZeroCopyUnsupported {
                        iface: iface.into(),
                    })
                }
                // The queue count checked before binding may be the allocated one.
                Some(libc::EINVAL) => BindFailure::Fatal(XskError::os(
                    iface,
                    queue,
                    format!("bind (is queue {queue} active? see `ethtool -l {iface}`)"),
                    e,
                )),
                _ => BindFailure::Fatal(XskError::os(iface, queue, "bind", e)),
            });
        }
        Err(e) => return Err(BindFailure::Fatal(err(e))),
    };
    Ok(Bound {
        socket,
        producers,
        rx,
        completion,
        words,
    })
}

impl XskSocket {
    /// Creates a socket with its UMEM and rings and binds it to RX queue `queue` of
    /// device `dev` (in the calling thread's network namespace), then fills the fill ring.
    /// The socket receives nothing until it is registered ([`XskSocket::register`]) in
    /// netmit's XSKMAP, or in the XSKMAP of some other XDP program.
    ///
    /// A bind that fails with `EBUSY` is retried with backoff for up to [`BUSY_RETRY`]:
    /// a queue whose previous socket closed less than about a second ago is still busy.
    ///
    /// # Errors
    ///
    /// - [`XskError::InvalidConfig`] from [`XskConfig::validate`], before any system call;
    /// - [`XskError::NoSuchInterface`] when the device is gone or in another namespace;
    /// - [`XskError::QueueOutOfRange`] when `queue` is not below the device's RX queue
    ///   count (the active queues from netdev netlink `queue-get`, or for an interface
    ///   that is down the allocated ones, `IFLA_NUM_RX_QUEUES`);
    /// - [`XskError::ZeroCopyUnsupported`] for [`BindMode::ZeroCopy`] on a driver without
    ///   it;
    /// - [`XskError::Busy`] when the queue is still taken after the retries;
    /// - [`XskError::NotPermitted`] without `CAP_NET_RAW`;
    /// - [`XskError::Io`] for any other failed system call, naming it.
    ///
    /// # Example
    ///
    /// ```no_run
    /// use netmit_user::xsk::{XskConfig, XskSocket};
    ///
    /// use netmit_user::sys::Netdev;
    ///
    /// let dev = Netdev::resolve(&"eth1".parse().unwrap()).unwrap();
    /// let mut xsk = XskSocket::open_registered(&dev, 0, &XskConfig::default())?;
    /// loop {
    ///     if xsk.poll(std::time::Duration::from_millis(100))? {
    ///         xsk.recv_batch(64, |frame| println!("{} bytes", frame.len()))?;
    ///     }
    /// }
    /// # Ok::<(), netmit_user::xsk::XskError>(())
    /// ```
    pub fn open(dev: &Netdev, queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        cfg.validate()?;
        let iface = dev.name.as_str();
        let ifindex = dev.ifindex;
        if !matches!(dev.recheck(), Ok(Presence::Same | Presence::Renamed(_))) {
            return Err(XskError::NoSuchInterface {
                iface: iface.into(),
            });
        }
        let (queues, _) = device::rx_queue_count(dev)
            .map_err(|e| XskError::os(iface, queue, "rtnetlink getlink (RX queue count)", e))?;
        if queue >= queues {
            return Err(XskError::QueueOutOfRange {
                iface: iface.into(),
                queue,
                queues,
            });
        }
        let umem = umem::map(cfg).map_err(|e| XskError::os(iface, queue, "mmap of the UMEM", e))?;

        let started = Instant::now();
        let mut attempt = 0;
        let bound = loop {
            match bind_once(iface, ifindex, queue, cfg, &umem) {
                Ok(b) => break b,
                Err(BindFailure::Fatal(e)) => return Err(e),
                Err(BindFailure::Busy) => {
                    let pause = backoff(attempt);
                    if started.elapsed() + pause > BUSY_RETRY {
                        return Err(XskError::Busy {
                            iface: iface.into(),
                            queue,
                            waited: started.elapsed(),
                        });
                    }
                    log::debug!("{iface} queue {queue} busy; retrying bind in {pause:?}");
                    thread::sleep(pause);
                    attempt += 1;
                }
            }
        };
        let fd = bound.socket.as_raw_fd();
        let mode = match sys::is_zero_copy(fd) {
            Ok(true) => BindMode::ZeroCopy,
            Ok(false) => BindMode::Copy,
            Err(e) => return Err(XskError::os(iface, queue, "getsockopt(XDP_OPTIONS)", e)),
        };
        if let Some(bp) = &cfg.busy_poll {
            sys::set_busy_poll(fd, bp).map_err(|(step, e)| XskError::os(iface, queue, step, e))?;
        }
        let mut xsk = Self {
            socket: bound.socket,
            producers: bound.producers,
            rx: bound.rx,
            completion: bound.completion,
            words: bound.words,
            batch: Frames::with_capacity(cfg.rx_ring.max(cfg.tx_ring) as usize),
            umem,
            dev: dev.clone(),
            queue,
            cfg: *cfg,
            mode,
            in_fill: 0,
            counters: XskCounters::default(),
            bind_attempts: attempt + 1,
            poll_wakeups: Cell::new(0),
            registration: None,
        };
        xsk.refill()?;
        Ok(xsk)
    }

    /// [`XskSocket::open`], then [`XskSocket::register`]: the usual way to receive what
    /// netmit's `action=xsk` rules steer to a queue.
    ///
    /// # Errors
    ///
    /// Those of [`XskSocket::open`] and [`XskSocket::register`].
    pub fn open_registered(dev: &Netdev, queue: u32, cfg: &XskConfig) -> Result<Self, XskError> {
        let mut xsk = Self::open(dev, queue, cfg)?;
        xsk.register()?;
        Ok(xsk)
    }

    /// Puts the socket into netmit's XSKMAP of its interface at its queue index, so that
    /// the steering program redirects that queue's `action=xsk` packets to it. Replaces
    /// whatever socket was registered there. Registering again is harmless.
    ///
    /// The entry goes away by itself when the socket is dropped, but only if it still
    /// refers to this socket: the kernel removes it on close, and only from slots that
    /// still hold this socket.
    ///
    /// # Errors
    ///
    /// - [`XskError::NotAttached`] when netmit is not attached to the interface (no pins
    ///   at `/sys/fs/bpf/netmit/IFACE/`, or pins of a same-named interface in another
    ///   network namespace);
    /// - [`XskError::NotPermitted`] without `CAP_BPF`;
    /// - [`XskError::Map`] when the pinned maps cannot be opened or written.
    pub fn register(&mut self) -> Result<(), XskError> {
        let reg = register::register(&self.dev, self.queue, self.as_fd())?;
        self.registration = Some(reg);
        Ok(())
    }

    /// Deletes the socket's XSKMAP entry now; packets for its queue then fall back to the
    /// kernel (`xsk_fallback`). The delete is unconditional: the kernel cannot tell user
    /// space which socket a slot holds, so if another socket replaced this one at the
    /// same index, that one is removed. Dropping the socket has no such problem. Does
    /// nothing if the socket is not registered.
    ///
    /// # Errors
    ///
    /// [`XskError::NotAttached`] if netmit was detached meanwhile, [`XskError::Map`] or
    /// [`XskError::NotPermitted`] if the delete fails.
    pub fn unregister(&mut self) -> Result<(), XskError> {
        match self.registration.take() {
            Some(reg) => register::unregister(&self.dev, &reg),
            None => Ok(()),
        }
    }

    /// Whether [`XskSocket::register`] put the socket into netmit's XSKMAP.
    pub fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// Whether the registration still holds: netmit may have been detached from the
    /// interface (or attached again, with a new map) since [`XskSocket::register`]. A
    /// receive loop calls this now and then (it reads a few pins: keep it off the
    /// per-packet path) to tell a quiet queue from one nothing is steered to any more.
    ///
    /// # Errors
    ///
    /// [`XskError::NotAttached`] when the pin directory cannot be trusted.
    pub fn registration_state(&self) -> Result<RegistrationState, XskError> {
        match &self.registration {
            Some(reg) => register::state(&self.dev, reg),
            None => Ok(RegistrationState::Unregistered),
        }
    }

    /// The interface the socket is bound to.
    pub fn iface(&self) -> &str {
        self.dev.name.as_str()
    }

    /// The device.
    pub fn dev(&self) -> &Netdev {
        &self.dev
    }

    /// The interface index (in the network namespace the socket was opened in).
    pub fn ifindex(&self) -> u32 {
        self.dev.ifindex
    }

    /// The RX queue the socket is bound to.
    pub fn queue(&self) -> u32 {
        self.queue
    }

    /// The configuration the socket was opened with.
    pub fn config(&self) -> &XskConfig {
        &self.cfg
    }

    /// The mode the kernel bound the socket in: [`BindMode::Copy`] or
    /// [`BindMode::ZeroCopy`] (never `Auto`), as `XDP_OPTIONS` reports it.
    pub fn bound_mode(&self) -> BindMode {
        self.mode
    }

    /// How many binds [`XskSocket::open`] needed: 1, or more when the queue answered
    /// `EBUSY` (its previous socket had just closed) and was retried.
    pub fn bind_attempts(&self) -> u32 {
        self.bind_attempts
    }

    /// The NAPI instance serving the socket (`SO_INCOMING_NAPI_ID`); 0 when there is none
    /// to busy-poll, as for every socket on veth.
    ///
    /// # Errors
    ///
    /// [`XskError::Io`] if the getsockopt fails.
    pub fn napi_id(&self) -> Result<u32, XskError> {
        sys::napi_id(self.fd()).map_err(|e| {
            XskError::os(
                self.dev.name.as_str(),
                self.queue,
                "getsockopt(SO_INCOMING_NAPI_ID)",
                e,
            )
        })
    }

    fn fd(&self) -> RawFd {
        self.socket.as_raw_fd()
    }

    fn os_err(&self, step: &'static str) -> impl FnOnce(std::io::Error) -> XskError + '_ {
        move |e| XskError::os(self.dev.name.as_str(), self.queue, step, e)
    }
}

impl AsRawFd for XskSocket {
    /// The socket's descriptor (for epoll, XSKMAPs of other programs, socket options).
    /// Closing it, or keeping a duplicate open past the socket's drop, is the caller's
    /// problem: a duplicate keeps the queue bound and the XSKMAP entry alive.
    fn as_raw_fd(&self) -> RawFd {
        self.fd()
    }
}

impl AsFd for XskSocket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        // SAFETY: the descriptor is owned by `self.socket` and stays open for as long as
        // the borrow of `self` lasts.
        unsafe { BorrowedFd::borrow_raw(self.fd()) }
    }
}

impl fmt::Debug for XskSocket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XskSocket")
            .field("iface", &self.dev.name.as_str())
            .field("ifindex", &self.dev.ifindex)
            .field("queue", &self.queue)
            .field("fd", &self.fd())
            .field("mode", &self.mode)
            .field("registered", &self.registration.is_some())
            .field("in_fill", &self.in_fill)
            .field("counters", &self.counters)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_is_capped() {
        let steps: Vec<u64> = (0..8).map(|a| backoff(a).as_millis() as u64).collect();
        assert_eq!(steps, [10, 20, 40, 80, 160, 200, 200, 200]);
        assert_eq!(backoff(u32::MAX), Duration::from_millis(200));
        // Enough attempts fit the retry window to cover a ~1 s release.
        let mut total = Duration::ZERO;
        let mut attempts = 0;
        while total + backoff(attempts) <= BUSY_RETRY {
            total += backoff(attempts);
            attempts += 1;
        }
        assert!(attempts >= 10, "{attempts}");
    }

    #[test]
    fn xsk_socket_is_send() {
        fn send<T: Send>() {}
        send::<XskSocket>();
    }

    #[test]
    fn open_validates_before_any_system_call() {
        let bad = XskConfig {
            fill_ring: 1000,
            ..Default::default()
        };
        // The interface does not exist either; the config error comes first.
        let gone = crate::sys::Netdev {
            netns: crate::sys::NetnsId::current().unwrap(),
            ifindex: u32::MAX - 5,
            name: "nmnosuch0".parse().unwrap(),
        };
        let e = XskSocket::open(&gone, 0, &bad).unwrap_err();
        assert!(matches!(e, XskError::InvalidConfig { .. }), "{e:?}");
        let e = XskSocket::open(&gone, 0, &XskConfig::default()).unwrap_err();
        assert!(matches!(e, XskError::NoSuchInterface { .. }), "{e:?}");
    }
}
