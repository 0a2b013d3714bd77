//! `netmit gen`: a UDP traffic generator for testbeds and benchmarks, built on
//! `BPF_PROG_TEST_RUN` in live-frames mode.
//!
//! # Why live frames
//!
//! The benchmarks that compare interrupt-mitigation modes need a sender that outruns the
//! receiver on its own core. The usual user-space senders cannot:
//!
//! * **AF_PACKET** (`sendmmsg`) builds one skb per frame and takes it through the qdisc
//!   layer: about 370k pps on these machines, slower than a tuned UDP receiver.
//! * **AF_XDP TX** is zero-copy only on NICs that support it; on a veth it runs in copy
//!   mode, which allocates an skb per frame again, and it needs a UMEM, four rings and a
//!   bound socket per queue (the socket of a queue is then unavailable to a receiver).
//! * **BPF_PROG_TEST_RUN with `BPF_F_TEST_XDP_LIVE_FRAMES`** (Linux 5.18) runs an XDP
//!   program `repeat` times on copies of one template frame, inside one syscall, and
//!   acts on the verdict: `XDP_TX` becomes a redirect out of the interface named in the
//!   context (`ingress_ifindex`). Frames go from a page pool straight to the driver's
//!   `ndo_xdp_xmit`, in batches of up to 256 with one flush each: no skb, no socket, no
//!   syscall per frame. Measured here into a veth: 6.5 Mpps when the peer drops with
//!   XDP, 0.66 Mpps when the peer's kernel stack takes every frame (its softirq runs on
//!   the sender's core). (`xdp-trafficgen` from xdp-tools uses the same mechanism.)
//!
//! The program, `netmit_gen` in `netmit-ebpf`, varies the flow per frame: it writes the
//! next flow's UDP source and destination port and fixes the UDP checksum incrementally
//! (RFC 1624), so every frame carries a correct IPv4 header checksum and a correct UDP
//! checksum (mandatory for IPv6, and receivers that verify it see no errors).
//!
//! With [`GenConfig::stamp`] (the load client, [`crate::load`]) each frame's UDP payload
//! starts with a send stamp: [`netmit_common::STAMP_MAGIC`] from the template and the
//! send time, `bpf_ktime_get_ns()`, written by the program; the checksum update adds the
//! time's four 16-bit words (the template's are zero). A stamped IPv6 frame needs at
//! least 74 bytes. Without it, frames are exactly as before.
//!
//! # What the generator relies on (Documentation/bpf/bpf_prog_run.rst, net/bpf/test_run.c)
//!
//! * `repeat` is the number of frames: one program run per frame. So a count is exact
//!   by construction; the last call is simply shorter.
//! * Pages are initialised from the template when the pool (created per syscall) first
//!   hands them out, and **recycled without rewriting their content**; only the
//!   `data`/`data_end`/`data_meta` pointers are reset. The program may therefore see the
//!   template or a frame it rewrote before; it computes every field it writes from the
//!   template's values (a read-only global), never from the frame.
//! * Failures after the verdict (a redirect the driver refuses, a full ring) are not
//!   reported to the caller. The report therefore also carries the interface's own
//!   transmit counters ([`IfaceCounters`]); on a veth the *peer* must have a NAPI
//!   instance (native XDP attached, or GRO on) or every frame is dropped, and on NICs
//!   whose driver allocates XDP transmit rings only for an attached XDP program, one
//!   must be attached first (e.g. `netmit attach`).
//! * A signal ends the syscall with `EINTR` after an unknown number of frames. The
//!   program counts its frames in its state map, and the generator reads it back after
//!   an interrupted call, so counts stay exact.
//! * The kernel resolves `ingress_ifindex` in the calling thread's network namespace:
//!   create and run a [`Generator`] on a thread of the namespace the interface is in.
//! * On a veth the receiving side's NAPI runs in softirq on the sender's CPU (when each
//!   batch re-enables bottom halves), unless the peer uses threaded NAPI: at full speed
//!   the generator's core also pays for the peer's receive path.
//!
//! # What a call costs, and two traps
//!
//! * With `repeat > 1` the kernel adds the program to the XDP dispatcher for the call and
//!   removes it afterwards, two RCU grace periods: 23-40 ms per call here, which capped
//!   a paced sender at ~40 calls a second. The generator therefore keeps its program in
//!   the dispatcher for its lifetime (the `dispatch` module: a generic-mode attachment to
//!   the loopback device of a private network namespace). A call then costs ~15 µs plus
//!   the frames.
//! * Every dispatcher change on the system (any XDP program attached or detached, any
//!   generator starting or stopping) holds the dispatcher's mutex for a grace period,
//!   and every XDP test run takes that mutex: a paced generator stalls for 10-120 ms
//!   when that happens. Stalls up to [`GenConfig::max_lag`] are caught up.
//! * Each call creates and destroys a page pool. Frames the receiver still holds (unread
//!   socket buffers) keep their pool alive, and the kernel retries its release from a
//!   workqueue every 100 ms: thousands of calls a second into a receiver that does not
//!   read become a kworker load that competes with the sender. Receivers should read.
//!
//! # Pacing
//!
//! At a fixed rate the frames are sent in small bursts (about 100 µs of traffic per
//! syscall) against an absolute schedule on the monotonic clock; the `pace` module
//! describes the design (catch-up after stalls, bounded). The sleeping thread's timer
//! slack is set to 1 µs for the run (and restored), so wake-ups are not rounded up by
//! the default 50 µs.
//!
//! # Example
//!
//! ```no_run
//! use std::sync::atomic::AtomicBool;
//! // `gen` is a reserved word in Rust 2024, hence the raw identifier.
//! use netmit_lab::r#gen::{GenConfig, Generator, Rate};
//!
//! let mut cfg = GenConfig::new(
//!     "veth0",
//!     "02:00:00:00:00:02".parse()?,
//!     "198.18.0.1".parse()?,
//!     "9200-9203".parse()?,
//! );
//! cfg.flows = 4;
//! cfg.rate = Rate::Pps(100_000);
//! cfg.duration = Some(std::time::Duration::from_secs(5));
//! let mut generator = Generator::new(cfg)?;
//! let report = generator.run(&AtomicBool::new(false), |s| eprintln!("{:.0} pps", s.pps))?;
//! println!("{} frames in {:.2} s", report.packets, report.duration_secs);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod config;
mod dispatch;
mod error;
mod frame;
mod iface;
mod pace;
mod report;

use std::{
    io,
    net::IpAddr,
    os::fd::AsFd,
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use netmit_common::{TrafficState, names};

pub use config::{GenConfig, Rate, parse_ip};
pub use error::GenError;
pub use frame::{FrameSpec, MAX_FRAME, MIN_FRAME, MacAddr, PortRange, Template};
pub use report::{GenReport, GenSample, IfaceCounters, WIRE_OVERHEAD};

use netmit_user::{ebpf::EBPF_OBJECT, sys::process::TimerSlack};

/// Largest live-frames batch the kernel accepts (`TEST_XDP_MAX_BATCH`).
pub const MAX_LIVE_BATCH: u32 = 256;
/// Frames per syscall at full speed: about a millisecond of traffic, so the stop flag and
/// a duration are checked often enough.
pub const MAX_RATE_CALL: u32 = 2048;

/// A loaded generator for one interface and one traffic pattern. Create and run it on a
/// thread of the interface's network namespace; it can run several times (the flows
/// continue where they stopped).
pub struct Generator {
    cfg: GenConfig,
    dev: netmit_user::sys::Netdev,
    ifindex: u32,
    template: Template,
    src_mac: MacAddr,
    src_ip: IpAddr,
    /// Dropped before the object: detaches the program from the private namespace.
    dispatcher_pin: Option<dispatch::DispatcherPin>,
    ebpf: Ebpf,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator")
            .field("cfg", &self.cfg)
            .field("ifindex", &self.ifindex)
            .field("src_mac", &self.src_mac)
            .field("src_ip", &self.src_ip)
            .field("dispatcher_pinned", &self.dispatcher_pin.is_some())
            .finish_non_exhaustive()
    }
}

/// `struct xdp_md` for the run's context: only the interface (and queue 0) are set; the
/// kernel requires `data_end` to be the frame length and `data`/`data_meta` zero.
fn xdp_md(len: usize, ifindex: u32) -> [u8; 24] {
    let fields = [0u32, len as u32, 0, ifindex, 0, 0];
    let mut out = [0u8; 24];
    for (chunk, v) in out.chunks_exact_mut(4).zip(fields) {
        chunk.copy_from_slice(&v.to_ne_bytes());
    }
    out
}

/// The steering program's tables: never used by the generator, so created with one
/// entry each (one generation of lookup tables, 2.3 MiB, instead of two plus the
/// counters).
const UNUSED_MAPS: &[&str] = &names::STEERING_MAPS;

impl Generator {
    /// Validates `cfg`, resolves the interface, builds the template frame, loads
    /// `netmit_gen` and probes live-frames support (with a frame the program drops, so
    /// nothing is sent).
    ///
    /// # Minimum kernel version
    ///
    /// 5.18 (BPF_F_TEST_XDP_LIVE_FRAMES).
    ///
    /// # Errors
    ///
    /// Bad parameters, an unknown interface or one without the needed addresses, missing
    /// privileges ([`GenError::NotPermitted`]), a kernel without live frames
    /// ([`GenError::LiveFramesUnsupported`]), or a failed load.
    pub fn new(cfg: GenConfig) -> Result<Self, GenError> {
        cfg.validate()?;
        let dev = iface::resolve(&cfg.iface)?;
        let ifindex = dev.ifindex;
        let link = iface::link_info(&dev)?;
        if cfg.size > link.mtu as usize + 14 {
            return Err(GenError::FrameExceedsMtu {
                iface: cfg.iface.clone(),
                size: cfg.size,
                mtu: link.mtu,
            });
        }
        let src_mac = match cfg.src_mac.or(link.mac) {
            Some(m) => m,
            None => return Err(GenError::NoMac(cfg.iface.clone())),
        };
        let src_ip = match cfg.src_ip {
            Some(ip) => ip,
            None => iface::source_address(&cfg.iface, cfg.dst_ip)?,
        };
        let template = frame::build(&FrameSpec {
            src_mac,
            dst_mac: cfg.dst_mac,
            src_ip,
            dst_ip: cfg.dst_ip,
            sport: cfg.src_port,
            dport: cfg.dst_ports.lo,
            size: cfg.size,
            stamp: cfg.stamp,
        })?;
        if !netmit_user::sys::bpf::has_bpf_privileges() {
            return Err(GenError::NotPermitted);
        }

        let params = template.params(cfg.flows, cfg.dst_ports.len());
        let mut loader = netmit_user::ebpf::loader();
        for name in UNUSED_MAPS {
            loader.map_max_entries(name, 1);
        }
        let mut ebpf = loader
            .override_global(names::GLOBAL_GEN_PARAMS, &params, true)
            .load(EBPF_OBJECT)
            .map_err(GenError::Load)?;
        let prog: &mut Xdp = ebpf
            .program_mut(names::PROG_GEN)
            .ok_or_else(no_program)?
            .try_into()
            .map_err(wrong_type)?;
        prog.load().map_err(|source| GenError::Program {
            what: "loading the generator program",
            source,
        })?;
        let prog_fd = prog.fd().map_err(|source| GenError::Program {
            what: "generator program fd",
            source,
        })?;
        let dispatcher_pin = match dispatch::pin(prog_fd.as_fd()) {
            Ok(pin) => Some(pin),
            Err(e) => {
                log::warn!(
                    "could not keep the generator program in the XDP dispatcher ({e}); \
                     every send call will wait for RCU grace periods (~25 ms)"
                );
                None
            }
        };
        let generator = Self {
            cfg,
            dev,
            ifindex,
            template,
            src_mac,
            src_ip,
            dispatcher_pin,
            ebpf,
        };
        generator.probe()?;
        Ok(generator)
    }

    /// Runs the program once in live-frames mode on a bare Ethernet header: the program
    /// drops it (too short for UDP) without counting, so nothing is sent, but the kernel
    /// has checked the flag, the context and the interface.
    fn probe(&self) -> Result<(), GenError> {
        let runt = &self.template.bytes[..14];
        let ctx = xdp_md(runt.len(), self.ifindex);
        let result = self.program()?.test_run(TestRunOptions {
            data_in: Some(runt),
            ctx_in: Some(&ctx),
            repeat: 1,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(1),
            ..Default::default()
        });
        match result {
            Ok(_) => Ok(()),
            Err(ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EINVAL) =>
            {
                Err(GenError::LiveFramesUnsupported { source: e.io_error })
            }
            Err(ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::ENODEV) =>
            {
                Err(GenError::UnknownInterface(self.cfg.iface.clone()))
            }
            Err(source) => Err(GenError::Program {
                what: "probing live-frames mode with BPF_PROG_TEST_RUN",
                source,
            }),
        }
    }

    fn program(&self) -> Result<&Xdp, GenError> {
        self.ebpf
            .program(names::PROG_GEN)
            .ok_or_else(no_program)?
            .try_into()
            .map_err(wrong_type)
    }

    fn counters(&self) -> Result<Array<&MapData, TrafficState>, GenError> {
        let map =
            self.ebpf
                .map(names::MAP_GEN_STATE)
                .ok_or(GenError::Map(MapError::InvalidName {
                    name: names::MAP_GEN_STATE.to_string(),
                }))?;
        Array::try_from(map).map_err(GenError::Map)
    }

    /// Frames the program has sent so far (over all runs of this generator).
    pub fn program_packets(&self) -> Result<u64, GenError> {
        program_total(&self.counters()?)
    }

    /// Sends `frames` frames of flow `flow` (source port `src_port + flow`) at once, in
    /// one live-frames call, and returns how many went out. The flows of later frames
    /// continue from `flow + 1`. The load client re-seeds a closed-loop slot with it.
    ///
    /// # Errors
    ///
    /// [`GenError::Zero`] for no frames, [`GenError::TooManyFlows`] for a flow out of
    /// range, or a failed `BPF_PROG_TEST_RUN` or map access.
    pub fn send_flow(&mut self, flow: u32, frames: u32) -> Result<u64, GenError> {
        if frames == 0 {
            return Err(GenError::Zero("the number of frames"));
        }
        if flow >= self.cfg.flows {
            return Err(GenError::TooManyFlows {
                flows: flow + 1,
                sport: self.cfg.src_port,
            });
        }
        let map = self
            .ebpf
            .map_mut(names::MAP_GEN_STATE)
            .ok_or(GenError::Map(MapError::InvalidName {
                name: names::MAP_GEN_STATE.to_string(),
            }))?;
        let mut state: Array<&mut MapData, TrafficState> =
            Array::try_from(map).map_err(GenError::Map)?;
        let mut s = state.get(&0, 0).map_err(GenError::Map)?;
        s.flow = flow;
        s.dport = flow % self.cfg.dst_ports.len();
        state.set(0, s, 0).map_err(GenError::Map)?;
        let counters = self.counters()?;
        let ctx = xdp_md(self.template.bytes.len(), self.ifindex);
        let mut tx = LiveTx {
            prog: self.program()?,
            counters: &counters,
            frame: &self.template.bytes,
            ctx: &ctx,
            live_batch: self.cfg.live_batch,
            expected_total: s.packets,
        };
        pace::Transmit::send(&mut tx, frames)
    }

    /// The configuration.
    pub fn config(&self) -> &GenConfig {
        &self.cfg
    }

    /// Sets how long the next runs last ([`GenConfig::duration`]): the load client runs
    /// its warmup and its measured window as two runs of one generator.
    pub fn set_duration(&mut self, duration: Option<Duration>) {
        self.cfg.duration = duration;
    }

    /// The interface index frames are sent out of.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// The source MAC and IP actually used (defaults resolved).
    pub fn source(&self) -> (MacAddr, IpAddr) {
        (self.src_mac, self.src_ip)
    }

    /// The template frame (flow 0).
    pub fn template(&self) -> &Template {
        &self.template
    }

    /// Sends until the count or duration is reached or `stop` is set, calling `progress`
    /// with each sample (every [`GenConfig::sample_interval`]).
    ///
    /// # Errors
    ///
    /// A failed `BPF_PROG_TEST_RUN` call (other than an interruption by a signal, which
    /// is accounted for) or a failed read of the program's counters.
    pub fn run(
        &mut self,
        stop: &AtomicBool,
        progress: impl FnMut(&GenSample),
    ) -> Result<GenReport, GenError> {
        let plan = self.cfg.plan();
        let before = iface::link_info(&self.dev).ok();
        let counters = self.counters()?;
        let start_total = program_total(&counters)?;
        let ctx = xdp_md(self.template.bytes.len(), self.ifindex);
        let mut tx = LiveTx {
            prog: self.program()?,
            counters: &counters,
            frame: &self.template.bytes,
            ctx: &ctx,
            live_batch: self.cfg.live_batch,
            expected_total: start_total,
        };
        let _slack = (plan.rate.is_some()).then(|| TimerSlack::set(1000));
        let mut clock = MonotonicClock {
            start: Instant::now(),
        };
        let out = pace::drive(&plan, &mut tx, &mut clock, stop, progress)?;
        let program_packets = program_total(&counters)? - start_total;
        let interface = before.and_then(|b| self.counters_after(&b.counters, out.packets));
        let secs = out.elapsed.as_secs_f64();
        let (pps, mbit_per_sec, wire_mbit_per_sec) =
            GenReport::rates(out.packets, self.cfg.size, secs);
        Ok(GenReport {
            iface: self.cfg.iface.clone(),
            ifindex: self.ifindex,
            frame_size: self.cfg.size,
            flows: self.cfg.flows,
            target_pps: match self.cfg.rate {
                Rate::Max => None,
                Rate::Pps(r) => Some(r),
            },
            packets: out.packets,
            bytes: out.packets * self.cfg.size as u64,
            duration_secs: secs,
            pps,
            mbit_per_sec,
            wire_mbit_per_sec,
            behind_schedule: out.skipped,
            stopped: out.stopped,
            program_packets,
            interface,
            samples: out.samples,
        })
    }
}

impl Generator {
    /// The interface's counter deltas since `before`. A veth counts a frame as sent when
    /// the peer's NAPI has taken it, which may be just after the last call returned: wait
    /// up to 100 ms for the counters to account for `packets`.
    fn counters_after(&self, before: &IfaceCounters, packets: u64) -> Option<IfaceCounters> {
        let mut delta = None;
        for _ in 0..10 {
            let after = iface::link_info(&self.dev).ok()?;
            let d = iface::delta(before, &after.counters);
            delta = Some(d);
            if d.tx_packets + d.tx_dropped >= packets {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        delta
    }
}

fn program_total(map: &Array<&MapData, TrafficState>) -> Result<u64, GenError> {
    Ok(map.get(&0, 0).map_err(GenError::Map)?.packets)
}

/// Sends with one live-frames `BPF_PROG_TEST_RUN` per call.
struct LiveTx<'a> {
    prog: &'a Xdp,
    counters: &'a Array<&'a MapData, TrafficState>,
    frame: &'a [u8],
    ctx: &'a [u8],
    live_batch: u32,
    /// What the program's counters say once the calls so far are done.
    expected_total: u64,
}

impl pace::Transmit for LiveTx<'_> {
    fn send(&mut self, frames: u32) -> Result<u64, GenError> {
        let result = self.prog.test_run(TestRunOptions {
            data_in: Some(self.frame),
            ctx_in: Some(self.ctx),
            repeat: frames,
            attrs: aya::programs::TestRunAttrs::new().xdp_live_frames(frames.min(self.live_batch)),
            ..Default::default()
        });
        match result {
            Ok(_) => {
                self.expected_total += u64::from(frames);
                Ok(u64::from(frames))
            }
            Err(ProgramError::SyscallError(e))
                if e.io_error.raw_os_error() == Some(libc::EINTR) =>
            {
                // Part of the call ran: the program's own counters say how much.
                let total = program_total(self.counters)?;
                let sent = total.saturating_sub(self.expected_total);
                self.expected_total = total;
                Ok(sent)
            }
            Err(source) => Err(GenError::Program {
                what: "sending with BPF_PROG_TEST_RUN (live frames)",
                source,
            }),
        }
    }
}

struct MonotonicClock {
    start: Instant,
}

impl pace::Clock for MonotonicClock {
    fn now(&self) -> Duration {
        self.start.elapsed()
    }

    fn sleep_until(&mut self, t: Duration) {
        let now = self.start.elapsed();
        if t > now {
            std::thread::sleep(t - now);
        }
    }
}

fn no_program() -> GenError {
    GenError::Program {
        what: "the eBPF object has no generator program",
        source: ProgramError::NotLoaded,
    }
}

fn wrong_type(source: ProgramError) -> GenError {
    GenError::Program {
        what: "generator program type",
        source,
    }
}

/// Other benchmarks run generators on their own threads.
#[allow(dead_code)]
fn assert_send() {
    fn is_send<T: Send>() {}
    is_send::<Generator>();
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> GenConfig {
        GenConfig::new(
            "lo",
            "02:00:00:00:00:02".parse().unwrap(),
            "198.18.0.1".parse().unwrap(),
            "9200-9203".parse().unwrap(),
        )
    }

    #[test]
    fn defaults_are_valid() {
        let c = cfg();
        assert_eq!(c.flows, 4);
        c.validate().unwrap();
    }

    #[test]
    fn validation_errors() {
        let mut c = cfg();
        c.size = 20;
        assert!(matches!(
            c.validate(),
            Err(GenError::SizeOutOfRange { size: 20, .. })
        ));
        let msg = c.validate().unwrap_err().to_string();
        assert!(msg.contains("64 to 1500"), "{msg}");

        let mut c = cfg();
        c.flows = 40_000;
        assert!(matches!(c.validate(), Err(GenError::TooManyFlows { .. })));
        c.src_port = 1000;
        c.validate().unwrap();
        c.flows = 0;
        assert!(matches!(c.validate(), Err(GenError::Zero(_))));

        let mut c = cfg();
        c.src_ip = Some("2001:db8::1".parse().unwrap());
        assert!(matches!(c.validate(), Err(GenError::FamilyMismatch { .. })));

        let mut c = cfg();
        c.rate = Rate::Pps(0);
        assert!(c.validate().is_err());
        let mut c = cfg();
        c.live_batch = 257;
        assert!(matches!(c.validate(), Err(GenError::InvalidBatch(257))));
        assert!(matches!(
            parse_ip("198.18.0.300"),
            Err(GenError::InvalidIp(_))
        ));
        assert!(parse_ip("2001:db8::1").is_ok());
    }

    #[test]
    fn plan_follows_the_rate() {
        let mut c = cfg();
        let p = c.plan();
        assert_eq!((p.rate, p.burst), (None, MAX_RATE_CALL));
        c.rate = Rate::Pps(50_000);
        let p = c.plan();
        assert_eq!((p.rate, p.burst, p.max_call), (Some(50_000), 5, 1024));
        c.burst = Some(2000);
        assert_eq!(c.plan().max_call, 2000);
    }

    #[test]
    fn context_layout() {
        let md = xdp_md(64, 7);
        let word = |i: usize| u32::from_ne_bytes(md[i * 4..i * 4 + 4].try_into().unwrap());
        assert_eq!(
            [word(0), word(1), word(2), word(3), word(4), word(5)],
            [0, 64, 0, 7, 0, 0]
        );
    }

    #[test]
    fn unknown_interface_is_reported_before_privileges() {
        let mut c = cfg();
        c.iface = "nmnosuch0".into();
        assert!(matches!(
            Generator::new(c),
            Err(GenError::UnknownInterface(_))
        ));
    }
}
