//! `netmit serve`: a UDP request/response server that runs in each of the ways a server
//! can learn that requests arrived, so that the interrupt-mitigation modes can be
//! benchmarked with the same application on top.
//!
//! Every request is answered from the buffer it arrived in, with the same payload
//! ([`ReplyFormat::Echo`]: a client timestamps its requests in the payload and matches
//! the replies), or in sockperf's ping-pong protocol ([`ReplyFormat::Sockperf`]: sockperf
//! needs one flag flipped, see `reply.rs`).
//!
//! # The modes, and why there are three
//!
//! - [`Mode::Epoll`] (`epoll.rs`): a kernel UDP socket and a blocking `epoll_wait`.
//!   Interrupt-driven: each request that finds the server idle costs a device interrupt,
//!   a softirq that runs the NAPI poll and the UDP stack, and a wake-up of the server
//!   thread. The baseline, and what most servers do.
//! - [`Mode::BusyPoll`] (`busy_poll.rs`): the same socket and loop, with epoll busy
//!   polling and `prefer_busy_poll` set on the epoll instance (`EPIOCSPARAMS`). An
//!   `epoll_wait` that finds nothing polls the device's NAPI instance itself for up to
//!   `busy_poll_usecs` before it sleeps, so a request arriving meanwhile is picked up
//!   by the server's thread without an interrupt or a wake-up. With
//!   `irq-suspend-timeout` set on the NAPI (`netmit tune set IFACE
//!   --irq-suspend-timeout 20ms`, plus small `defer-hard-irqs`/`gro-flush-timeout`), the
//!   kernel also keeps the device's interrupts suspended for as long as `epoll_wait`
//!   keeps returning events: under load the server never takes an interrupt, and when
//!   load stops, interrupts come back by themselves. This is the mechanism of Cai and
//!   Karsten's study that netmit is built around; all it asks of the application is to
//!   set the parameters and keep calling `epoll_wait` (with a non-zero timeout).
//! - [`Mode::Xsk`] (`xsk.rs`): netmit's XDP program steers the requests into AF_XDP
//!   sockets, one per RX queue, and the server answers them from the UMEM frame they
//!   arrived in. No kernel stack, no socket buffers; the thread still sleeps in `poll(2)`
//!   when idle. Needs `netmit attach IFACE --steer 'proto=udp,dport=PORT,action=xsk'`.
//!
//! # Threads
//!
//! In the kernel modes each of [`ServeConfig::threads`] threads has its own socket (one
//! `SO_REUSEPORT` group: the kernel spreads clients over the sockets by a hash of their
//! address and port) and its own epoll instance. In xsk mode there is one thread per RX
//! queue of the interface. Threads can be pinned ([`ServeConfig::cpus`]). Every socket
//! is opened by [`Server::new`], so that a bad address, a port in use, a kernel without
//! `EPIOCSPARAMS` or a missing steering rule is an error before anything runs.
//!
//! # Measuring
//!
//! [`Server::run`] returns a [`ServeReport`]: requests, replies, bytes and rates in total
//! and per thread, samples per interval, and in the kernel modes the rise of `TcpExt:
//! BusyPollRxPackets` (packets that busy polling, not the softirq, took off the device:
//! the evidence that busy-poll mode did busy-poll) and the NAPI id each socket was served
//! by (0 means no NAPI: on a veth, busy polling needs native XDP attached or GRO on).
//!
//! # Example
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use netmit_lab::serve::{Mode, ServeConfig, Server};
//!
//! let mut cfg = ServeConfig::new("eth1", 9000);
//! cfg.mode = Mode::BusyPoll;
//! cfg.duration = Some(std::time::Duration::from_secs(10));
//! let server = Server::new(cfg)?;
//! println!("serving on {}", server.local_addr());
//! let report = server.run(&AtomicBool::new(false), |s| eprintln!("{:.0} req/s", s.requests_per_sec))?;
//! println!("{} requests, busy-polled packets: {:?}", report.counters.requests, report.busy_poll_rx_packets);
//! # Ok::<(), netmit_lab::serve::ServeError>(())
//! ```
//!
//! # Minimum kernel version
//!
//! `recvmmsg`/`sendmmsg` 3.0; `EPIOCSPARAMS` 6.9; IRQ suspension 6.13; AF_XDP as in
//! [`netmit_user::xsk`].

mod busy_poll;
mod epoll;
mod error;
mod reply;
mod report;
mod target;
pub(crate) mod udp;
mod xsk;

use std::{
    net::SocketAddr,
    sync::atomic::{AtomicBool, Ordering},
    thread,
    time::{Duration, Instant},
};

use serde::Serialize;

pub use busy_poll::BusyPollParams;
pub use error::ServeError;
pub use reply::{ReplyFormat, SOCKPERF_HEADER};
pub use report::{
    BusyPollReport, Counters, ServeReport, ServeSample, ThreadReport, XskThreadReport,
};
pub use target::{Target, resolve};

use netmit_user::xsk::{BindMode, WaitStrategy};
use report::Live;

/// The most datagrams one batch takes ([`ServeConfig::batch`]).
pub const MAX_BATCH: usize = 1024;
/// The most server threads.
pub const MAX_THREADS: usize = 1024;

/// How the server learns that requests arrived.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum Mode {
    /// Kernel socket, blocking `epoll_wait`: interrupt-driven.
    #[default]
    Epoll,
    /// Kernel socket, `epoll_wait` with busy polling preferred (`EPIOCSPARAMS`): the
    /// server's thread polls the device; IRQ suspension engages when the NAPI has an
    /// `irq-suspend-timeout`.
    BusyPoll,
    /// AF_XDP sockets fed by netmit's steering program, one per RX queue.
    Xsk,
}

impl Mode {
    /// The name used on the command line and in JSON (`epoll`, `busy-poll`, `xsk`).
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Epoll => "epoll",
            Mode::BusyPoll => "busy-poll",
            Mode::Xsk => "xsk",
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to serve, where and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeConfig {
    /// An interface name (its first IPv4, else global IPv6 address) or an IP address, in
    /// the calling thread's network namespace.
    pub target: String,
    /// UDP port (1-65535).
    pub port: u16,
    /// How requests are received.
    pub mode: Mode,
    /// Busy-poll parameters (busy-poll mode only).
    pub busy_poll: BusyPollParams,
    /// Server threads in the kernel modes (xsk mode runs one per RX queue).
    pub threads: usize,
    /// CPUs to pin the threads to, one per thread in order; empty for no pinning.
    pub cpus: Vec<usize>,
    /// Stop after this long; `None`: until the stop flag is set.
    pub duration: Option<Duration>,
    /// How requests become replies.
    pub reply: ReplyFormat,
    /// Datagrams (frames in xsk mode) per receive batch, 1..=[`MAX_BATCH`].
    pub batch: usize,
    /// AF_XDP bind mode (xsk mode only).
    pub xsk_bind: BindMode,
    /// xsk mode: when netmit is detached from the interface, wait for a new attachment
    /// and register in it instead of stopping with [`ServeError::Detached`].
    pub xsk_wait: bool,
    /// xsk mode: how a thread waits for its RX ring (default
    /// [`WaitStrategy::SpinThenSleep`] for 20 µs, chosen by measurement: see
    /// [`netmit_user::xsk::DEFAULT_SPIN`]).
    pub xsk_wait_strategy: WaitStrategy,
    /// Interval of the samples in the report and of the progress callback; zero for
    /// none.
    pub sample_interval: Duration,
    /// Receive buffer of each kernel socket in bytes (`SO_RCVBUFFORCE` with
    /// `CAP_NET_ADMIN`, else `SO_RCVBUF`, capped by `net.core.rmem_max`); 0 keeps the
    /// kernel's default (`net.core.rmem_default`, 208 KiB). The kernel charges each
    /// datagram's whole buffer (often a 4 KiB page for a 64-byte request), so the
    /// default holds only ~50 requests: a burst longer than that is dropped however fast
    /// the server is.
    pub rcvbuf: usize,
}

/// The default [`ServeConfig::rcvbuf`]: 4 MiB, ~1,000 page-sized requests.
pub const DEFAULT_RCVBUF: usize = 4 << 20;

impl ServeConfig {
    /// A configuration with defaults: epoll mode, one thread, echo replies, batches of
    /// 64, busy polling for 64 µs with a budget of 64 (busy-poll mode), until stopped,
    /// samples every second.
    pub fn new(target: &str, port: u16) -> Self {
        Self {
            target: target.to_string(),
            port,
            mode: Mode::Epoll,
            busy_poll: BusyPollParams::default(),
            threads: 1,
            cpus: Vec::new(),
            duration: None,
            reply: ReplyFormat::Echo,
            batch: 64,
            xsk_bind: BindMode::Auto,
            xsk_wait: false,
            xsk_wait_strategy: WaitStrategy::default(),
            sample_interval: Duration::from_secs(1),
            rcvbuf: DEFAULT_RCVBUF,
        }
    }

    /// Checks everything that needs no system call.
    ///
    /// # Errors
    ///
    /// [`ServeError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<(), ServeError> {
        let invalid = |what: String| Err(ServeError::InvalidConfig { what });
        if self.port == 0 {
            return invalid("port 0: give a port from 1 to 65535".into());
        }
        if self.threads == 0 || self.threads > MAX_THREADS {
            return invalid(format!("{} threads: use 1 to {MAX_THREADS}", self.threads));
        }
        if self.batch == 0 || self.batch > MAX_BATCH {
            return invalid(format!("batch {}: use 1 to {MAX_BATCH}", self.batch));
        }
        if self.busy_poll.usecs > i32::MAX as u32 {
            return invalid(format!(
                "busy-poll usecs {}: at most {}",
                self.busy_poll.usecs,
                i32::MAX
            ));
        }
        if self.mode != Mode::Xsk && !self.cpus.is_empty() && self.cpus.len() != self.threads {
            return invalid(format!(
                "{} CPU(s) for {} thread(s): give one CPU per thread",
                self.cpus.len(),
                self.threads
            ));
        }
        if let Some(&cpu) = self.cpus.iter().find(|&&c| c >= libc::CPU_SETSIZE as usize) {
            return invalid(format!("CPU {cpu} is out of range"));
        }
        Ok(())
    }
}

/// When the threads stop: the caller's stop flag, an error in another thread, or the
/// end of the configured duration.
pub(crate) struct Control<'a> {
    stop: &'a AtomicBool,
    abort: AtomicBool,
    deadline: Option<Instant>,
}

impl Control<'_> {
    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.abort.load(Ordering::Relaxed)
    }

    /// How long the next wait may last (at most `max`), or `None` when the run is over.
    pub(crate) fn wait_budget(&self, max: Duration) -> Option<Duration> {
        if self.stopped() {
            return None;
        }
        match self.deadline {
            None => Some(max),
            Some(d) => {
                let left = d.saturating_duration_since(Instant::now());
                (!left.is_zero()).then(|| left.min(max))
            }
        }
    }
}

enum Worker {
    Kernel(Box<epoll::KernelWorker>),
    Xsk(Box<xsk::XskWorker>),
}

impl Worker {
    fn run(self, thread: usize, ctl: &Control, live: &Live) -> Result<ThreadReport, ServeError> {
        match self {
            Worker::Kernel(w) => w.run(thread, ctl, live),
            Worker::Xsk(w) => w.run(thread, ctl, live),
        }
    }
}

/// A server with every socket open, ready to [`Server::run`].
pub struct Server {
    cfg: ServeConfig,
    target: Target,
    workers: Vec<Worker>,
    socket_options: bool,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("cfg", &self.cfg)
            .field("target", &self.target)
            .field("threads", &self.workers.len())
            .finish()
    }
}

impl Server {
    /// Resolves the target and opens every socket: the kernel modes bind their sockets
    /// (and, in busy-poll mode, set the epoll busy-poll parameters); xsk mode checks the
    /// steering rules and binds and registers one AF_XDP socket per RX queue. Create
    /// and run the server on a thread of the network namespace to serve in.
    ///
    /// # Errors
    ///
    /// [`ServeError::InvalidConfig`], [`ServeError::UnknownTarget`],
    /// [`ServeError::NoAddress`], [`ServeError::AddressNotLocal`],
    /// [`ServeError::PortInUse`], [`ServeError::PortNotPermitted`];
    /// busy-poll mode: [`ServeError::EpollParamsUnsupported`] (kernels before 6.9),
    /// [`ServeError::BudgetNotPermitted`]; xsk mode: [`ServeError::XskNeedsInterface`],
    /// [`ServeError::XskNotPermitted`],
    /// [`ServeError::NotAttached`], [`ServeError::NotSteered`], [`ServeError::Xsk`].
    pub fn new(cfg: ServeConfig) -> Result<Server, ServeError> {
        cfg.validate()?;
        let target = target::resolve(&cfg.target)?;
        let mut socket_options = false;
        let workers = match cfg.mode {
            Mode::Epoll | Mode::BusyPoll => {
                let bp = (cfg.mode == Mode::BusyPoll).then_some(&cfg.busy_poll);
                let mut workers = Vec::new();
                socket_options = bp.is_some();
                for sock in udp::bind_sockets(target.addr, cfg.port, cfg.threads)? {
                    if cfg.rcvbuf > 0 {
                        udp::set_rcvbuf(&sock, cfg.rcvbuf)?;
                    }
                    let (w, opts) = epoll::KernelWorker::new(sock, cfg.batch, cfg.reply, bp)?;
                    socket_options &= opts;
                    workers.push(Worker::Kernel(Box::new(w)));
                }
                workers
            }
            Mode::Xsk => {
                let iface = target
                    .iface
                    .clone()
                    .ok_or(ServeError::XskNeedsInterface { addr: target.addr })?;
                xsk::check_steering(&iface, target.addr, cfg.port)?;
                let queues = xsk::rx_queues(&iface)?;
                if !cfg.cpus.is_empty() && cfg.cpus.len() != queues.len() {
                    return Err(ServeError::InvalidConfig {
                        what: format!(
                            "{} CPU(s) for {} RX queue(s) of {iface}: xsk mode runs one \
                             thread per queue, give one CPU per queue",
                            cfg.cpus.len(),
                            queues.len()
                        ),
                    });
                }
                queues
                    .into_iter()
                    .map(|q| {
                        xsk::XskWorker::open(&iface, q, &cfg).map(|w| Worker::Xsk(Box::new(w)))
                    })
                    .collect::<Result<_, _>>()?
            }
        };
        Ok(Server {
            cfg,
            target,
            workers,
            socket_options,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ServeConfig {
        &self.cfg
    }

    /// The address and port served on.
    pub fn local_addr(&self) -> SocketAddr {
        SocketAddr::new(self.target.addr, self.cfg.port)
    }

    /// The interface served on, if known (always in xsk mode).
    pub fn iface(&self) -> Option<&str> {
        self.target.iface.as_ref().map(|d| d.name.as_str())
    }

    /// Number of server threads [`Server::run`] starts.
    pub fn threads(&self) -> usize {
        self.workers.len()
    }

    /// Serves until `stop` is set or the configured duration has passed; calls
    /// `progress` with a sample every [`ServeConfig::sample_interval`].
    ///
    /// # Errors
    ///
    /// The first error of any thread (the others then stop): [`ServeError::Affinity`]
    /// for a CPU that cannot be used, [`ServeError::Io`] for a failed `epoll_wait` or
    /// `recvmmsg`, [`ServeError::Xsk`] for a failed ring operation,
    /// [`ServeError::ThreadPanicked`].
    pub fn run(
        self,
        stop: &AtomicBool,
        mut progress: impl FnMut(&ServeSample),
    ) -> Result<ServeReport, ServeError> {
        let Server {
            cfg,
            target,
            workers,
            socket_options,
        } = self;
        let kernel_mode = cfg.mode != Mode::Xsk;
        let busy_before = kernel_mode.then(busy_poll::busy_poll_rx_packets).flatten();
        let start = Instant::now();
        let ctl = Control {
            stop,
            abort: AtomicBool::new(false),
            deadline: cfg.duration.map(|d| start + d),
        };
        let live: Vec<Live> = workers.iter().map(|_| Live::default()).collect();
        let mut samples = Vec::new();
        let results = thread::scope(|scope| {
            let handles: Vec<_> = workers
                .into_iter()
                .enumerate()
                .map(|(i, w)| {
                    let (ctl, live) = (&ctl, &live[i]);
                    let cpu = cfg.cpus.get(i).copied();
                    scope.spawn(move || {
                        let r = pin_to_cpu(i, cpu).and_then(|()| w.run(i, ctl, live));
                        if r.is_err() {
                            ctl.abort.store(true, Ordering::Relaxed);
                        }
                        r.map(|mut t| {
                            t.cpu = cpu;
                            t
                        })
                    })
                })
                .collect();
            let mut last = (start, 0u64, 0u64);
            while !handles.iter().all(|h| h.is_finished()) {
                thread::sleep(Duration::from_millis(20));
                if cfg.sample_interval.is_zero() || last.0.elapsed() < cfg.sample_interval {
                    continue;
                }
                let now = Instant::now();
                let requests: u64 = live
                    .iter()
                    .map(|l| l.requests.load(Ordering::Relaxed))
                    .sum();
                let replies: u64 = live.iter().map(|l| l.replies.load(Ordering::Relaxed)).sum();
                let secs = now.duration_since(last.0).as_secs_f64();
                let sample = ServeSample {
                    at_secs: now.duration_since(start).as_secs_f64(),
                    secs,
                    requests: requests - last.1,
                    replies: replies - last.2,
                    requests_per_sec: (requests - last.1) as f64 / secs.max(1e-9),
                };
                progress(&sample);
                samples.push(sample);
                last = (now, requests, replies);
            }
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or(Err(ServeError::ThreadPanicked)))
                .collect::<Vec<_>>()
        });
        let seconds = start.elapsed().as_secs_f64().max(1e-9);
        let busy_after = kernel_mode.then(busy_poll::busy_poll_rx_packets).flatten();
        let per_thread = results.into_iter().collect::<Result<Vec<_>, _>>()?;
        let mut counters = Counters::default();
        for t in &per_thread {
            counters.add(&t.counters);
        }
        let stopped =
            stop.load(Ordering::Relaxed) && cfg.duration.is_none_or(|d| start.elapsed() < d);
        Ok(ServeReport {
            mode: cfg.mode,
            reply: cfg.reply,
            iface: target.iface.map(|d| d.name.to_string()),
            address: target.addr,
            port: cfg.port,
            threads: per_thread.len(),
            seconds,
            stopped,
            counters,
            bytes: counters.request_bytes,
            requests_per_sec: counters.requests as f64 / seconds,
            replies_per_sec: counters.replies as f64 / seconds,
            busy_poll: (cfg.mode == Mode::BusyPoll).then_some(BusyPollReport {
                usecs: cfg.busy_poll.usecs,
                budget: cfg.busy_poll.budget,
                prefer_busy_poll: true,
                socket_options,
            }),
            busy_poll_rx_packets: busy_before
                .zip(busy_after)
                .map(|(b, a)| a.saturating_sub(b)),
            per_thread,
            samples,
        })
    }
}

/// Pins the calling thread to `cpu`, if given.
fn pin_to_cpu(thread: usize, cpu: Option<usize>) -> Result<(), ServeError> {
    let Some(cpu) = cpu else { return Ok(()) };
    netmit_user::sys::cpu::CpuSet::of(&[cpu])
        .and_then(|set| netmit_user::sys::cpu::pin(0, &set))
        .map_err(|source| ServeError::Affinity {
            thread,
            cpu,
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invalid(cfg: &ServeConfig) -> String {
        match cfg.validate() {
            Err(ServeError::InvalidConfig { what }) => what,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn validate_names_the_field() {
        let ok = ServeConfig::new("lo", 9000);
        ok.validate().unwrap();
        assert!(invalid(&ServeConfig::new("lo", 0)).starts_with("port 0"));
        let mut c = ServeConfig::new("lo", 9000);
        c.threads = 0;
        assert!(invalid(&c).contains("threads"));
        c.threads = 2;
        c.cpus = vec![1];
        assert!(invalid(&c).contains("one CPU per thread"));
        c.cpus = vec![1, 100_000];
        assert!(invalid(&c).contains("out of range"));
        let mut c = ServeConfig::new("lo", 9000);
        c.batch = 0;
        assert!(invalid(&c).contains("batch"));
        c.batch = 64;
        c.busy_poll.usecs = u32::MAX;
        assert!(invalid(&c).contains("usecs"));
    }

    #[test]
    fn control_ends_at_the_deadline_or_the_flag() {
        let stop = AtomicBool::new(false);
        let ctl = Control {
            stop: &stop,
            abort: AtomicBool::new(false),
            deadline: Some(Instant::now() + Duration::from_millis(30)),
        };
        let first = ctl.wait_budget(Duration::from_secs(1)).unwrap();
        assert!(first <= Duration::from_millis(30));
        thread::sleep(Duration::from_millis(40));
        assert_eq!(ctl.wait_budget(Duration::from_secs(1)), None);
        let ctl = Control {
            stop: &stop,
            abort: AtomicBool::new(false),
            deadline: None,
        };
        assert_eq!(
            ctl.wait_budget(Duration::from_millis(100)),
            Some(Duration::from_millis(100))
        );
        stop.store(true, Ordering::Relaxed);
        assert_eq!(ctl.wait_budget(Duration::from_millis(100)), None);
    }

    /// A whole run on loopback in epoll mode, without privileges.
    #[test]
    fn serves_on_loopback_and_reports() {
        let mut cfg = ServeConfig::new("127.0.0.1", 0);
        cfg.port = {
            let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            probe.local_addr().unwrap().port()
        };
        cfg.duration = Some(Duration::from_millis(600));
        cfg.threads = 2;
        cfg.sample_interval = Duration::from_millis(200);
        let server = Server::new(cfg).unwrap();
        let to = server.local_addr();
        assert_eq!(server.iface(), Some("lo"));
        let client = thread::spawn(move || {
            let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
            s.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut ok = 0;
            for i in 0..50u8 {
                s.send_to(&[i; 7], to).unwrap();
                let mut buf = [0u8; 16];
                if let Ok((n, from)) = s.recv_from(&mut buf) {
                    assert_eq!((from, &buf[..n]), (to, &[i; 7][..]));
                    ok += 1;
                }
            }
            ok
        });
        let report = server.run(&AtomicBool::new(false), |_| {}).unwrap();
        assert_eq!(client.join().unwrap(), 50);
        assert_eq!(
            (report.counters.requests, report.counters.replies),
            (50, 50)
        );
        assert_eq!(report.bytes, 350);
        assert_eq!(report.threads, 2);
        assert!(!report.stopped);
        assert!(report.samples.len() >= 2, "{:?}", report.samples);
        assert!(report.busy_poll.is_none());
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["mode"], "epoll");
        assert_eq!(json["requests"], 50);
        assert_eq!(json["per_thread"].as_array().unwrap().len(), 2);
    }
}
