//! The veth ends: learning their ifindex and MAC address from `ip -j link`, waiting until
//! they can carry traffic, and their offload settings.

use std::{
    thread,
    time::{Duration, Instant},
};

use super::{
    End, Result, Side, Testbed, TestbedError,
    netns::{check_output, ns_command},
};

/// How long [`wait_until_ready`] waits for a veth end.
const READY_TIMEOUT: Duration = Duration::from_secs(10);

impl Testbed {
    /// Turns generic receive offload of `side`'s veth end on or off (`ethtool -K <if> gro …`).
    /// A veth has a NAPI instance only with GRO on or native XDP attached.
    ///
    /// # Errors
    /// As [`Testbed::run`] (e.g. no `ethtool` installed).
    pub fn set_gro(&self, side: Side, on: bool) -> Result<()> {
        let state = if on { "on" } else { "off" };
        self.run(side, "ethtool", ["-K", self.ifname(side), "gro", state])?;
        Ok(())
    }

    /// The offloads of `side`'s veth end that decide where its traffic is received
    /// (`ethtool -k`).
    ///
    /// # Errors
    /// As [`Testbed::run`].
    pub fn offloads(&self, side: Side) -> Result<Offloads> {
        let out = self.run(side, "ethtool", ["-k", self.ifname(side)])?;
        Ok(Offloads::parse(&String::from_utf8_lossy(&out.stdout)))
    }
}

/// The offloads of a veth end that decide whether packets reach the peer's NAPI.
///
/// `veth_xmit` hands a packet to the receiving end's NAPI (where XDP, GRO, busy polling,
/// IRQ deferral and threaded NAPI apply) only if that end has a NAPI instance (GRO on or
/// native XDP attached) and the packet is "eligible for GRO"
/// (`veth_skb_is_eligible_for_gro`, `drivers/net/veth.c`): the receiver runs XDP, or the
/// sender has TSO off, or the packet comes from a UDP socket and the receiver has
/// `rx-udp-gro-forwarding` or `rx-gro-list` on. Anything else goes through `netif_rx`
/// into the backlog of the *sending* CPU, a path no NAPI setting of the receiver touches.
/// Frames sent with XDP (`ndo_xdp_xmit`, the load client's) always reach the NAPI.
/// Attaching native XDP to one end also takes the software GSO features (TSO among them)
/// from its peer while the program is attached (`off [fixed]` in `ethtool -k`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Offloads {
    /// `generic-receive-offload`.
    pub gro: bool,
    /// `tcp-segmentation-offload`.
    pub tso: bool,
    /// `rx-udp-gro-forwarding`.
    pub udp_gro_forwarding: bool,
    /// `rx-gro-list`.
    pub gro_list: bool,
}

impl Offloads {
    /// Reads `ethtool -k` output; a feature not listed is off.
    pub fn parse(text: &str) -> Offloads {
        let on = |name: &str| {
            text.lines().any(|l| {
                l.trim()
                    .strip_prefix(name)
                    .and_then(|r| r.strip_prefix(':'))
                    .is_some_and(|v| v.trim_start().starts_with("on"))
            })
        };
        Offloads {
            gro: on("generic-receive-offload"),
            tso: on("tcp-segmentation-offload"),
            udp_gro_forwarding: on("rx-udp-gro-forwarding"),
            gro_list: on("rx-gro-list"),
        }
    }

    /// Whether UDP socket traffic sent from an end with offloads `self` reaches the NAPI
    /// of a peer with offloads `peer` that does (`peer_xdp`) or does not run a native
    /// XDP program (see the type's documentation).
    pub fn udp_reaches_peer_napi(&self, peer: &Offloads, peer_xdp: bool) -> bool {
        (peer.gro || peer_xdp)
            && (peer_xdp || !self.tso || peer.udp_gro_forwarding || peer.gro_list)
    }

    /// `tso on, gro on, ...` for reports.
    pub fn describe(&self) -> String {
        let w = |b: bool| if b { "on" } else { "off" };
        format!(
            "tso {}, gro {}, rx-udp-gro-forwarding {}, rx-gro-list {}",
            w(self.tso),
            w(self.gro),
            w(self.udp_gro_forwarding),
            w(self.gro_list)
        )
    }
}

/// Fills in `end`'s ifindex and MAC address and returns once it can carry traffic.
///
/// `ip link set up` returns before a veth can carry traffic. The kernel's linkwatch attaches
/// the real qdisc and sets operstate UP later (until then packets are dropped), and IPv6
/// installs the local route of even a `nodad` address from the addrconf workqueue (until
/// then echo requests to it are dropped). Under load both lag by up to seconds, which made
/// the first pings of a fresh testbed fail. This waits for both.
pub(super) fn wait_until_ready(end: &mut End) -> Result<()> {
    let started = Instant::now();
    let ns = Some(end.name.as_str());
    loop {
        let out = check_output(
            &mut ns_command(&end.fd, "ip", ["-j", "link", "show", "dev", &end.name]),
            ns,
        )?;
        let link = parse_ip_link_json(&end.name, &out.stdout)?;
        (end.ifindex, end.mac) = (link.ifindex, link.mac);
        let ip6 = end.ip6.to_string();
        let routes = check_output(
            &mut ns_command(
                &end.fd,
                "ip",
                ["-j", "-6", "route", "show", "table", "local", &ip6],
            ),
            ns,
        )?;
        let ipv6_route = serde_json::from_slice::<serde_json::Value>(&routes.stdout)
            .ok()
            .and_then(|v| v.as_array().map(|a| !a.is_empty()))
            .unwrap_or(false);
        if link.operstate == "UP" && ipv6_route {
            return Ok(());
        }
        if started.elapsed() >= READY_TIMEOUT {
            return Err(TestbedError::NotReady {
                ifname: end.name.clone(),
                operstate: link.operstate,
                ipv6_route,
                waited: READY_TIMEOUT,
            });
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// What [`wait_until_ready`] needs from `ip -j link show dev X`.
#[derive(Debug)]
struct LinkInfo {
    ifindex: u32,
    mac: [u8; 6],
    operstate: String,
}

/// Parses the output of `ip -j link show dev <ifname>`.
fn parse_ip_link_json(ifname: &str, json: &[u8]) -> Result<LinkInfo> {
    let unexpected = |message: String| TestbedError::LinkOutput {
        ifname: ifname.to_owned(),
        message,
    };
    let v: serde_json::Value = serde_json::from_slice(json).map_err(|e| {
        unexpected(format!(
            "not JSON ({e}): {:?}",
            String::from_utf8_lossy(json)
        ))
    })?;
    let link = v
        .get(0)
        .ok_or_else(|| unexpected(format!("no interface listed in {v}")))?;
    let ifindex = link
        .get("ifindex")
        .and_then(serde_json::Value::as_u64)
        .and_then(|i| u32::try_from(i).ok())
        .ok_or_else(|| unexpected(format!("no ifindex in {link}")))?;
    let addr = link
        .get("address")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| unexpected(format!("no address in {link}")))?;
    let mac = parse_mac(addr).ok_or_else(|| unexpected(format!("bad MAC address {addr:?}")))?;
    let operstate = link
        .get("operstate")
        .and_then(serde_json::Value::as_str)
        .unwrap_or("UNKNOWN")
        .to_owned();
    Ok(LinkInfo {
        ifindex,
        mac,
        operstate,
    })
}

/// Parses `aa:bb:cc:dd:ee:ff`; `None` unless it is exactly six hex bytes.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for byte in &mut mac {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VETH: &str = "Features for v0:\ntcp-segmentation-offload: on\n\ttx-tcp-segmentation: on\n\
        generic-receive-offload: off\nrx-gro-list: off\nrx-udp-gro-forwarding: on\n";

    #[test]
    fn parses_ethtool_k() {
        let o = Offloads::parse(VETH);
        assert_eq!(
            o,
            Offloads {
                gro: false,
                tso: true,
                udp_gro_forwarding: true,
                gro_list: false,
            }
        );
        assert_eq!(Offloads::parse(""), Offloads::default());
        // A prefix of a longer name is not the feature.
        assert!(!Offloads::parse("generic-receive-offload-x: on\n").gro);
    }

    #[test]
    fn the_veth_rule() {
        let tso = Offloads {
            tso: true,
            ..Offloads::default()
        };
        let gro = Offloads {
            gro: true,
            ..Offloads::default()
        };
        let fwd = Offloads {
            udp_gro_forwarding: true,
            ..gro
        };
        assert!(
            !tso.udp_reaches_peer_napi(&gro, false),
            "TSO on: the backlog"
        );
        assert!(Offloads::default().udp_reaches_peer_napi(&gro, false));
        assert!(tso.udp_reaches_peer_napi(&fwd, false));
        assert!(
            tso.udp_reaches_peer_napi(&Offloads::default(), true),
            "XDP: always"
        );
        assert!(!Offloads::default().udp_reaches_peer_napi(&Offloads::default(), false));
    }

    #[test]
    fn mac_parsing() {
        assert_eq!(
            parse_mac("02:ab:00:00:10:ff"),
            Some([2, 0xab, 0, 0, 0x10, 0xff])
        );
        for bad in [
            "02:ab",
            "02:ab:00:00:10:ff:00",
            "02:ab:00:00:10:fg",
            "",
            "2:ab:0:0:10:fff",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn ip_link_json_parsing() {
        // Captured from `ip -j link show dev nm4711x0a` (iproute2 6.1), shortened.
        let json = br#"[{"ifindex":2,"link_netnsid":0,"ifname":"nm4711x0a","flags":["BROADCAST","MULTICAST","UP","LOWER_UP"],"mtu":1500,"qdisc":"noqueue","operstate":"UP","linkmode":"DEFAULT","group":"default","txqlen":1000,"link_type":"ether","address":"6e:3f:9a:01:02:03","broadcast":"ff:ff:ff:ff:ff:ff"}]"#;
        let link = parse_ip_link_json("nm4711x0a", json).unwrap();
        assert_eq!(link.ifindex, 2);
        assert_eq!(link.mac, [0x6e, 0x3f, 0x9a, 1, 2, 3]);
        assert_eq!(link.operstate, "UP");

        for (bad, want) in [
            (&b"Device does not exist"[..], "not JSON"),
            (b"[]", "no interface"),
            (br#"[{"address":"6e:3f:9a:01:02:03"}]"#, "no ifindex"),
            (br#"[{"ifindex":2}]"#, "no address"),
            (
                br#"[{"ifindex":2,"address":"6e:3f"}]"#,
                "bad MAC address \"6e:3f\"",
            ),
        ] {
            match parse_ip_link_json("nm4711x0a", bad) {
                Err(TestbedError::LinkOutput { ifname, message }) => {
                    assert_eq!(ifname, "nm4711x0a");
                    assert!(message.contains(want), "{message}");
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(bad)),
            }
        }
    }
}
