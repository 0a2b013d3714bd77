//! Running frames through the real steering program with `BPF_PROG_TEST_RUN`, without
//! attaching it anywhere: `netmit classify` dry-runs rules on captured traffic with it,
//! the differential tests compare it with the reference classifier, and
//! `cargo xtask bench xdp` times it.

use std::time::Duration;

use aya::{
    Ebpf,
    programs::{ProgramError, TestRun, TestRunOptions, Xdp},
};
use netmit_common::{Malformed, NO_RULE, PORT_NONE, VERDICT_MAGIC, Verdict, VerdictRecord, names};

use crate::{
    ebpf::{SteerTables, TableError, load_object},
    steer::Rule,
};

/// Errors of the classifier.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClassifyError {
    /// Missing privileges.
    #[error("running BPF programs needs root (CAP_BPF, or CAP_SYS_ADMIN): run it with sudo")]
    NotPermitted,
    /// Loading failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// Program load or test run failed.
    #[error("{what}")]
    Program {
        /// The step.
        what: &'static str,
        /// The error.
        #[source]
        source: ProgramError,
    },
    /// Installing the rules failed.
    #[error(transparent)]
    Tables(#[from] TableError),
    /// The kernel runs XDP programs only on frames with a whole Ethernet header.
    #[error("frame of {0} bytes is shorter than an Ethernet header; XDP never sees such frames")]
    Runt(usize),
    /// The program did not report a verdict.
    #[error("the program returned no verdict record (frame of {0} bytes)")]
    NoRecord(usize),
}

/// What the program did with one frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Classification {
    /// Verdict.
    pub verdict: Verdict,
    /// Matching rule id.
    pub rule_id: Option<u16>,
    /// Why the frame was malformed, if it was.
    pub malformed: Malformed,
    /// The XDP return code.
    pub xdp_action: u32,
}

/// Which program a [`Classifier`] runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Program {
    /// The steering program, reporting verdicts.
    Steer,
    /// The steering program as it runs in production (no verdict records), for timing.
    SteerUntraced,
    /// The trivial XDP_PASS program (timing baseline).
    Pass,
    /// The minimal parser with one lookup (`netmit_floor`, the benchmark's parse-and-decide
    /// floor), its port table sized for every port and empty: every frame passes.
    Floor,
}

/// A loaded, unattached program with its own rule tables.
pub struct Classifier {
    ebpf: Ebpf,
    name: &'static str,
    traced: bool,
}

impl Classifier {
    /// Loads `program` with `rules` installed (ids 0.. in order).
    pub fn new(program: Program, rules: &[Rule]) -> Result<Self, ClassifyError> {
        if !crate::sys::bpf::has_bpf_privileges() {
            return Err(ClassifyError::NotPermitted);
        }
        let traced = program == Program::Steer;
        let mut ebpf = if program == Program::Floor {
            let mut l = crate::ebpf::loader();
            l.map_max_entries(names::MAP_FLOOR, PORT_NONE as u32);
            l.load(crate::ebpf::EBPF_OBJECT)?
        } else {
            load_object(traced, crate::ebpf::LogLevel::Off)?
        };
        let name = match program {
            Program::Pass => names::PROG_PASS,
            Program::Floor => names::PROG_FLOOR,
            _ => names::PROG_STEER,
        };
        let prog: &mut Xdp = ebpf
            .program_mut(name)
            .expect("the object defines every Program")
            .try_into()
            .map_err(|source| ClassifyError::Program {
                what: "program type",
                source,
            })?;
        prog.load().map_err(|source| ClassifyError::Program {
            what: "loading",
            source,
        })?;
        let mut tables = SteerTables::from_ebpf(&mut ebpf, None)?;
        tables.add_rules(rules)?;
        // Keep the maps alive: the loaded program holds references to them, and dropping
        // our handles is fine, but keeping them makes the lifetime obvious.
        std::mem::forget(tables);
        Ok(Self { ebpf, name, traced })
    }

    fn program(&self) -> &Xdp {
        self.ebpf
            .program(self.name)
            .expect("loaded in new")
            .try_into()
            .expect("an XDP program")
    }

    /// Runs one frame and decodes the verdict record.
    pub fn classify(&self, frame: &[u8]) -> Result<Classification, ClassifyError> {
        const META: usize = std::mem::size_of::<VerdictRecord>();
        if frame.len() < 14 {
            return Err(ClassifyError::Runt(frame.len()));
        }
        let mut out = vec![0u8; frame.len() + META + 256];
        let result = self
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .map_err(|source| ClassifyError::Program {
                what: "BPF_PROG_TEST_RUN",
                source,
            })?;
        if !self.traced || (result.data_size_out as usize) < frame.len() + META {
            return Err(ClassifyError::NoRecord(frame.len()));
        }
        let Some(rec) = crate::sys::pod::read::<VerdictRecord>(&out) else {
            return Err(ClassifyError::NoRecord(frame.len()));
        };
        if rec.magic != VERDICT_MAGIC {
            return Err(ClassifyError::NoRecord(frame.len()));
        }
        Ok(Classification {
            verdict: Verdict::from_u8(rec.verdict).ok_or(ClassifyError::NoRecord(frame.len()))?,
            rule_id: (rec.rule_id != NO_RULE).then_some(rec.rule_id),
            malformed: Malformed::from_u8(rec.malformed).unwrap_or(Malformed::None),
            xdp_action: result.return_value,
        })
    }

    /// Average time of one run over `repeat` runs of `frame`, as the kernel measures it.
    pub fn time(&self, frame: &[u8], repeat: u32) -> Result<Duration, ClassifyError> {
        let mut out = vec![0u8; frame.len() + 512];
        let result = self
            .program()
            .test_run(TestRunOptions {
                data_in: Some(frame),
                data_out: Some(&mut out),
                repeat,
                ..Default::default()
            })
            .map_err(|source| ClassifyError::Program {
                what: "BPF_PROG_TEST_RUN",
                source,
            })?;
        Ok(result.duration)
    }
}
