//! Cheap readers of the kernel's interrupt and softirq counters in /proc.
//!
//! Both files are machine-wide (not per network namespace) and cost one read of a few
//! kilobytes, so the daemon can take them every tick. NET_RX and NET_TX softirq counts
//! tell how often the network softirqs ran on each CPU (a run can poll many NAPIs, or
//! none); the IRQ totals tell how often each interrupt line fired. `/proc/interrupts` is
//! parsed by [`crate::sys::napi::parse_interrupts`], the parser the tuning code uses.

use std::{collections::BTreeMap, path::Path};

use super::SignalsError;
use crate::sys::napi;

/// The softirq counters file.
pub const PROC_SOFTIRQS: &str = "/proc/softirqs";
/// The interrupt counters file.
pub const PROC_INTERRUPTS: &str = "/proc/interrupts";

/// The network softirq counts of `/proc/softirqs`, per CPU (indexed by CPU number).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Softirqs {
    /// NET_RX runs (receive processing: NAPI polls happen here) per CPU.
    pub net_rx: Vec<u64>,
    /// NET_TX runs (deferred transmit completion) per CPU.
    pub net_tx: Vec<u64>,
}

impl Softirqs {
    /// NET_RX runs on all CPUs.
    pub fn net_rx_total(&self) -> u64 {
        self.net_rx.iter().sum()
    }

    /// NET_TX runs on all CPUs.
    pub fn net_tx_total(&self) -> u64 {
        self.net_tx.iter().sum()
    }
}

/// Parses the text of `/proc/softirqs`: a header of `CPUn` columns, then one row per
/// softirq (`NET_RX:  12  34`). Rows other than NET_RX and NET_TX are ignored.
///
/// # Errors
///
/// [`SignalsError::ProcParse`] when the header is not a list of CPU columns, a NET row
/// has a field that is not a number or the wrong number of fields, or a NET row is
/// missing.
pub fn parse_softirqs(text: &str) -> Result<Softirqs, SignalsError> {
    let perr = |line, reason| SignalsError::ProcParse {
        path: PROC_SOFTIRQS.into(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_no, header) = lines.next().ok_or_else(|| perr(1, "empty file"))?;
    let cpus = crate::sys::napi::cpu_columns(header)
        .ok_or_else(|| perr(header_no + 1, "header is not a list of CPUn columns"))?;
    if cpus.is_empty() {
        return Err(perr(header_no + 1, "header names no CPU"));
    }
    let width = cpus.iter().max().map_or(0, |m| m + 1);
    let (mut rx, mut tx) = (None, None);
    for (no, line) in lines {
        let Some((label, rest)) = line.split_once(':') else {
            continue;
        };
        let slot = match label.trim() {
            "NET_RX" => &mut rx,
            "NET_TX" => &mut tx,
            _ => continue,
        };
        let counts: Vec<u64> = rest
            .split_whitespace()
            .map(|t| t.parse().ok())
            .collect::<Option<_>>()
            .ok_or_else(|| perr(no + 1, "a count is not a number"))?;
        if counts.len() != cpus.len() {
            return Err(perr(
                no + 1,
                "number of counts differs from the CPU columns",
            ));
        }
        let mut per_cpu = vec![0u64; width];
        for (&cpu, n) in cpus.iter().zip(counts) {
            per_cpu[cpu] = n;
        }
        *slot = Some(per_cpu);
    }
    let missing = text.lines().count().max(1);
    Ok(Softirqs {
        net_rx: rx.ok_or_else(|| perr(missing, "no NET_RX row"))?,
        net_tx: tx.ok_or_else(|| perr(missing, "no NET_TX row"))?,
    })
}

/// Reads and parses [`PROC_SOFTIRQS`].
pub fn read_softirqs() -> Result<Softirqs, SignalsError> {
    parse_softirqs(&read(PROC_SOFTIRQS)?)
}

/// The total count (all CPUs) of every numbered IRQ line of [`PROC_INTERRUPTS`], by IRQ
/// number. Named rows (NMI, LOC, ...) are left out, as the parser does.
pub fn read_irq_totals() -> Result<BTreeMap<u32, u64>, SignalsError> {
    irq_totals(&read(PROC_INTERRUPTS)?)
}

/// [`read_irq_totals`] on the text of `/proc/interrupts`.
pub fn irq_totals(text: &str) -> Result<BTreeMap<u32, u64>, SignalsError> {
    Ok(napi::parse_interrupts(text)
        .map_err(SignalsError::Interrupts)?
        .into_iter()
        .map(|l| (l.irq, l.total()))
        .collect())
}

fn read(path: &str) -> Result<String, SignalsError> {
    crate::sys::fs::read_proc(Path::new(path)).map_err(|source| SignalsError::Proc {
        path: path.into(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on the 2-CPU development machine (6.18).
    const SOFTIRQS: &str = "                    CPU0       CPU1       
          HI:          0          0
       TIMER:     135168     106738
      NET_TX:       7802       9818
      NET_RX:   20626873    1551594
       BLOCK:          0     238127
    IRQ_POLL:          0          0
     TASKLET:        532         14
       SCHED:     146230     147637
     HRTIMER:          0          5
         RCU:     669566     629822
";

    #[test]
    fn softirqs_captured_text() {
        let s = parse_softirqs(SOFTIRQS).unwrap();
        assert_eq!(s.net_rx, [20626873, 1551594]);
        assert_eq!(s.net_tx, [7802, 9818]);
        assert_eq!(s.net_rx_total(), 22178467);
        assert_eq!(s.net_tx_total(), 17620);
    }

    #[test]
    fn softirqs_sparse_cpu_columns() {
        // Columns follow the header's CPU numbers, not their order.
        let text = "   CPU0 CPU2 CPU3\nNET_TX: 1 2 3\nNET_RX: 4 5 6\n";
        let s = parse_softirqs(text).unwrap();
        assert_eq!(s.net_tx, [1, 0, 2, 3]);
        assert_eq!(s.net_rx, [4, 0, 5, 6]);
    }

    #[test]
    fn softirqs_malformed() {
        let line = |text: &str| match parse_softirqs(text) {
            Err(SignalsError::ProcParse { line, reason, .. }) => (line, reason),
            other => panic!("{other:?}"),
        };
        assert_eq!(line("").1, "empty file");
        assert_eq!(
            line("CPU0 X1\nNET_RX: 1 2\n"),
            (1, "header is not a list of CPUn columns")
        );
        assert_eq!(
            line("  CPU0 CPU1\nNET_TX: 1 2\nNET_RX: 1 x\n"),
            (3, "a count is not a number")
        );
        assert_eq!(
            line("  CPU0 CPU1\nNET_TX: 1 2\nNET_RX: 1\n"),
            (3, "number of counts differs from the CPU columns")
        );
        assert_eq!(line("  CPU0\nNET_TX: 1\n").1, "no NET_RX row");
        assert_eq!(line("  CPU0\nNET_RX: 1\n").1, "no NET_TX row");
    }

    #[test]
    fn irq_totals_reuse_the_interrupts_parser() {
        let text = "           CPU0       CPU1
  0:         44          0   IO-APIC   2-edge      timer
 24:        100        250   PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
NMI:          0          0   Non-maskable interrupts
ERR:          0
";
        let t = irq_totals(text).unwrap();
        assert_eq!(t, BTreeMap::from([(0, 44), (24, 350)]));
        assert!(matches!(irq_totals(""), Err(SignalsError::Interrupts(_))));
    }

    #[test]
    fn live_files_parse() {
        let s = read_softirqs().unwrap();
        assert!(!s.net_rx.is_empty() && s.net_rx.len() == s.net_tx.len());
        read_irq_totals().unwrap();
    }
}
