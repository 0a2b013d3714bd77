//! What the benchmark reads around each measurement window: CPU time of the server's
//! cores (`/proc/stat`), NET_RX softirq runs (`/proc/softirqs`) and the polls of the
//! server interface's NAPI instances (the `napi:napi_poll` tracepoint, through
//! [`NapiPollSource`]). Each is a snapshot; a window is the difference of two.

use std::{collections::BTreeMap, fs};

use serde::Serialize;

use super::ModesError;
use netmit_user::signals::{NapiPollSource, proc::read_softirqs};

/// Jiffies of one CPU from its `/proc/stat` line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    /// Time doing anything (user, nice, system, irq, softirq, steal).
    pub busy: u64,
    /// Time idle (idle and iowait).
    pub idle: u64,
}

/// Parses the `cpuN` lines of `/proc/stat` text into per-CPU times, by CPU number.
///
/// # Errors
///
/// [`ModesError::Proc`] when a `cpuN` line has fewer than the 8 fields every kernel
/// since 2.6.11 writes, or a field is not a number.
pub fn parse_stat(text: &str) -> Result<BTreeMap<usize, CpuTimes>, ModesError> {
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut fields = line.split_whitespace();
        let Some(label) = fields.next() else { continue };
        let Some(cpu) = label.strip_prefix("cpu").and_then(|n| n.parse().ok()) else {
            continue;
        };
        let v: Vec<u64> = fields
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| ModesError::Proc {
                file: "/proc/stat",
                reason: format!("a field of `{label}` is not a number"),
            })?;
        if v.len() < 8 {
            return Err(ModesError::Proc {
                file: "/proc/stat",
                reason: format!("`{label}` has {} fields, expected at least 8", v.len()),
            });
        }
        // user nice system idle iowait irq softirq steal [guest guest_nice]: guest time is
        // already included in user and nice.
        let idle = v[3] + v[4];
        let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
        out.insert(cpu, CpuTimes { busy, idle });
    }
    Ok(out)
}

/// One reading of everything a window needs.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    cpus: BTreeMap<usize, CpuTimes>,
    net_rx: Vec<u64>,
    napi_polls: u64,
    napi_packets: u64,
}

/// What happened between two snapshots.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct WindowCounters {
    /// Utilisation of the server's cores, 0-100 per core, averaged over them.
    pub server_cpu_percent: f64,
    /// NET_RX softirq runs on the server's cores.
    pub net_rx_softirqs: u64,
    /// Polls of the server interface's NAPI instances (softirq, threaded and busy polls).
    pub napi_polls: u64,
    /// Packets those polls processed.
    pub napi_packets: u64,
}

/// Takes snapshots for one server interface and a set of server cores.
pub struct Probe {
    napi: Option<NapiPollSource>,
    cpus: Vec<usize>,
}

impl Probe {
    /// A probe of `cpus`; NAPI polls are counted when the tracepoint program loads
    /// (otherwise they read as 0 and `napi_note` says why).
    pub fn new(cpus: Vec<usize>) -> (Self, Option<String>) {
        match NapiPollSource::open() {
            Ok(src) => (
                Self {
                    napi: Some(src),
                    cpus,
                },
                None,
            ),
            Err(e) => (
                Self { napi: None, cpus },
                Some(format!(
                    "NAPI polls are not counted: {}",
                    netmit_user::error::chain(&e)
                )),
            ),
        }
    }

    /// Whether NAPI polls are counted (the tracepoint program loaded).
    pub fn counts_napi(&self) -> bool {
        self.napi.is_some()
    }

    /// Reads the counters; `napi_ids` are the server interface's NAPI instances.
    ///
    /// # Errors
    ///
    /// [`ModesError::Proc`] / [`ModesError::Signals`] when a counter cannot be read.
    pub fn snapshot(&self, napi_ids: &[u32]) -> Result<Snapshot, ModesError> {
        let stat = fs::read_to_string("/proc/stat").map_err(|e| ModesError::Proc {
            file: "/proc/stat",
            reason: e.to_string(),
        })?;
        let cpus = parse_stat(&stat)?;
        let net_rx = read_softirqs().map_err(ModesError::Signals)?.net_rx;
        let (mut polls, mut packets) = (0, 0);
        if let Some(src) = &self.napi {
            let snap = src.snapshot().map_err(ModesError::Signals)?;
            for id in napi_ids {
                if let Some(c) = snap.get(id) {
                    polls += c.polls;
                    packets += c.packets;
                }
            }
        }
        Ok(Snapshot {
            cpus,
            net_rx,
            napi_polls: polls,
            napi_packets: packets,
        })
    }

    /// The counters of the window from `a` to `b`.
    pub fn window(&self, a: &Snapshot, b: &Snapshot) -> WindowCounters {
        let mut percent = 0.0;
        for cpu in &self.cpus {
            let (Some(x), Some(y)) = (a.cpus.get(cpu), b.cpus.get(cpu)) else {
                continue;
            };
            let busy = y.busy.saturating_sub(x.busy) as f64;
            let idle = y.idle.saturating_sub(x.idle) as f64;
            if busy + idle > 0.0 {
                percent += 100.0 * busy / (busy + idle);
            }
        }
        let net_rx = self
            .cpus
            .iter()
            .map(|&c| {
                let at = |s: &Snapshot| s.net_rx.get(c).copied().unwrap_or(0);
                at(b).saturating_sub(at(a))
            })
            .sum();
        WindowCounters {
            server_cpu_percent: percent / self.cpus.len().max(1) as f64,
            net_rx_softirqs: net_rx,
            napi_polls: b.napi_polls.saturating_sub(a.napi_polls),
            napi_packets: b.napi_packets.saturating_sub(a.napi_packets),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  100 0 50 1000 5 1 2 0 0 0\n\
                        cpu0 60 0 30 400 2 1 1 0 0 0\n\
                        cpu1 40 0 20 600 3 0 1 0 7 0\n\
                        intr 12345\nctxt 999\n";

    #[test]
    fn stat_lines_become_busy_and_idle_per_cpu() {
        let t = parse_stat(STAT).unwrap();
        assert_eq!(t.len(), 2, "the aggregate `cpu` line is not a CPU");
        assert_eq!(
            t[&0],
            CpuTimes {
                busy: 92,
                idle: 402
            }
        );
        // guest time (7) is inside user time already and is not added again.
        assert_eq!(
            t[&1],
            CpuTimes {
                busy: 61,
                idle: 603
            }
        );
    }

    #[test]
    fn malformed_stat_is_an_error() {
        assert!(parse_stat("cpu0 1 2 3\n").is_err());
        assert!(parse_stat("cpu0 1 2 x 4 5 6 7 8\n").is_err());
    }

    #[test]
    fn window_averages_the_server_cores() {
        let probe = Probe {
            napi: None,
            cpus: vec![0, 1],
        };
        let mut a = Snapshot::default();
        let mut b = Snapshot::default();
        a.cpus.insert(0, CpuTimes { busy: 0, idle: 0 });
        b.cpus.insert(0, CpuTimes { busy: 50, idle: 50 });
        a.cpus.insert(1, CpuTimes { busy: 0, idle: 0 });
        b.cpus.insert(1, CpuTimes { busy: 100, idle: 0 });
        a.net_rx = vec![5, 10];
        b.net_rx = vec![9, 30];
        let w = probe.window(&a, &b);
        assert!((w.server_cpu_percent - 75.0).abs() < 1e-9);
        assert_eq!(w.net_rx_softirqs, 24);
    }
}
