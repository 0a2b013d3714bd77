//! IRQ discovery: the rows of `/proc/interrupts`, the lines of one interface, and whether
//! irqbalance is running.

use std::{collections::BTreeSet, fs, path::Path};

use super::{
    super::netdev::{Netdev, Presence},
    NapiError,
    sysfs::sysfs_dir,
};

/// One numbered row of `/proc/interrupts`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct IrqLine {
    /// IRQ number.
    pub irq: u32,
    /// Everything after the counts (chip, hardware IRQ and trigger, action names), with
    /// runs of blanks collapsed, e.g. `PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0`.
    pub name: String,
    /// Count per CPU, indexed by CPU number; CPUs missing from the header (offline) and
    /// columns missing from a short row count 0.
    pub per_cpu: Vec<u64>,
}

impl IrqLine {
    /// Sum over all CPUs.
    pub fn total(&self) -> u64 {
        self.per_cpu.iter().sum()
    }
}

const PROC_INTERRUPTS: &str = "/proc/interrupts";

/// The CPU numbers of a `/proc/interrupts` or `/proc/softirqs` header (`CPU0 CPU1 ...`;
/// offline CPUs are missing); `None` if a column is not `CPUn`.
pub fn cpu_columns(header: &str) -> Option<Vec<usize>> {
    header
        .split_whitespace()
        .map(|t| t.strip_prefix("CPU").and_then(|n| n.parse().ok()))
        .collect()
}

/// Parses the text of `/proc/interrupts`: the header names the CPU columns (offline CPUs
/// are missing from it), numbered rows become [`IrqLine`]s, named rows (NMI, LOC, ERR, …)
/// are skipped. Rows may have fewer count columns than the header (ERR, MIS).
pub fn parse_interrupts(text: &str) -> Result<Vec<IrqLine>, NapiError> {
    let perr = |line, reason| NapiError::ProcParse {
        path: PROC_INTERRUPTS.into(),
        line,
        reason,
    };
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let (header_no, header) = lines.next().ok_or_else(|| perr(1, "empty file"))?;
    let cpus = cpu_columns(header)
        .ok_or_else(|| perr(header_no + 1, "header is not a list of CPUn columns"))?;
    if cpus.is_empty() {
        return Err(perr(header_no + 1, "header names no CPU"));
    }
    let width = cpus.iter().max().map_or(0, |m| m + 1);
    let mut out = Vec::new();
    for (_, line) in lines {
        let Some((label, rest)) = line.split_once(':') else {
            continue;
        };
        let Ok(irq) = label.trim().parse::<u32>() else {
            continue;
        };
        let mut per_cpu = vec![0u64; width];
        let mut tokens = rest.split_whitespace().peekable();
        for &cpu in &cpus {
            match tokens.peek().and_then(|t| t.parse::<u64>().ok()) {
                Some(n) => {
                    per_cpu[cpu] = n;
                    tokens.next();
                }
                None => break,
            }
        }
        let name = tokens.collect::<Vec<_>>().join(" ");
        out.push(IrqLine { irq, name, per_cpu });
    }
    Ok(out)
}

fn read_interrupts() -> Result<Vec<IrqLine>, NapiError> {
    let text = crate::sys::fs::read_proc(Path::new(PROC_INTERRUPTS)).map_err(|source| {
        NapiError::Proc {
            path: PROC_INTERRUPTS.into(),
            source,
        }
    })?;
    parse_interrupts(&text)
}

/// Per-CPU counts of one IRQ line (indexed by CPU number).
pub fn irq_counts(irq: u32) -> Result<Vec<u64>, NapiError> {
    read_interrupts()?
        .into_iter()
        .find(|l| l.irq == irq)
        .map(|l| l.per_cpu)
        .ok_or(NapiError::NoSuchIrq { irq })
}

/// Whether an IRQ description names the interface: an action token equal to it or
/// starting with it followed by a separator (`eth0`, `eth0-rx-0`, but not `eth01`).
fn mentions(name: &str, iface: &str) -> bool {
    name.split(|c: char| c.is_whitespace() || c == ',')
        .any(|tok| {
            tok.strip_prefix(iface).is_some_and(|rest| {
                rest.is_empty() || !rest.starts_with(|c: char| c.is_ascii_alphanumeric())
            })
        })
}

/// MSI/MSI-X vectors of the interface's device (`device/msi_irqs`, or the parent's for
/// virtio, whose net device hangs below the PCI function). Best effort: empty when sysfs
/// does not show this namespace's interface.
fn msi_irqs(dev: &Netdev) -> BTreeSet<u32> {
    let Ok(dir) = sysfs_dir(dev) else {
        return BTreeSet::new();
    };
    let mut out = BTreeSet::new();
    for sub in ["device/msi_irqs", "device/../msi_irqs"] {
        if let Ok(entries) = fs::read_dir(dir.join(sub)) {
            out.extend(
                entries
                    .flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok()),
            );
        }
    }
    out
}

/// The IRQ lines of an interface: rows of /proc/interrupts whose action names mention it
/// (most NIC drivers name vectors `IFACE-…`) plus the device's MSI vectors from sysfs
/// (virtio names them `virtioN-input.0`). Empty for purely virtual devices such as veth.
pub fn interrupts_for(dev: &Netdev) -> Result<Vec<IrqLine>, NapiError> {
    let msi = msi_irqs(dev);
    let name = match dev.recheck()? {
        Presence::Renamed(name) => name,
        _ => dev.name.clone(),
    };
    Ok(read_interrupts()?
        .into_iter()
        .filter(|l| msi.contains(&l.irq) || mentions(&l.name, name.as_str()))
        .collect())
}

/// Whether an `irqbalance` process is running (it would move IRQ affinities that a
/// tuning relies on). Scans `/proc/*/comm`.
pub fn irqbalance_running() -> bool {
    let Ok(entries) = fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|e| {
        let name = e.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.bytes().all(|b| b.is_ascii_digit()))
        else {
            return false;
        };
        fs::read_to_string(Path::new("/proc").join(pid).join("comm"))
            .is_ok_and(|c| c.trim_end() == "irqbalance")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured on the development VM (2 CPUs, virtio NICs), trimmed.
    const SAMPLE: &str = "           CPU0       CPU1       
 24:          1          0  IO-APIC   5-edge      ACPI:Ged
 26:          0         14  IO-APIC   4-edge      ttyS0
 37:          0          0 PCI-MSIX-0000:00:03.0   0-edge      virtio2-config
 38:          0       6273 PCI-MSIX-0000:00:03.0   1-edge      virtio2-input.0
 39:       4312          0 PCI-MSIX-0000:00:03.0   2-edge      virtio2-output.0
NMI:          0          0   Non-maskable interrupts
LOC:     150959     155676   Local timer interrupts
RES:      98652      70585   Rescheduling interrupts
ERR:          0
MIS:          0
PIN:          0          0   Posted-interrupt notification event
";

    #[test]
    fn interrupts_sample() {
        let lines = parse_interrupts(SAMPLE).unwrap();
        assert_eq!(
            lines.iter().map(|l| l.irq).collect::<Vec<_>>(),
            [24, 26, 37, 38, 39]
        );
        let input = &lines[3];
        assert_eq!(input.per_cpu, [0, 6273]);
        assert_eq!(input.name, "PCI-MSIX-0000:00:03.0 1-edge virtio2-input.0");
        assert_eq!(input.total(), 6273);
        assert_eq!(lines[0].name, "IO-APIC 5-edge ACPI:Ged");
    }

    #[test]
    fn interrupts_offline_cpus_and_short_rows() {
        // CPU1 offline: columns are CPU0, CPU2, CPU3.
        let text = "  CPU0 CPU2 CPU3\n\
                    \x20 0:  44  0  7   IO-APIC   2-edge      timer\n\
                    \x20 9:   5          IO-APIC   9-fasteoi   acpi\n\
                    \x2012:\n\
                    130:  1 2 3  IR-PCI-MSI 524288-edge  eth1-TxRx-0, eth1\n\
                    ERR: 0\n";
        let lines = parse_interrupts(text).unwrap();
        assert_eq!(lines.len(), 4);
        assert_eq!(lines[0].per_cpu, [44, 0, 0, 7]);
        // A short row: missing columns count 0 and the name still parses.
        assert_eq!(lines[1].per_cpu, [5, 0, 0, 0]);
        assert_eq!(lines[1].name, "IO-APIC 9-fasteoi acpi");
        assert_eq!(lines[2].per_cpu, [0, 0, 0, 0]);
        assert_eq!(lines[2].name, "");
        assert_eq!(lines[3].per_cpu, [1, 0, 2, 3]);
        assert!(mentions(&lines[3].name, "eth1"));
        assert!(!mentions(&lines[3].name, "eth"));
        assert!(!mentions("IR-PCI-MSI 1-edge eth10-rx-0", "eth1"));
        assert!(mentions("IR-PCI-MSI 1-edge eth1:lsc", "eth1"));
    }

    #[test]
    fn interrupts_bad_header() {
        assert!(matches!(
            parse_interrupts(""),
            Err(NapiError::ProcParse { line: 1, .. })
        ));
        assert!(matches!(
            parse_interrupts("  0: 1 2 timer\n"),
            Err(NapiError::ProcParse {
                reason: "header is not a list of CPUn columns",
                ..
            })
        ));
    }

    #[test]
    fn live_proc_interrupts_parses() {
        let lines = read_interrupts().unwrap();
        assert!(!lines.is_empty());
        // Counts move between reads; the shape does not.
        assert_eq!(
            irq_counts(lines[0].irq).unwrap().len(),
            lines[0].per_cpu.len()
        );
        assert!(matches!(
            irq_counts(u32::MAX),
            Err(NapiError::NoSuchIrq { irq: u32::MAX })
        ));
        let _ = irqbalance_running();
    }
}
