//! The peer of `bench xdp`: xdp-tools' `xdp-filter` (Debian `xdp-tools`), the program a
//! user would pick to drop or pass traffic by port, address and MAC without writing one.
//!
//! Its BPF objects ship as `xdpfilt_{alw,dny}_{all,eth,ip,tcp,udp}.o`, named after the
//! default policy (`alw`: pass what no entry denies; `dny`: drop what no entry allows);
//! `xdpfilt_alw_all.o` is the default-allow program with every feature compiled in
//! (Ethernet, IPv4, IPv6, TCP and UDP ports), the one `xdp-filter load` picks for its
//! default policy when all features are asked for. It is loaded here as it ships,
//! its tables filled the way `xdp-filter port/ip/ether` fill them (values are per-CPU
//! `u64`s: match-mode bits in the low bits, a hit counter above `COUNTER_SHIFT`) with the
//! part of the benchmark's rule set that it can express ([`PeerRules`]).
//!
//! Its maps are pinned by name (libbpf's `LIBBPF_PIN_BY_NAME`), and a loader that honours
//! that pins them at `/sys/fs/bpf/<map>`, or reuses what is pinned there: a real
//! xdp-filter's tables, which filling them would rewrite. So the object is loaded with a
//! pin directory of its own (`PinScratch`), made fresh for this load and removed right
//! after it; the maps live on through the loader's descriptors.

use std::{
    collections::BTreeMap,
    fs::{self, DirBuilder},
    io,
    net::IpAddr,
    os::unix::fs::DirBuilderExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicU32, Ordering},
};

use netmit_common::{Action, RuleProto};
use netmit_user::{ebpf::pins::BPFFS_MOUNT, steer::Rule, sys::fs::remove_owned_dir};

use aya::{
    Ebpf, EbpfLoader,
    maps::{PerCpuArray, PerCpuHashMap, PerCpuValues},
    programs::{TestRun, TestRunOptions, Xdp},
    util::nr_cpus,
};

/// Where Debian (and xdp-tools' `make install`) put the objects.
const OBJECT_DIRS: &[&str] = &[
    "/usr/lib/x86_64-linux-gnu/bpf",
    "/usr/lib/aarch64-linux-gnu/bpf",
    "/usr/lib/bpf",
    "/usr/local/lib/bpf",
];
const OBJECT: &str = "xdpfilt_alw_all.o";
const PROGRAM: &str = "xdpfilt_alw_all";

// xdp-filter's common_kern_user.h.
const MAP_FLAG_DST: u64 = 1 << 1;
const MAP_FLAG_TCP: u64 = 1 << 2;
const MAP_FLAG_UDP: u64 = 1 << 3;

/// xdp-filter's deny entries for the part of a netmit rule set it can express: a drop rule
/// on destination ports alone (a range is one entry per port; `proto=udp`, `tcp` or
/// both), or on one destination address alone (a /32 or /128: its tables hold exact
/// addresses, no prefixes). It has no VLAN match, no prefix match, no rule that combines
/// fields, and no ranking (any entry that matches drops), so the other rules are left
/// out: its verdict equals netmit's on a frame that no left-out rule outranks, which the
/// benchmark checks for each case it compares.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PeerRules {
    /// Destination port -> `MAP_FLAG_DST` with `MAP_FLAG_TCP` and/or `MAP_FLAG_UDP`.
    pub ports: BTreeMap<u16, u64>,
    /// IPv4 destination addresses.
    pub v4: Vec<[u8; 4]>,
    /// IPv6 destination addresses.
    pub v6: Vec<[u8; 16]>,
    /// Rules left out (not expressible, or not drops).
    pub left_out: usize,
}

impl PeerRules {
    /// The entries for `rules`.
    pub fn from_rules(rules: &[Rule]) -> PeerRules {
        let mut peer = PeerRules::default();
        for r in rules {
            let plain = r.vlan.is_none() && r.action == Action::Drop;
            match (&r.dst, r.has_port_constraint()) {
                (None, true) if plain => {
                    let flags = MAP_FLAG_DST
                        | match r.proto {
                            RuleProto::Udp => MAP_FLAG_UDP,
                            RuleProto::Tcp => MAP_FLAG_TCP,
                            RuleProto::Any => MAP_FLAG_UDP | MAP_FLAG_TCP,
                        };
                    for port in r.dport.clone() {
                        *peer.ports.entry(port).or_default() |= flags;
                    }
                }
                (Some(p), false) if plain && r.proto == RuleProto::Any => match p.addr {
                    IpAddr::V4(a) if p.len == 32 => peer.v4.push(a.octets()),
                    IpAddr::V6(a) if p.len == 128 => peer.v6.push(a.octets()),
                    _ => peer.left_out += 1,
                },
                _ => peer.left_out += 1,
            }
        }
        peer
    }
}

/// Why the peer cannot be measured.
#[derive(Debug, thiserror::Error)]
pub enum XdpFilterError {
    /// The object is not installed.
    #[error(
        "xdp-filter's {OBJECT} is not installed (looked in {}); install Debian's xdp-tools \
         (`apt-get install xdp-tools`, which `cargo xtask setup` does)",
        OBJECT_DIRS.join(", ")
    )]
    NotInstalled,
    /// Reading, loading or filling it failed.
    #[error("xdp-filter ({what}): {reason}")]
    Load {
        /// The step.
        what: &'static str,
        /// The error.
        reason: String,
    },
}

fn load_err(what: &'static str) -> impl Fn(String) -> XdpFilterError {
    move |reason| XdpFilterError::Load { what, reason }
}

/// The installed object, if any.
pub fn object_path() -> Option<PathBuf> {
    OBJECT_DIRS
        .iter()
        .map(|d| PathBuf::from(d).join(OBJECT))
        .find(|p| p.is_file())
}

/// Prefix of the pin directories [`XdpFilter::load`] makes in bpffs; the pid follows, so a
/// sweep can tell a dead process's directory ([`sweep_scratch`]).
pub const SCRATCH_PREFIX: &str = "netmit-xdp-filter-";

/// The maps `xdpfilt_alw_all.o` pins, for sweeping a directory a killed run left.
const KNOWN_MAPS: &[&str] = &[
    "filter_ports",
    "filter_ipv4",
    "filter_ipv6",
    "filter_ethernet",
    "xdp_stats_map",
];

/// A pin directory made for one load: `/sys/fs/bpf/netmit-xdp-filter-<pid>-<n>`, created
/// by this process (mkdir fails on anything already there, a symlink included), and
/// removed with the pins in it, and nothing else, when the load is done.
struct PinScratch {
    dir: PathBuf,
}

impl PinScratch {
    fn create() -> Result<PinScratch, XdpFilterError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let err = load_err("making a pin directory");
        for _ in 0..16 {
            let n = NEXT.fetch_add(1, Ordering::Relaxed);
            let dir =
                Path::new(BPFFS_MOUNT).join(format!("{SCRATCH_PREFIX}{}-{n}", std::process::id()));
            match DirBuilder::new().mode(0o700).create(&dir) {
                Ok(()) => return Ok(PinScratch { dir }),
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(err(format!(
                        "{}: {e} (is bpffs mounted at {BPFFS_MOUNT}?)",
                        dir.display()
                    )));
                }
            }
        }
        Err(err(format!(
            "every name under {BPFFS_MOUNT}/{SCRATCH_PREFIX}{}-* is taken",
            std::process::id()
        )))
    }

    fn path(&self) -> &Path {
        &self.dir
    }

    /// Removes the pins of `maps` and the directory; anything else in it keeps it.
    fn remove(self, maps: &[String]) -> Result<(), XdpFilterError> {
        let names: Vec<&str> = maps.iter().map(String::as_str).collect();
        let result = remove_owned_dir(&self.dir, &names);
        std::mem::forget(self);
        result
            .map(drop)
            .map_err(|e| load_err("removing the pin directory")(e.to_string()))
    }
}

impl Drop for PinScratch {
    /// A failed load: whatever it pinned before failing is one of the object's maps.
    fn drop(&mut self) {
        let _ = remove_owned_dir(&self.dir, KNOWN_MAPS);
    }
}

/// Removes the pin directories of processes that are gone (killed between pinning and
/// removing). Returns the directories removed.
pub fn sweep_scratch() -> Vec<PathBuf> {
    let mut removed = Vec::new();
    for entry in fs::read_dir(BPFFS_MOUNT).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(pid) = name
            .strip_prefix(SCRATCH_PREFIX)
            .and_then(|rest| rest.split_once('-'))
            .and_then(|(pid, _)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        if Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        if remove_owned_dir(&entry.path(), KNOWN_MAPS).unwrap_or(false) {
            removed.push(entry.path());
        }
    }
    removed
}

/// xdp-filter's program, loaded (not attached) with filled tables.
pub struct XdpFilter {
    ebpf: Ebpf,
}

impl XdpFilter {
    /// Loads `xdpfilt_alw_all.o` and fills its tables with `rules`.
    ///
    /// # Errors
    /// [`XdpFilterError::NotInstalled`] without xdp-tools; [`XdpFilterError::Load`] when
    /// the object cannot be loaded or its tables filled.
    pub fn load(rules: &PeerRules) -> Result<XdpFilter, XdpFilterError> {
        let path = object_path().ok_or(XdpFilterError::NotInstalled)?;
        let bytes = fs::read(&path).map_err(|e| XdpFilterError::Load {
            what: "reading the object",
            reason: format!("{}: {e}", path.display()),
        })?;
        let scratch = PinScratch::create()?;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(scratch.path())
            .load(&bytes)
            .map_err(|e| load_err("loading the object")(e.to_string()))?;
        let maps: Vec<String> = ebpf.maps().map(|(name, _)| name.to_owned()).collect();
        scratch.remove(&maps)?;
        let prog: &mut Xdp = ebpf
            .program_mut(PROGRAM)
            .ok_or_else(|| load_err("finding the program")(format!("no program {PROGRAM}")))?
            .try_into()
            .map_err(|e: aya::programs::ProgramError| load_err("program type")(e.to_string()))?;
        prog.load()
            .map_err(|e| load_err("loading the program")(e.to_string()))?;
        let mut filter = XdpFilter { ebpf };
        filter.fill(rules)?;
        Ok(filter)
    }

    /// Fills its tables with `rules` ([`PeerRules::from_rules`]).
    fn fill(&mut self, rules: &PeerRules) -> Result<(), XdpFilterError> {
        let cpus = nr_cpus().map_err(|(_, e)| load_err("counting CPUs")(e.to_string()))?;
        let per_cpu = |v: u64| PerCpuValues::try_from(vec![v; cpus]).expect("one value per CPU");
        let fill = load_err("filling the tables");
        {
            let map = self
                .ebpf
                .map_mut("filter_ports")
                .ok_or_else(|| fill("no filter_ports".into()))?;
            let mut ports: PerCpuArray<_, u64> =
                PerCpuArray::try_from(map).map_err(|e| fill(e.to_string()))?;
            for (&port, &flags) in &rules.ports {
                // Its key is the header's port as stored (network byte order) in a u32.
                let key = u16::from_ne_bytes(port.to_be_bytes()) as u32;
                ports
                    .set(key, per_cpu(flags), 0)
                    .map_err(|e| fill(e.to_string()))?;
            }
        }
        {
            let map = self
                .ebpf
                .map_mut("filter_ipv4")
                .ok_or_else(|| fill("no filter_ipv4".into()))?;
            let mut v4: PerCpuHashMap<_, u32, u64> =
                PerCpuHashMap::try_from(map).map_err(|e| fill(e.to_string()))?;
            for addr in &rules.v4 {
                v4.insert(u32::from_ne_bytes(*addr), per_cpu(MAP_FLAG_DST), 0)
                    .map_err(|e| fill(e.to_string()))?;
            }
        }
        {
            let map = self
                .ebpf
                .map_mut("filter_ipv6")
                .ok_or_else(|| fill("no filter_ipv6".into()))?;
            let mut v6: PerCpuHashMap<_, [u8; 16], u64> =
                PerCpuHashMap::try_from(map).map_err(|e| fill(e.to_string()))?;
            for addr in &rules.v6 {
                v6.insert(*addr, per_cpu(MAP_FLAG_DST), 0)
                    .map_err(|e| fill(e.to_string()))?;
            }
        }
        Ok(())
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program(PROGRAM)
            .and_then(|p| <&Xdp>::try_from(p).ok())
            .expect("loaded in XdpFilter::load")
    }

    /// The XDP action it returns for `frame` (2 = XDP_PASS, 1 = XDP_DROP).
    ///
    /// # Errors
    /// The BPF_PROG_TEST_RUN error.
    pub fn action(&self, frame: &[u8]) -> Result<u32, XdpFilterError> {
        let mut out = vec![0u8; frame.len() + 512];
        self.program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .map(|r| r.return_value)
            .map_err(|e| load_err("BPF_PROG_TEST_RUN")(e.to_string()))
    }

    /// Average time of one run over `repeat` runs of `frame`, as the kernel measures it.
    ///
    /// # Errors
    /// The BPF_PROG_TEST_RUN error.
    pub fn time(&self, frame: &[u8], repeat: u32) -> Result<std::time::Duration, XdpFilterError> {
        let mut out = vec![0u8; frame.len() + 512];
        self.program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .map(|r| r.duration)
            .map_err(|e| load_err("BPF_PROG_TEST_RUN")(e.to_string()))
    }
}
