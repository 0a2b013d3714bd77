//! `netmit load`: a load client for UDP request/response benchmarks that outruns the
//! server it measures, with per-reply latency, in an open or a closed loop.
//!
//! # Why XDP on both sides
//!
//! The benchmarks compare a server (`netmit serve`) under interrupt-mitigation settings,
//! so the client must never be the bottleneck. A socket client on these machines tops out
//! near 370k requests a second, about half of what the server reaches (~700k). So:
//!
//! * **Requests** of an open loop go out, by default ([`Sender::Socket`]), from kernel
//!   UDP sockets, one per flow, paced in user space against an absolute schedule
//!   (`pace.rs`) with `sendmmsg` of the requests due, at most [`SOCKET_BURST`] per call;
//!   user space writes the stamp (CLOCK_MONOTONIC, the clock of `bpf_ktime_get_ns`, in
//!   the generator's layout). The alternative ([`Sender::Generator`]) and the closed
//!   loop's seeds use the traffic generator (`netmit_user::gen`): `BPF_PROG_TEST_RUN`
//!   live frames, millions of frames a second on one core, paced to an exact count.
//!   Asked for a send stamp (`GenConfig::stamp`), its program writes
//!   `bpf_ktime_get_ns()` into each request's payload.
//!
//!   Why sockets for the open loop: the generator needs bursts of at least
//!   [`MIN_OPEN_BURST`] (each live-frames call sets up a page pool, and few frames per
//!   call starve the receiver), which put 1.7-2 ms into the p99 of `bench modes` at 50%
//!   of saturation. A socket sender reaches about 370k requests/s on one core here,
//!   above the baseline's saturation (~250k/s on the bench modes testbed), and sends
//!   1-4 per call. Measured on a busy machine (both cores taken by other jobs, so only
//!   counts are solid): at 50% of saturation 1.62 requests per call (max 4) against 16,
//!   p50 0.74 ms against 1.71 ms. Not tried for lack of time: AF_XDP transmit from the
//!   client (copy mode on a veth builds an skb per frame, much like the socket path, and
//!   the client's XDP program already holds the queue) and live frames on a reused page
//!   pool (the kernel sets one up per call; there is no such option). See
//!   docs/modes.md for the figures.
//! * **Replies** are taken off the client's interface by the XDP program `netmit_load`
//!   (native mode), before any socket or skb: it computes `now - send time` from the
//!   stamp the server echoed, counts it in a per-CPU histogram and drops the reply (or,
//!   in a closed loop, sends the next request). Anything else (ARP, ND, other traffic)
//!   is passed to the kernel.
//!
//! # Timestamps in the payload
//!
//! Both clocks are the kernel's CLOCK_MONOTONIC read by the two XDP programs of the
//! same machine, so there is no clock offset and no per-request state: the reply carries
//! its own send time ([`netmit_common::STAMP_MAGIC`] marks it). The latency measured is
//! from the generator's program writing the frame to the client's XDP program seeing
//! the reply: both veth hops, the server's receive path, the server and its reply;
//! not the client's own stack, which the generator's requests never touch (the socket
//! sender's stamp is taken just before `sendmmsg`, so its latency also covers the
//! client's UDP send path). The UDP checksum stays
//! right: the generator updates it incrementally over the stamp's four 16-bit words (the
//! template's are zero), and the closed loop computes it over the whole datagram.
//!
//! # Histogram
//!
//! HDR-style log-linear buckets ([`netmit_common::latency_bucket`], one definition for
//! the kernel and here): exact below 128 ns, then 64 sub-buckets per power of two, so a
//! bucket spans at most 1/64 (1.6 %) of its values and its midpoint is within 0.8 % of
//! each; 2048 buckets reach 136 s. Per-CPU in the kernel, summed here; percentiles come
//! from an [`hdrhistogram`] loaded with the buckets (see `histogram.rs`); the mean is
//! exact (the kernel also sums the latencies).
//!
//! # Open and closed loop
//!
//! * [`Pattern::Open`]: requests at a fixed rate over [`LoadConfig::flows`] source ports,
//!   whatever the replies do. Measures latency at a given load and shows loss when the
//!   server cannot keep up.
//! * [`Pattern::Closed`]: `window` flows, each with exactly one request outstanding
//!   (flow = source port = slot). The generator sends one request per slot to start;
//!   from then on `netmit_load` turns each reply into its flow's next request in place
//!   (MACs, addresses and ports swapped, a fresh stamp, the UDP checksum computed over
//!   the datagram: a reply a kernel sent through a veth may carry only a partial
//!   checksum) and sends it back out of the interface (`bpf_redirect` to itself rather
//!   than `XDP_TX`: on a veth, `XDP_TX` wakes the peer only if the peer has an XDP
//!   program; see `netmit-ebpf/src/load.rs`). The load follows the server's speed: the maximum
//!   rate at that concurrency. A slot whose request was lost would stop the loop for that
//!   slot, so user space watches each slot's last send time (a map) and **re-seeds** a
//!   slot that saw nothing for [`LoadConfig::reseed_timeout`]: it first writes the
//!   current time into the slot (so a late reply to the old request is recognised as
//!   stale and dropped, and the window never grows) and then sends a new request with
//!   the generator. The window therefore never decays when the server drops requests.
//!   At the end, a control map tells the program to drain: replies are still measured,
//!   but no new request goes out.
//!
//! # Measuring
//!
//! First the warmup (counters and histogram are read at its end), then the measured
//! window, then a short drain (up to 500 ms, until every request is answered or nothing
//! arrived for 20 ms) whose replies count for the window. Requests in flight when the
//! warmup ends may be answered in the window; with latencies of microseconds that is a
//! handful of replies. Samples (also shown live by `netmit load`) come every
//! [`LoadConfig::sample_interval`].
//!
//! # Where things run
//!
//! Create and run a [`LoadClient`] on a thread of the interface's network namespace
//! (as for the generator: the kernel resolves the interface in the calling thread's).
//! On a veth, the client's XDP program runs in the NAPI poll of the client's end, which
//! the *server's* transmit schedules, in softirq on the server's CPU (or in the NAPI
//! thread with threaded NAPI): the server's core pays for taking its replies off the
//! wire, much as a NIC's DMA would not. The generator's sends (open loop) and re-seeds
//! run on the calling thread, which [`LoadConfig::cpu`] pins.
//!
//! The program is attached through a bpf_link that is never pinned: dropping the client,
//! or the process ending in any way, detaches it. The server's side of a veth must have
//! a NAPI instance (GRO on or native XDP) to receive the requests, which the generator
//! and the closed loop send with XDP redirects.
//!
//! # Minimum kernel version
//!
//! 5.18 (live frames of the generator); bpf_link for XDP 5.9.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! use netmit_lab::load::{LoadClient, LoadConfig, Pattern};
//!
//! let mut cfg = LoadConfig::new(
//!     "veth0",
//!     "198.18.0.1:9000".parse()?,
//!     Pattern::Closed { window: 16 },
//! );
//! cfg.duration = std::time::Duration::from_secs(5);
//! let mut client = LoadClient::new(cfg)?;
//! let report = client.run(&AtomicBool::new(false), |s| {
//!     eprintln!("{:.0} replies/s, p99 {} ns", s.received_pps, s.latency.p99_ns)
//! })?;
//! println!(
//!     "{:.0} replies/s, p50 {} ns, p99 {} ns, {} re-seeded",
//!     report.achieved_pps, report.latency.p50_ns, report.latency.p99_ns, report.reseeded
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod histogram;
mod neigh;
mod pace;
mod program;
mod report;
mod run;
mod slots;
mod socket;

use std::{
    net::{IpAddr, SocketAddr},
    sync::atomic::AtomicBool,
    time::Duration,
};

use netmit_common::{LOAD_MODE_CLOSED, LOAD_MODE_OPEN, LoadParams, STAMP_LEN};
use serde::Serialize;

pub use error::LoadError;
pub use histogram::{Buckets, HistBucket, LatencySummary};
pub use pace::{Arrivals, MAX_LAG};
pub use program::{LoadProgram, MAX_WINDOW, monotonic_ns};
pub use report::{LoadReport, LoadSample, SendReport};

use crate::r#gen::{GenConfig, Generator, MAX_FRAME, MIN_FRAME, MacAddr, PortRange, Rate};

/// How requests are sent.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Pattern {
    /// At a fixed rate, whatever the replies do.
    Open {
        /// Requests per second (at least 1).
        rate_pps: f64,
    },
    /// `window` requests outstanding at all times, one per flow: each reply triggers the
    /// flow's next request.
    Closed {
        /// Outstanding requests (flows), 1..=[`MAX_WINDOW`].
        window: u32,
    },
}

/// What sends the requests of an open loop.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Sender {
    /// Kernel UDP sockets, one per flow, `sendmmsg` of the requests due (at most
    /// [`LoadConfig::burst`], default [`SOCKET_BURST`]) on an absolute schedule: the
    /// default.
    #[default]
    Socket,
    /// The live-frames generator, in bursts of at least [`MIN_OPEN_BURST`].
    Generator,
}

impl Sender {
    /// Name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Sender::Socket => "socket",
            Sender::Generator => "generator",
        }
    }
}

/// The most requests one call of the socket sender sends by default.
pub const SOCKET_BURST: u32 = 4;
/// The largest burst the socket sender accepts.
pub const MAX_SOCKET_BURST: u32 = 64;

/// What to send, where, and how long to measure.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadConfig {
    /// Interface to send out of and receive on, in the calling thread's network
    /// namespace. `netmit_load` is attached to it in native mode for the client's life.
    pub iface: String,
    /// The server's address and UDP port.
    pub server: SocketAddr,
    /// Open or closed loop.
    pub pattern: Pattern,
    /// UDP payload bytes of a request: at least [`STAMP_LEN`] (the stamp), and for IPv4
    /// at least 22 (a 64-byte frame); the frame at most 1500 bytes.
    pub payload_len: usize,
    /// Open loop: flows (source ports `sport_base..sport_base + flows`). A closed loop
    /// has one flow per slot of its window and ignores this.
    pub flows: u32,
    /// Source port of flow 0.
    pub sport_base: u16,
    /// Time to run before measuring.
    pub warmup: Duration,
    /// The measured window.
    pub duration: Duration,
    /// Pin the calling thread (the generator's sends and the re-seeding) to this CPU
    /// for the run.
    pub cpu: Option<usize>,
    /// The server's MAC address (or, if it is behind a router, the router's); default:
    /// from the neighbour table, resolved by ARP/ND if needed.
    pub server_mac: Option<MacAddr>,
    /// Source address; default: the interface's first address of the server's family.
    pub src_ip: Option<IpAddr>,
    /// Closed loop: a slot with no reply for this long gets a new request.
    pub reseed_timeout: Duration,
    /// Interval of the samples; zero for none.
    pub sample_interval: Duration,
    /// How long to wait for the server's MAC address to be resolved.
    pub resolve_timeout: Duration,
    /// Open loop: with [`Sender::Generator`] the requests per call (`None` for
    /// [`open_loop_burst`] of the rate); with [`Sender::Socket`] the most requests per
    /// call (`None` for [`SOCKET_BURST`], at most [`MAX_SOCKET_BURST`]).
    pub burst: Option<u32>,
    /// Open loop: what sends the requests.
    pub sender: Sender,
    /// Open loop: when requests arrive (the socket sender only; the generator sends
    /// evenly spaced bursts).
    pub arrivals: Arrivals,
}

/// The fewest requests one generator call sends in an open loop.
///
/// Every `BPF_PROG_TEST_RUN` live-frames call sets up and tears down its own page pool,
/// and the frames it sent are released on the *receiver's* core when the server has read
/// them. At a few frames per call that per-call work starves the receiver: on the veth
/// testbed a `netmit serve` that answers 84k requests/s in a closed loop dropped 9% of a
/// 24k/s open loop sent 2 frames per call (6,395 socket drops in 3 s), 1.6% at 8 frames,
/// and 0.03% at 16 (24 drops); at 120k/s, 16 per call still lost 5% and 64 per call
/// 0.4%. Arrivals are therefore grouped in bursts of at least 16, and at most 2,000
/// calls are made a second (at 24k/s a burst of 16 every 0.67 ms, at 120k/s 60 every
/// 0.5 ms): latency includes queueing behind the other requests of a burst, the same
/// for every server configuration.
pub const MIN_OPEN_BURST: u32 = 16;

/// Requests per generator call at `rate_pps` in an open loop: at least
/// [`MIN_OPEN_BURST`], at most 2,000 calls a second, at most 1024 per call.
pub fn open_loop_burst(rate_pps: f64) -> u32 {
    ((rate_pps / 2_000.0) as u32).clamp(MIN_OPEN_BURST, 1024)
}

impl LoadConfig {
    /// A configuration with defaults: 22-byte payloads (64-byte IPv4 frames), 16 flows
    /// from source port 40000, 1 s of warmup, 5 s measured, re-seeding after 100 ms,
    /// samples every second.
    pub fn new(iface: &str, server: SocketAddr, pattern: Pattern) -> Self {
        Self {
            iface: iface.to_string(),
            server,
            pattern,
            payload_len: 22,
            flows: 16,
            sport_base: 40000,
            warmup: Duration::from_secs(1),
            duration: Duration::from_secs(5),
            cpu: None,
            server_mac: None,
            src_ip: None,
            reseed_timeout: Duration::from_millis(100),
            sample_interval: Duration::from_secs(1),
            resolve_timeout: Duration::from_secs(1),
            burst: None,
            sender: Sender::default(),
            arrivals: Arrivals::default(),
        }
    }

    /// The socket sender's most requests per call.
    pub fn socket_burst(&self) -> u32 {
        self.burst.unwrap_or(SOCKET_BURST)
    }

    /// The flows actually used: [`LoadConfig::flows`] in an open loop, the window in a
    /// closed one.
    pub fn flows_used(&self) -> u32 {
        match self.pattern {
            Pattern::Open { .. } => self.flows,
            Pattern::Closed { window } => window,
        }
    }

    /// Bytes of a request frame (Ethernet header on, no FCS).
    pub fn frame_len(&self) -> usize {
        udp_offset(self.server.ip()) + 8 + self.payload_len
    }

    /// The smallest payload for the server's family: room for the stamp, and a frame of
    /// at least 64 bytes.
    pub fn min_payload(server: IpAddr) -> usize {
        STAMP_LEN.max(MIN_FRAME - udp_offset(server) - 8)
    }

    /// Checks everything that needs no system call.
    ///
    /// # Errors
    ///
    /// [`LoadError::InvalidConfig`] naming the first offending field.
    pub fn validate(&self) -> Result<(), LoadError> {
        let invalid = |what: String| Err(LoadError::InvalidConfig { what });
        match self.pattern {
            Pattern::Open { rate_pps } if !(rate_pps.is_finite() && rate_pps >= 1.0) => {
                return invalid(format!(
                    "rate {rate_pps} requests/s: give at least 1 request per second"
                ));
            }
            Pattern::Closed { window } if window == 0 || window > MAX_WINDOW => {
                return invalid(format!(
                    "window {window}: use 1 to {MAX_WINDOW} outstanding requests"
                ));
            }
            _ => {}
        }
        if self.server.port() == 0 {
            return invalid("server port 0: give the server's UDP port".into());
        }
        let flows = self.flows_used();
        if flows == 0 {
            return invalid("0 flows: use at least 1".into());
        }
        if self.sport_base == 0 || u32::from(self.sport_base) + flows - 1 > 65535 {
            return invalid(format!(
                "{flows} flows from source port {} need ports beyond 65535: use a lower \
                 source port or fewer flows",
                self.sport_base
            ));
        }
        if self.payload_len < STAMP_LEN {
            return invalid(format!(
                "a payload of {} bytes has no room for the {STAMP_LEN}-byte send stamp",
                self.payload_len
            ));
        }
        let min = Self::min_payload(self.server.ip());
        if self.payload_len < min {
            return invalid(format!(
                "a payload of {} bytes makes a frame shorter than {MIN_FRAME} bytes: use at \
                 least {min} bytes",
                self.payload_len
            ));
        }
        if self.frame_len() > MAX_FRAME {
            return invalid(format!(
                "a payload of {} bytes makes a {}-byte frame: use at most {} bytes",
                self.payload_len,
                self.frame_len(),
                MAX_FRAME - udp_offset(self.server.ip()) - 8
            ));
        }
        if self.duration.is_zero() {
            return invalid("the duration must be positive".into());
        }
        if self.reseed_timeout.is_zero() {
            return invalid("the re-seed timeout must be positive".into());
        }
        if let Pattern::Open { .. } = self.pattern {
            match (self.sender, self.burst) {
                (Sender::Socket, Some(b)) if b == 0 || b > MAX_SOCKET_BURST => {
                    return invalid(format!(
                        "burst {b}: the socket sender sends 1 to {MAX_SOCKET_BURST} \
                         requests per call"
                    ));
                }
                (Sender::Generator, Some(0)) => {
                    return invalid("burst 0: send at least 1 request per call".into());
                }
                _ => {}
            }
            if self.sender == Sender::Generator && self.arrivals != Arrivals::Even {
                return invalid(
                    "Poisson arrivals need the socket sender: the generator sends evenly \
                     spaced bursts"
                        .into(),
                );
            }
        }
        if let Some(src) = self.src_ip
            && src.is_ipv4() != self.server.is_ipv4()
        {
            return invalid(format!(
                "source {src} and server {} are of different families",
                self.server.ip()
            ));
        }
        Ok(())
    }

    fn params(&self) -> LoadParams {
        LoadParams {
            server_port: self.server.port(),
            sport_base: self.sport_base,
            flows: self.flows_used(),
            mode: match self.pattern {
                Pattern::Open { .. } => LOAD_MODE_OPEN,
                Pattern::Closed { .. } => LOAD_MODE_CLOSED,
            },
            _pad: 0,
        }
    }

    fn gen_config(&self, server_mac: MacAddr) -> GenConfig {
        let mut g = GenConfig::new(
            &self.iface,
            server_mac,
            self.server.ip(),
            PortRange::single(self.server.port()),
        );
        g.src_ip = self.src_ip;
        g.src_port = self.sport_base;
        g.flows = self.flows_used();
        g.size = self.frame_len();
        g.rate = match self.pattern {
            Pattern::Open { rate_pps } => Rate::Pps(rate_pps.round() as u64),
            Pattern::Closed { .. } => Rate::Max,
        };
        if let Pattern::Open { rate_pps } = self.pattern {
            g.burst = Some(self.burst.unwrap_or_else(|| open_loop_burst(rate_pps)));
        }
        g.stamp = true;
        g.sample_interval = self.sample_interval;
        g
    }
}

/// Offset of the UDP header in a request: Ethernet and IPv4 (no options) or IPv6.
fn udp_offset(ip: IpAddr) -> usize {
    if ip.is_ipv4() { 14 + 20 } else { 14 + 40 }
}

/// A load client: `netmit_load` attached to the interface and a generator ready to send.
/// Create and run it on a thread of the interface's network namespace; it can run
/// several times.
pub struct LoadClient {
    cfg: LoadConfig,
    server_mac: MacAddr,
    /// Dropped first: detaches `netmit_load`.
    program: LoadProgram,
    generator: Generator,
    /// Open loop with [`Sender::Socket`]: the flows' sockets.
    sockets: Option<socket::SocketTx>,
}

impl std::fmt::Debug for LoadClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadClient")
            .field("cfg", &self.cfg)
            .field("server_mac", &self.server_mac)
            .finish_non_exhaustive()
    }
}

impl LoadClient {
    /// Validates `cfg`, resolves the interface and the server's MAC address, sets up the
    /// generator and attaches `netmit_load` to the interface (native mode, detached when
    /// the client is dropped). Nothing is attached when any step fails.
    ///
    /// # Minimum kernel version
    ///
    /// 5.18 (see the [module docs](self)).
    ///
    /// # Errors
    ///
    /// Invalid parameters, an unknown interface, no route or neighbour entry for the
    /// server, missing privileges, or a failed load or attach.
    pub fn new(cfg: LoadConfig) -> Result<Self, LoadError> {
        cfg.validate()?;
        let ifindex = ifindex(&cfg.iface)?;
        if !netmit_user::sys::bpf::has_bpf_privileges() {
            return Err(LoadError::NotPermitted);
        }
        let server_mac = match cfg.server_mac {
            Some(m) => m,
            None => neigh::resolve(&cfg.iface, ifindex, cfg.server.ip(), cfg.resolve_timeout)?,
        };
        let generator = Generator::new(cfg.gen_config(server_mac))?;
        let sockets = match cfg.pattern {
            Pattern::Open { .. } if cfg.sender == Sender::Socket => Some(socket::SocketTx::new(
                &cfg.iface,
                generator.source().1,
                cfg.sport_base,
                cfg.flows,
                cfg.server,
                cfg.payload_len,
                cfg.socket_burst() as usize,
            )?),
            _ => None,
        };
        let mut program = LoadProgram::load(cfg.params(), cfg.flows_used())?;
        program.attach(&cfg.iface, ifindex)?;
        Ok(Self {
            cfg,
            server_mac,
            program,
            generator,
            sockets,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &LoadConfig {
        &self.cfg
    }

    /// The server's MAC address the requests go to.
    pub fn server_mac(&self) -> MacAddr {
        self.server_mac
    }

    /// The source MAC and IP address of the requests (defaults resolved).
    pub fn source(&self) -> (MacAddr, IpAddr) {
        self.generator.source()
    }

    /// Runs the warmup, the measured window and the drain, calling `on_sample` with each
    /// sample, until the end or until `stop` is set (then the window is what ran of it).
    ///
    /// # Errors
    ///
    /// A failed send, map access or CPU pinning.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        mut on_sample: impl FnMut(&LoadSample),
    ) -> Result<LoadReport, LoadError> {
        let _pin = self.cfg.cpu.map(run::CpuPin::new).transpose()?;
        match self.cfg.pattern {
            Pattern::Open { .. } => match &mut self.sockets {
                Some(tx) => {
                    run::open_socket(&self.cfg, &mut self.program, tx, stop, &mut on_sample)
                }
                None => run::open(
                    &self.cfg,
                    &mut self.program,
                    &mut self.generator,
                    stop,
                    &mut on_sample,
                ),
            },
            Pattern::Closed { window } => run::closed(
                &self.cfg,
                window,
                &mut self.program,
                &mut self.generator,
                stop,
                &mut on_sample,
            ),
        }
    }
}

fn ifindex(iface: &str) -> Result<u32, LoadError> {
    let unknown = || LoadError::UnknownInterface(iface.to_string());
    let name: netmit_user::sys::IfName = iface.parse().map_err(|_| unknown())?;
    netmit_user::sys::Netdev::resolve(&name)
        .map(|d| d.ifindex)
        .map_err(|_| unknown())
}

/// Load clients run on benchmark threads.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<LoadClient>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pattern: Pattern) -> LoadConfig {
        LoadConfig::new("lo", "198.18.0.1:9000".parse().unwrap(), pattern)
    }

    fn invalid(c: &LoadConfig) -> String {
        match c.validate() {
            Err(LoadError::InvalidConfig { what }) => what,
            other => panic!("expected InvalidConfig, got {other:?}"),
        }
    }

    #[test]
    fn defaults_are_valid() {
        let c = cfg(Pattern::Open { rate_pps: 1000.0 });
        c.validate().unwrap();
        assert_eq!((c.frame_len(), c.flows_used()), (64, 16));
        let c = cfg(Pattern::Closed { window: 8 });
        c.validate().unwrap();
        assert_eq!(c.flows_used(), 8);
        assert_eq!(c.params().mode, LOAD_MODE_CLOSED);
        assert_eq!(c.params().flows, 8);
        let g = c.gen_config(MacAddr([2, 0, 0, 0, 0, 1]));
        assert!(g.stamp && g.rate == Rate::Max && g.flows == 8 && g.src_port == 40000);
    }

    #[test]
    fn bad_input_is_one_clear_line() {
        assert!(invalid(&cfg(Pattern::Open { rate_pps: 0.0 })).contains("at least 1"));
        assert!(invalid(&cfg(Pattern::Open { rate_pps: f64::NAN })).contains("rate"));
        assert!(invalid(&cfg(Pattern::Closed { window: 0 })).contains("window 0"));
        assert!(
            invalid(&cfg(Pattern::Closed {
                window: MAX_WINDOW + 1
            }))
            .contains("window")
        );
        let mut c = cfg(Pattern::Open { rate_pps: 10.0 });
        c.payload_len = 8;
        assert!(invalid(&c).contains("send stamp"), "{}", invalid(&c));
        c.payload_len = 12;
        assert!(invalid(&c).contains("at least 22"), "{}", invalid(&c));
        c.server = "[2001:db8::1]:9000".parse().unwrap();
        c.validate().unwrap(); // 12 bytes are a 74-byte IPv6 frame
        c.payload_len = 1500;
        assert!(invalid(&c).contains("at most 1438"), "{}", invalid(&c));
        let mut c = cfg(Pattern::Open { rate_pps: 10.0 });
        c.sport_base = 65530;
        assert!(invalid(&c).contains("beyond 65535"));
        let mut c = cfg(Pattern::Open { rate_pps: 10.0 });
        c.server.set_port(0);
        assert!(invalid(&c).contains("port 0"));
        let mut c = cfg(Pattern::Open { rate_pps: 10.0 });
        c.src_ip = Some("2001:db8::2".parse().unwrap());
        assert!(invalid(&c).contains("families"));
        assert!(!invalid(&cfg(Pattern::Closed { window: 0 })).contains('\n'));
        let mut c = cfg(Pattern::Open { rate_pps: 10.0 });
        assert_eq!((c.sender, c.socket_burst()), (Sender::Socket, SOCKET_BURST));
        c.burst = Some(MAX_SOCKET_BURST + 1);
        assert!(invalid(&c).contains("socket sender"), "{}", invalid(&c));
        c.sender = Sender::Generator;
        c.validate().unwrap(); // the generator takes bigger bursts
        c.arrivals = Arrivals::Poisson { seed: 1 };
        assert!(invalid(&c).contains("Poisson"), "{}", invalid(&c));
        c.sender = Sender::Socket;
        c.burst = Some(2);
        c.validate().unwrap();
    }

    #[test]
    fn unknown_interface_is_reported_first() {
        let mut c = cfg(Pattern::Closed { window: 1 });
        c.iface = "nmnosuch0".into();
        assert!(matches!(
            LoadClient::new(c),
            Err(LoadError::UnknownInterface(i)) if i == "nmnosuch0"
        ));
    }

    #[test]
    fn pattern_serialises_with_its_kind() {
        let v = serde_json::to_value(Pattern::Open { rate_pps: 5.0 }).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "open", "rate_pps": 5.0}));
        let v = serde_json::to_value(Pattern::Closed { window: 4 }).unwrap();
        assert_eq!(v, serde_json::json!({"kind": "closed", "window": 4}));
    }
}
