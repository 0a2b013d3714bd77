//! Where the comparison runs: a throwaway veth testbed, or two interfaces the user
//! names (each in a network namespace of its own, e.g. two NIC ports cabled together).
//!
//! Both are reached the same way: a file of each end's network namespace, entered with
//! `setns(CLONE_NEWNET)` by one thread (scoped) or in a child's `pre_exec`, never by
//! the whole process.
//!
//! What differs is what the benchmark may change. The testbed is its own: GRO on (a veth
//! has a NAPI only with GRO or native XDP), threaded NAPI pinned to the server's and
//! the client's core, NAPI settings written directly (they die with the namespaces).
//! Named interfaces are the user's: only the server interface's per-NAPI settings
//! change, each through the restore journal (`/run/netmit`), and they are restored when
//! the run ends, also on error or Ctrl-C, and by `netmit tune restore` in the server's
//! namespace after a crash.

use std::{
    fs::File,
    net::IpAddr,
    os::fd::{AsFd, OwnedFd},
    path::{Path, PathBuf},
    process::Command,
    sync::Arc,
    thread,
};

use super::{ModesError, setup::NapiSettings};
use crate::testbed::{Side, Testbed, sweep_orphans, tagged_prefix};
use netmit_user::{
    host::System,
    sys::{
        IfName, IfNameError, Netdev,
        napi::{self, NapiParam},
        netns,
    },
    tune::{journal::Journal, setting::Setting},
};

/// An interface the user names for one end, and its network namespace.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    /// Interface name (in `netns`).
    pub iface: String,
    /// A network namespace name (`/run/netns/NAME`, as `ip netns add` makes), or `None`
    /// for the namespace netmit runs in.
    pub netns: Option<String>,
}

/// The two ends: side A runs the load client, side B the server.
pub(crate) struct Bed {
    /// The testbed, when the benchmark built one (dropped last: it owns the namespaces).
    testbed: Option<Testbed>,
    ends: [End; 2],
    server_cpu: usize,
    client_cpu: usize,
    /// What the report should say about the testbed's offloads.
    offload_note: Option<String>,
}

struct End {
    iface: String,
    /// The device, resolved in its namespace.
    dev: Option<Netdev>,
    /// The namespace file (`None`: the current namespace).
    ns: Option<Arc<OwnedFd>>,
    /// For messages.
    ns_name: String,
}

fn idx(side: Side) -> usize {
    match side {
        Side::A => 0,
        Side::B => 1,
    }
}

fn open_ns(path: &Path) -> Result<Arc<OwnedFd>, ModesError> {
    File::open(path)
        .map(|f| Arc::new(OwnedFd::from(f)))
        .map_err(|source| ModesError::Netns {
            ns: path.display().to_string(),
            source,
        })
}

/// Checks the offloads the comparison depends on (see docs/modes.md, "The testbed") and
/// says what they mean for the report. The server's end needs GRO: without it (and
/// without native XDP, which only the xsk setup attaches) a veth has no NAPI instance,
/// and nothing the setups tune would be on the requests' path.
fn check_offloads(tb: &Testbed) -> Result<String, ModesError> {
    let (client, server) = (tb.offloads(Side::A)?, tb.offloads(Side::B)?);
    if !server.gro {
        return Err(ModesError::ServerPath {
            what: format!(
                "GRO stayed off on the server's veth end {} ({}): it has no NAPI \
                 instance to tune. Check that `ethtool -K {} gro on` works there",
                tb.ifname(Side::B),
                server.describe(),
                tb.ifname(Side::B)
            ),
        });
    }
    if !client.udp_reaches_peer_napi(&server, false) {
        return Err(ModesError::ServerPath {
            what: format!(
                "the load client's UDP datagrams would not reach the server's NAPI \
                 (client end {}, server end {}): with TSO on at the client's end they \
                 are received from the client core's backlog. Check that `ethtool -K {} \
                 tso off` works there",
                client.describe(),
                server.describe(),
                tb.ifname(Side::A)
            ),
        });
    }
    Ok(format!(
        "veth offloads: client end {}; server end {}. The load client's UDP datagrams \
         (socket sender) and its XDP frames (generator, closed loop) both reach the \
         server's NAPI (see docs/modes.md)",
        client.describe(),
        server.describe()
    ))
}

impl Bed {
    /// A fresh veth testbed, prepared as the module documentation says. Testbeds that a
    /// killed or crashed benchmark left behind are removed first.
    pub(crate) fn testbed(server_cpu: usize, client_cpu: usize) -> Result<Bed, ModesError> {
        for line in sweep_orphans() {
            eprintln!("netmit bench modes: removed {line}");
        }
        let tb = Testbed::with_prefix(&tagged_prefix("b"))?;
        tb.set_gro(Side::A, true)?;
        tb.set_gro(Side::B, true)?;
        // The load client's socket sender: with TSO on at the client's end its UDP
        // datagrams would bypass the server's NAPI (see `Offloads`).
        tb.run(Side::A, "ethtool", ["-K", tb.ifname(Side::A), "tso", "off"])?;
        let offload_note = Some(check_offloads(&tb)?);
        let end = |side: Side| -> Result<End, ModesError> {
            let mut end = End {
                iface: tb.ifname(side).to_string(),
                dev: None,
                ns: Some(open_ns(&tb.netns_path(side))?),
                ns_name: tb.ns(side).to_string(),
            };
            end.dev = Some(resolve(&end)?);
            Ok(end)
        };
        let ends = [end(Side::A)?, end(Side::B)?];
        let bed = Bed {
            testbed: Some(tb),
            ends,
            server_cpu,
            client_cpu,
            offload_note,
        };
        for side in [Side::A, Side::B] {
            for id in bed.napis(side)? {
                let iface = bed.iface(side).to_string();
                bed.in_ns(side, || napi::set(id, NapiParam::Threaded, 1))?
                    .map_err(|source| ModesError::Napi { iface, source })?;
            }
        }
        bed.pin_napi_threads()?;
        // Resolve both neighbour entries now: the first requests must not wait for ARP
        // (the kernel queues only a few packets per unresolved neighbour).
        let tb = bed.testbed.as_ref().expect("just built");
        let ip_b = tb.ip(Side::B);
        if !tb.ping(Side::A, ip_b, 1) {
            return Err(ModesError::Unreachable { addr: ip_b.into() });
        }
        Ok(bed)
    }

    /// The interfaces the user named. Nothing is changed yet.
    pub(crate) fn named(
        client: &Endpoint,
        server: &Endpoint,
        server_cpu: usize,
        client_cpu: usize,
    ) -> Result<Bed, ModesError> {
        let end = |e: &Endpoint| -> Result<End, ModesError> {
            let ns = e
                .netns
                .as_ref()
                .map(|n| open_ns(&PathBuf::from("/run/netns").join(n)))
                .transpose()?;
            let mut end = End {
                iface: e.iface.clone(),
                dev: None,
                ns,
                ns_name: e
                    .netns
                    .clone()
                    .unwrap_or_else(|| "the current namespace".into()),
            };
            end.dev = Some(resolve(&end)?);
            Ok(end)
        };
        let ends = [end(client)?, end(server)?];
        if ends[0].ns.is_none() && ends[1].ns.is_none() {
            return Err(ModesError::Config {
                what: "client and server interfaces are both in this network namespace, so \
                       the replies would never leave the host: put one of them in a namespace \
                       of its own (`ip link set IFACE netns NAME`) and name it with \
                       --client-netns or --server-netns"
                    .into(),
            });
        }
        Ok(Bed {
            testbed: None,
            ends,
            server_cpu,
            client_cpu,
            offload_note: None,
        })
    }

    /// What the report should say about the offloads the testbed's paths depend on.
    pub(crate) fn offload_note(&self) -> Option<String> {
        self.offload_note.clone()
    }

    /// Prepares the testbed for a load client that sends from a kernel UDP socket (`bench
    /// app`): TSO off at the client's end, so that its datagrams reach the server's NAPI
    /// rather than the backlog of the client's core (see [`crate::testbed::Offloads`]),
    /// and checks that they do. Named interfaces are left as they are.
    pub(crate) fn socket_client_path(&mut self) -> Result<(), ModesError> {
        let Some(tb) = &self.testbed else {
            return Ok(());
        };
        tb.run(Side::A, "ethtool", ["-K", tb.ifname(Side::A), "tso", "off"])?;
        let (client, server) = (tb.offloads(Side::A)?, tb.offloads(Side::B)?);
        if !client.udp_reaches_peer_napi(&server, false) {
            return Err(ModesError::ServerPath {
                what: format!(
                    "a UDP socket's datagrams from {} would not reach the server's NAPI \
             (client end {}, server end {}): they would bypass every setting compared",
                    tb.ifname(Side::A),
                    client.describe(),
                    server.describe()
                ),
            });
        }
        self.offload_note = Some(format!(
            "veth offloads: client end {}; server end {}. The load client's UDP datagrams \
             reach the server's NAPI (TSO off at the client's end; see docs/modes.md)",
            client.describe(),
            server.describe()
        ));
        Ok(())
    }

    /// Whether this is the benchmark's own testbed.
    pub(crate) fn is_testbed(&self) -> bool {
        self.testbed.is_some()
    }

    /// Words for the report.
    pub(crate) fn describe(&self) -> String {
        if self.is_testbed() {
            "veth testbed, threaded NAPI".into()
        } else {
            format!(
                "client {} ({}), server {} ({})",
                self.ends[0].iface, self.ends[0].ns_name, self.ends[1].iface, self.ends[1].ns_name
            )
        }
    }

    /// The device of one end, resolved in its namespace.
    pub(crate) fn dev(&self, side: Side) -> &Netdev {
        self.ends[idx(side)]
            .dev
            .as_ref()
            .expect("resolved when the bed was made")
    }

    pub(crate) fn iface(&self, side: Side) -> &str {
        &self.ends[idx(side)].iface
    }

    /// Runs `f` on a thread in `side`'s network namespace.
    pub(crate) fn in_ns<T: Send>(
        &self,
        side: Side,
        f: impl FnOnce() -> T + Send,
    ) -> Result<T, ModesError> {
        in_end(&self.ends[idx(side)], f)
    }

    /// A command that runs in `side`'s network namespace.
    pub(crate) fn command(&self, side: Side, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = Command::new(program);
        if let Some(ns) = &self.ends[idx(side)].ns {
            netns::enter_fd_in_child(&mut cmd, Arc::clone(ns));
        }
        cmd
    }

    /// The server's address: the first IPv4 address of its interface.
    pub(crate) fn server_ip(&self) -> Result<IpAddr, ModesError> {
        let iface = self.iface(Side::B).to_string();
        self.in_ns(Side::B, || crate::serve::resolve(&iface))?
            .map(|t| t.addr)
            .map_err(|source| ModesError::Serve {
                setup: super::Setup::Baseline,
                source: Box::new(source),
            })
    }

    /// The NAPI instances of one end, as napi-get reports them.
    fn napi_list(&self, side: Side) -> Result<Vec<napi::NapiInfo>, ModesError> {
        let dev = self.dev(side).clone();
        self.in_ns(side, || napi::list(&dev))?
            .map_err(|source| ModesError::Napi {
                iface: self.iface(side).to_string(),
                source,
            })
    }

    /// The NAPI ids of one end.
    pub(crate) fn napis(&self, side: Side) -> Result<Vec<u32>, ModesError> {
        let list = self.napi_list(side)?;
        if list.is_empty() {
            return Err(ModesError::NoNapi {
                iface: self.iface(side).to_string(),
            });
        }
        Ok(list.iter().map(|n| n.id).collect())
    }

    /// Pins the testbed's NAPI kernel threads to their cores (again after anything that
    /// may have re-created a NAPI). Named interfaces are left as they are.
    pub(crate) fn pin_napi_threads(&self) -> Result<(), ModesError> {
        if !self.is_testbed() {
            return Ok(());
        }
        for (side, cpu) in [(Side::A, self.client_cpu), (Side::B, self.server_cpu)] {
            let iface = self.iface(side).to_string();
            for n in self.napi_list(side)? {
                if let Some(pid) = n.pid {
                    super::pin(pid, cpu).map_err(|source| ModesError::Affinity {
                        what: format!("napi thread of {iface}"),
                        pid,
                        cpu,
                        source,
                    })?;
                }
            }
        }
        Ok(())
    }

    /// Applies per-NAPI settings to the server's end: directly on the testbed, through
    /// the restore journal on a named interface. Returns the server's NAPI ids.
    pub(crate) fn apply_server(&self, s: NapiSettings) -> Result<Vec<u32>, ModesError> {
        let ids = self.napis(Side::B)?;
        let iface = self.iface(Side::B).to_string();
        let dev = self.dev(Side::B).clone();
        let testbed = self.is_testbed();
        self.in_ns(Side::B, || -> Result<(), ModesError> {
            let host = System::new();
            let mut journal = if testbed {
                None
            } else {
                Some(Journal::open().map_err(|e| ModesError::Journal(Box::new(e)))?)
            };
            for &id in &ids {
                for (param, value) in s.values() {
                    match &mut journal {
                        None => napi::set(id, param, value).map_err(|source| ModesError::Napi {
                            iface: iface.clone(),
                            source,
                        })?,
                        Some(j) => {
                            let setting = Setting::Napi {
                                dev: dev.clone(),
                                napi_id: id,
                                param,
                            };
                            j.apply(&host, &setting, value)
                                .map_err(|e| ModesError::Journal(Box::new(e)))?;
                        }
                    }
                }
            }
            Ok(())
        })??;
        Ok(ids)
    }

    /// Puts back what [`Bed::apply_server`] changed on a named interface (nothing to do
    /// on the testbed).
    pub(crate) fn restore(&self) -> Result<(), ModesError> {
        if self.is_testbed() {
            return Ok(());
        }
        let dev = self.dev(Side::B).clone();
        let report = self.in_ns(Side::B, || {
            Journal::open().and_then(|mut j| j.restore(&System::new(), Some(&dev)))
        })?;
        let report = report.map_err(|e| ModesError::Journal(Box::new(e)))?;
        if let Some((setting, value, why)) = report.failed.first() {
            return Err(ModesError::Restore {
                what: format!(
                    "{setting} = {value}: {why}; run `netmit tune restore` in {}",
                    self.ends[1].ns_name
                ),
            });
        }
        Ok(())
    }
}

/// Resolves the end's interface in its namespace.
fn resolve(end: &End) -> Result<Netdev, ModesError> {
    let name: IfName = end
        .iface
        .parse()
        .map_err(|e: IfNameError| ModesError::Config {
            what: e.to_string(),
        })?;
    in_end(end, || Netdev::resolve(&name))?.map_err(|_| ModesError::NoInterface {
        iface: end.iface.clone(),
        ns: end.ns_name.clone(),
    })
}

fn in_end<T: Send>(end: &End, f: impl FnOnce() -> T + Send) -> Result<T, ModesError> {
    let Some(ns) = &end.ns else {
        return Ok(f());
    };
    let fd = ns.as_fd();
    thread::scope(|s| {
        s.spawn(move || netns::enter_fd(fd).map(|()| f()))
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
    })
    .map_err(|source| ModesError::Netns {
        ns: end.ns_name.clone(),
        source,
    })
}
