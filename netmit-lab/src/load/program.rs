//! `netmit_load` in user space: loading it with its parameters, attaching it natively
//! through a bpf_link that is never pinned (so it goes when the process goes, crash or
//! not), reading its counters and histogram, and its closed-loop slots and control.

use aya::{
    Ebpf,
    maps::{Array, MapData, MapError, PerCpuArray},
    programs::{ProgramError, TestRun, TestRunOptions, Xdp, XdpMode, links::FdLink},
};
use netmit_common::{LatencyHist, LoadCounters, LoadParams, names};

use super::{Buckets, LoadError};
use netmit_user::ebpf::EBPF_OBJECT;

/// The most closed-loop slots (the window): the slot map's size and what user space
/// checks for lost requests every few milliseconds, one map lookup per slot.
pub const MAX_WINDOW: u32 = 4096;

/// The load client's XDP program, loaded (and possibly attached).
pub struct LoadProgram {
    /// Dropped first: detaches the program.
    link: Option<FdLink>,
    ebpf: Ebpf,
}

impl std::fmt::Debug for LoadProgram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadProgram")
            .field("attached", &self.link.is_some())
            .finish_non_exhaustive()
    }
}

fn map_err(what: &'static str) -> impl FnOnce(MapError) -> LoadError {
    move |source| LoadError::Map { what, source }
}

impl LoadProgram {
    /// Loads `netmit_load` with `params` and `slots` closed-loop slots (at least 1, at
    /// most [`MAX_WINDOW`]), without attaching it. The steering program's maps, which it
    /// does not use, are created with one entry each.
    ///
    /// # Minimum kernel version
    ///
    /// 5.9 for the bpf_link of [`LoadProgram::attach`]; loading alone needs 5.3 (bounded
    /// loops).
    ///
    /// # Errors
    ///
    /// [`LoadError::NotPermitted`] without BPF privileges, or a failed load (the
    /// verifier's log is in the source error).
    pub fn load(params: LoadParams, slots: u32) -> Result<Self, LoadError> {
        if !netmit_user::sys::bpf::has_bpf_privileges() {
            return Err(LoadError::NotPermitted);
        }
        let mut loader = netmit_user::ebpf::loader();
        for name in names::STEERING_MAPS {
            loader.map_max_entries(name, 1);
        }
        loader.map_max_entries(names::MAP_LOAD_SLOTS, slots.clamp(1, MAX_WINDOW));
        let mut ebpf = loader
            .override_global(names::GLOBAL_LOAD_PARAMS, &params, true)
            .load(EBPF_OBJECT)
            .map_err(LoadError::Object)?;
        let prog = xdp_mut(&mut ebpf)?;
        prog.load().map_err(|source| LoadError::Program {
            what: "loading the load-client program (netmit_load)",
            source,
        })?;
        Ok(Self { link: None, ebpf })
    }

    fn program(&self) -> Result<&Xdp, LoadError> {
        self.ebpf
            .program(names::PROG_LOAD)
            .ok_or_else(no_program)?
            .try_into()
            .map_err(wrong_type)
    }

    /// Attaches the program to `ifindex` (named `iface` in errors) in native (driver)
    /// mode, through a bpf_link that only this value holds: dropping it, or the end of
    /// the process, detaches the program.
    ///
    /// # Errors
    ///
    /// [`LoadError::Attach`] when the device refuses (another XDP program, no native
    /// XDP support), [`LoadError::NoLink`] when the kernel has no XDP bpf_link.
    pub fn attach(&mut self, iface: &str, ifindex: u32) -> Result<(), LoadError> {
        let prog = xdp_mut(&mut self.ebpf)?;
        let id = prog
            .attach_to_if_index(ifindex, XdpMode::Driver)
            .map_err(|source| LoadError::Attach {
                iface: iface.to_string(),
                source,
            })?;
        let link = prog.take_link(id).map_err(|source| LoadError::Program {
            what: "taking the load-client program's link",
            source,
        })?;
        // A netlink attachment (no bpf_link) is detached when `link` drops here.
        let link: FdLink = link
            .try_into()
            .map_err(|_| LoadError::NoLink(iface.to_string()))?;
        self.link = Some(link);
        Ok(())
    }

    /// Runs one frame through the program with `BPF_PROG_TEST_RUN` (not live: nothing
    /// is sent) and returns the XDP action and the frame as the program left it.
    ///
    /// # Errors
    ///
    /// A failed `BPF_PROG_TEST_RUN` (the kernel refuses frames shorter than 14 bytes).
    pub fn test_run(&self, frame: &[u8]) -> Result<(u32, Vec<u8>), LoadError> {
        let mut out = vec![0u8; frame.len() + 256];
        let result = self
            .program()?
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .map_err(|source| LoadError::Program {
                what: "BPF_PROG_TEST_RUN of netmit_load",
                source,
            })?;
        out.truncate(result.data_size_out as usize);
        Ok((result.return_value, out))
    }

    /// The counters, summed over CPUs.
    ///
    /// # Errors
    ///
    /// A failed map read.
    pub fn counters(&self) -> Result<LoadCounters, LoadError> {
        let map = self.map(names::MAP_LOAD_COUNTERS)?;
        let arr: PerCpuArray<&MapData, LoadCounters> =
            PerCpuArray::try_from(map).map_err(map_err("opening the load counters"))?;
        let values = arr
            .get(&0, 0)
            .map_err(map_err("reading the load counters"))?;
        let mut sum = LoadCounters::default();
        for v in values.iter() {
            sum.replies += v.replies;
            sum.bytes += v.bytes;
            sum.latency_sum_ns += v.latency_sum_ns;
            sum.reflected += v.reflected;
            sum.stale += v.stale;
            sum.bad_stamp += v.bad_stamp;
            sum.passed += v.passed;
            sum.unreflected += v.unreflected;
        }
        Ok(sum)
    }

    /// The latency histogram, summed over CPUs.
    ///
    /// # Errors
    ///
    /// A failed map read.
    pub fn histogram(&self) -> Result<Buckets, LoadError> {
        let map = self.map(names::MAP_LOAD_HIST)?;
        let arr: PerCpuArray<&MapData, LatencyHist> =
            PerCpuArray::try_from(map).map_err(map_err("opening the latency histogram"))?;
        let values = arr
            .get(&0, 0)
            .map_err(map_err("reading the latency histogram"))?;
        let mut sum = Buckets::default();
        for v in values.iter() {
            sum.add(&v.buckets);
        }
        Ok(sum)
    }

    /// The send time recorded for closed-loop slot `slot`.
    ///
    /// # Errors
    ///
    /// A failed map read (a slot out of range).
    pub fn slot(&self, slot: u32) -> Result<u64, LoadError> {
        let map = self.map(names::MAP_LOAD_SLOTS)?;
        let arr: Array<&MapData, u64> =
            Array::try_from(map).map_err(map_err("opening the slot map"))?;
        arr.get(&slot, 0).map_err(map_err("reading a slot"))
    }

    /// Sets the send time of closed-loop slot `slot`: replies to requests sent before
    /// `ns` are stale from now on.
    ///
    /// # Errors
    ///
    /// A failed map write (a slot out of range).
    pub fn set_slot(&mut self, slot: u32, ns: u64) -> Result<(), LoadError> {
        let map = self.map_mut(names::MAP_LOAD_SLOTS)?;
        let mut arr: Array<&mut MapData, u64> =
            Array::try_from(map).map_err(map_err("opening the slot map"))?;
        arr.set(slot, ns, 0).map_err(map_err("writing a slot"))
    }

    /// Sets the control value ([`netmit_common::LOAD_CTL_RUN`] or
    /// [`netmit_common::LOAD_CTL_DRAIN`]).
    ///
    /// # Errors
    ///
    /// A failed map write.
    pub fn set_control(&mut self, value: u32) -> Result<(), LoadError> {
        let map = self.map_mut(names::MAP_LOAD_CTL)?;
        let mut arr: Array<&mut MapData, u32> =
            Array::try_from(map).map_err(map_err("opening the control map"))?;
        arr.set(0, value, 0)
            .map_err(map_err("writing the control map"))
    }

    fn map(&self, name: &'static str) -> Result<&aya::maps::Map, LoadError> {
        self.ebpf.map(name).ok_or(LoadError::Map {
            what: "the eBPF object lacks a load-client map",
            source: MapError::InvalidName {
                name: name.to_string(),
            },
        })
    }

    fn map_mut(&mut self, name: &'static str) -> Result<&mut aya::maps::Map, LoadError> {
        self.ebpf.map_mut(name).ok_or(LoadError::Map {
            what: "the eBPF object lacks a load-client map",
            source: MapError::InvalidName {
                name: name.to_string(),
            },
        })
    }
}

/// The CLOCK_MONOTONIC time in nanoseconds: the clock of `bpf_ktime_get_ns()`.
pub use netmit_user::sys::process::monotonic_ns;

/// The load-client program of `ebpf`, for changes (load, attach).
fn xdp_mut(ebpf: &mut Ebpf) -> Result<&mut Xdp, LoadError> {
    ebpf.program_mut(names::PROG_LOAD)
        .ok_or_else(no_program)?
        .try_into()
        .map_err(wrong_type)
}

fn no_program() -> LoadError {
    LoadError::Program {
        what: "the eBPF object has no load-client program",
        source: ProgramError::NotLoaded,
    }
}

fn wrong_type(source: ProgramError) -> LoadError {
    LoadError::Program {
        what: "load-client program type",
        source,
    }
}
