//! xsk mode: requests are steered past the kernel's stack into AF_XDP sockets, one per
//! RX queue, and answered from the frame they arrived in.
//!
//! # Why
//!
//! In the kernel modes every request goes through the IP and UDP layers, a socket queue
//! and a copy to user space, and its reply back through them. Here netmit's XDP program
//! redirects the request (a rule `proto=udp,dport=PORT,action=xsk`, set with `netmit
//! attach` or `netmit steer add`) into the UMEM of the socket bound to its queue; the
//! server rewrites it into its reply in place (`netmit_user::xsk::echo`: addresses and ports
//! swapped, UDP checksum recomputed) and puts the same frame on the TX ring. No socket
//! buffers, no copies on a zero-copy driver, and batches of up to 64 frames per ring
//! update with a system call only when the kernel asks for one (need_wakeup). This is
//! `netmit rx --echo` with the request/response accounting and reply formats of the
//! kernel modes.
//!
//! How the thread waits when its RX ring is empty is its [`WaitStrategy`]
//! ([`ServeConfig::xsk_wait_strategy`](super::ServeConfig::xsk_wait_strategy)): sleeping
//! in `poll(2)` costs a wake-up per request at light load (the mode then removes the
//! stack, not the notification); spinning on the ring removes the wake-up too, and
//! spin-then-sleep (the default) does so while requests keep coming.
//!
//! # What it answers
//!
//! UDP datagrams to the server's port (IPv4 or IPv6, up to two VLAN tags), whatever
//! their destination address: the rules decide what reaches the socket. Anything else
//! the rules send there (other ports, other protocols) is dropped and counted as
//! `other_frames`. Before opening a socket the server checks that netmit is attached to
//! the interface and that its rules send UDP to the port to AF_XDP.

use std::{
    net::IpAddr,
    ops::Range,
    time::{Duration, Instant},
};

use netmit_common::{Action, PacketProto};

use super::{
    Control, ReplyFormat, ServeConfig, ServeError,
    epoll::MAX_WAIT,
    report::{Counters, Live, ThreadReport, XskThreadReport},
};
use netmit_user::{
    ebpf::{PinRoot, SteerTables},
    steer::{PacketFields, compile::ranked, matches},
    sys::{
        Netdev,
        napi::{self, QueueKind},
    },
    xsk::{
        RegistrationWatch, WaitStrategy, WatchEvent, XskConfig, XskSocket, echo::udp_reply_in_place,
    },
};

/// How long the end of a run waits for the kernel to complete queued transmits.
const DRAIN: Duration = Duration::from_millis(200);

/// Checks that netmit is attached to `iface` and that its rules send UDP to `addr` port
/// `port` to AF_XDP.
///
/// # Errors
///
/// [`ServeError::XskNotPermitted`], [`ServeError::NotAttached`], [`ServeError::NotSteered`] naming the rule that wins
/// instead, [`ServeError::Rules`] if the pinned rules cannot be read.
pub(crate) fn check_steering(dev: &Netdev, addr: IpAddr, port: u16) -> Result<(), ServeError> {
    if !netmit_user::sys::bpf::has_bpf_privileges() {
        return Err(ServeError::XskNotPermitted);
    }
    let iface = dev.name.as_str();
    let not_attached = || ServeError::NotAttached {
        iface: iface.to_string(),
        port,
    };
    let layout = PinRoot::default()
        .find(dev)
        .map_err(|_| not_attached())?
        .ok_or_else(not_attached)?;
    let rules_err = |source| ServeError::Rules {
        iface: iface.to_string(),
        source: Box::new(source),
    };
    let rules = SteerTables::from_pins(&layout)
        .and_then(|t| t.rules())
        .map_err(rules_err)?;
    let pkt = PacketFields {
        proto: PacketProto::Udp,
        dport: Some(port),
        vlan: None,
        dst: Some(addr),
    };
    let ranked = ranked(&rules);
    let winner = ranked.iter().find(|r| matches(&r.rule, &pkt));
    if winner.is_some_and(|r| r.rule.action == Action::Xsk) {
        return Ok(());
    }
    // Tagged traffic: a VLAN rule that would send it to AF_XDP is good enough.
    let tagged = ranked.iter().any(|r| {
        r.rule.action == Action::Xsk
            && r.rule.vlan.is_some()
            && matches(
                &r.rule,
                &PacketFields {
                    vlan: r.rule.vlan,
                    ..pkt
                },
            )
    });
    if tagged {
        return Ok(());
    }
    let why = match winner {
        Some(r) => format!("rule {} `{}` wins for them", r.id, r.rule),
        None => "no rule matches them, so they go to the kernel".to_string(),
    };
    Err(ServeError::NotSteered {
        iface: iface.to_string(),
        addr,
        port,
        why,
    })
}

/// The RX queues of `dev`, in order.
pub(crate) fn rx_queues(dev: &Netdev) -> Result<Vec<u32>, ServeError> {
    let mut q: Vec<u32> = napi::queues(dev)
        .map_err(|e| ServeError::Queues {
            iface: dev.name.to_string(),
            source: Box::new(e),
        })?
        .into_iter()
        .filter(|q| q.kind == QueueKind::Rx)
        .map(|q| q.id)
        .collect();
    q.sort_unstable();
    if q.is_empty() {
        // A device that reports no queues over netlink still has queue 0.
        q.push(0);
    }
    Ok(q)
}

/// One thread of xsk mode: the AF_XDP socket of one RX queue.
pub(crate) struct XskWorker {
    sock: XskSocket,
    port: u16,
    format: ReplyFormat,
    batch: usize,
    watch: RegistrationWatch,
    strategy: WaitStrategy,
}

impl XskWorker {
    /// Opens the socket of `queue` and registers it in netmit's XSKMAP for that queue.
    pub(crate) fn open(dev: &Netdev, queue: u32, cfg: &ServeConfig) -> Result<Self, ServeError> {
        let xsk_cfg = XskConfig {
            mode: cfg.xsk_bind,
            ..XskConfig::default()
        };
        let sock = XskSocket::open_registered(dev, queue, &xsk_cfg)?;
        Ok(Self {
            sock,
            port: cfg.port,
            format: cfg.reply,
            batch: cfg.batch,
            watch: RegistrationWatch::new(cfg.xsk_wait),
            strategy: cfg.xsk_wait_strategy,
        })
    }

    /// Whether the socket still gets the steered requests (see [`RegistrationWatch`]).
    fn check_registration(&mut self) -> Result<(), ServeError> {
        let (queue, iface) = (self.sock.queue(), self.sock.iface().to_owned());
        match self.watch.check(&mut self.sock)? {
            WatchEvent::Quiet => {}
            WatchEvent::Lost(state) => {
                return Err(ServeError::Detached {
                    queue,
                    why: state.describe(&iface),
                });
            }
            WatchEvent::Waiting(state) => log::warn!(
                "queue {queue}: {}; waiting for `netmit attach {iface}`",
                state.describe(&iface)
            ),
            WatchEvent::Registered => {
                log::warn!("queue {queue}: registered in the new attachment of {iface}");
            }
        }
        Ok(())
    }

    /// Serves until `ctl` says stop, then waits up to 200 ms for queued replies to
    /// complete.
    pub(crate) fn run(
        mut self,
        thread: usize,
        ctl: &Control,
        live: &Live,
    ) -> Result<ThreadReport, ServeError> {
        let (port, format) = (self.port, self.format);
        let mut c = Counters::default();
        while let Some(timeout) = ctl.wait_budget(MAX_WAIT) {
            self.check_registration()?;
            if !self.sock.wait(self.strategy, timeout)? {
                continue;
            }
            let before = c;
            self.sock
                .echo_batch(self.batch, |frame| respond(frame, port, format, &mut c))?;
            live.publish(&before, &c);
        }
        let drain_until = Instant::now() + DRAIN;
        loop {
            self.sock.send_batch(std::iter::empty())?;
            let k = self.sock.counters();
            if k.tx_completed >= k.tx_packets || Instant::now() >= drain_until {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let stats = self.sock.statistics()?;
        let k = stats.counters;
        // `respond` counted replies queued; the kernel's completions are the truth.
        c.replies = k.tx_completed;
        c.send_failed += k.tx_packets.saturating_sub(k.tx_completed);
        Ok(ThreadReport {
            thread,
            cpu: None,
            counters: c,
            epoll_waits: 0,
            empty_waits: 0,
            napi_id: None,
            xsk: Some(XskThreadReport {
                queue: self.sock.queue(),
                bind_mode: self.sock.bound_mode().as_str(),
                rx_lost: stats.rx_lost(),
                wakeups: k.wakeups,
                wait: self.strategy.name(),
                spin_usecs: self.strategy.spin_usecs(),
            }),
        })
    }
}

/// Turns one received frame into its reply in place; `false` drops it.
fn respond(frame: &mut [u8], port: u16, format: ReplyFormat, c: &mut Counters) -> bool {
    let Some((dport, payload)) = udp_payload(frame) else {
        c.other_frames += 1;
        return false;
    };
    if dport != port {
        c.other_frames += 1;
        return false;
    }
    let len = payload.len() as u64;
    c.requests += 1;
    c.request_bytes += len;
    if !format.apply(&mut frame[payload]) || !udp_reply_in_place(frame) {
        c.unanswered += 1;
        return false;
    }
    c.replies += 1;
    c.reply_bytes += len;
    true
}

/// The destination port and payload range of a UDP frame, accepting what
/// [`udp_reply_in_place`] can answer: Ethernet with up to two VLAN tags, IPv4 without
/// fragmentation, IPv6 without extension headers, a UDP length that fits the frame.
fn udp_payload(frame: &[u8]) -> Option<(u16, Range<usize>)> {
    const UDP: u8 = 17;
    let be16 = |at: usize| {
        frame
            .get(at..at + 2)
            .map(|b| u16::from_be_bytes([b[0], b[1]]))
    };
    let mut off = 12;
    let mut ethertype = be16(off)?;
    for _ in 0..2 {
        if ethertype != 0x8100 && ethertype != 0x88a8 {
            break;
        }
        off += 4;
        ethertype = be16(off)?;
    }
    let l3 = off + 2;
    let l4 = match ethertype {
        0x0800 => {
            let h = frame.get(l3..l3 + 20)?;
            let ihl = usize::from(h[0] & 0x0f) * 4;
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if h[0] >> 4 != 4 || ihl < 20 || h[9] != UDP || frag & 0x3fff != 0 {
                return None;
            }
            l3 + ihl
        }
        0x86dd => {
            let h = frame.get(l3..l3 + 40)?;
            if h[0] >> 4 != 6 || h[6] != UDP {
                return None;
            }
            l3 + 40
        }
        _ => return None,
    };
    let dport = be16(l4 + 2)?;
    let udp_len = usize::from(be16(l4 + 4)?);
    if udp_len < 8 || frame.len() < l4 + udp_len {
        return None;
    }
    Some((dport, l4 + 8..l4 + udp_len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use netmit_user::frames;

    #[test]
    fn payload_of_udp_frames() {
        let f = frames::ipv4(17, "198.18.0.1".parse().unwrap(), 9000, 23);
        assert_eq!(udp_payload(&f), Some((9000, 42..65)));
        let f6 = frames::ipv6(17, "2001:db8::9".parse().unwrap(), 53, 4);
        assert_eq!(udp_payload(&f6), Some((53, 62..66)));
        // Ethernet padding after the datagram is not payload.
        let mut padded = frames::ipv4(17, "198.18.0.1".parse().unwrap(), 9000, 1);
        padded.resize(60, 0);
        assert_eq!(udp_payload(&padded), Some((9000, 42..43)));
        // A VLAN tag shifts everything by 4.
        let mut tagged = f.clone();
        tagged.splice(12..12, [0x81, 0x00, 0x00, 0x0a]);
        assert_eq!(udp_payload(&tagged), Some((9000, 46..69)));
        assert_eq!(
            udp_payload(&frames::ipv4(6, "198.18.0.1".parse().unwrap(), 80, 0)),
            None
        );
        assert_eq!(udp_payload(&f[..40]), None);
    }

    #[test]
    fn respond_answers_the_port_and_counts_the_rest() {
        let mut c = Counters::default();
        let req = frames::ipv4(17, "198.18.0.1".parse().unwrap(), 9000, 20);
        let mut f = req.clone();
        assert!(respond(&mut f, 9000, ReplyFormat::Echo, &mut c));
        assert_eq!(&f[42..], &req[42..], "payload echoed");
        assert_eq!(&f[0..6], &req[6..12], "addressed back to the sender");
        let mut other = frames::ipv4(17, "198.18.0.1".parse().unwrap(), 9001, 20);
        assert!(!respond(&mut other, 9000, ReplyFormat::Echo, &mut c));
        let mut not_sockperf = req.clone();
        not_sockperf[42 + 9] = 0; // no client or pong-request flag
        assert!(!respond(
            &mut not_sockperf,
            9000,
            ReplyFormat::Sockperf,
            &mut c
        ));
        assert_eq!(
            (c.requests, c.replies, c.unanswered, c.other_frames),
            (2, 1, 1, 1)
        );
        assert_eq!((c.request_bytes, c.reply_bytes), (40, 20));
    }
}
