//! `netmit check`: what works here, what does not, and the fallback.

use anyhow::{Context, bail};
use netmit_user::check::{self, Probe};
use serde_json::json;

use crate::output;

pub fn run(iface: Option<&str>, as_json: bool) -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("netmit check loads BPF programs and reads netlink state: run it with sudo");
    }
    let system = check::system();
    let device = match iface {
        Some(name) => Some(check::iface(name).with_context(|| format!("probing {name}"))?),
        None => None,
    };
    if as_json {
        return output::print_json(&json!({"system": system, "iface": iface, "device": device}));
    }
    print("kernel", &system);
    if let (Some(name), Some(d)) = (iface, &device) {
        print(name, d);
    }
    Ok(())
}

fn print(title: &str, probes: &[Probe]) {
    println!("{title}:");
    for p in probes {
        let mark = if p.works { "yes" } else { "no " };
        println!("  {mark}  {:<46} {}", p.feature, p.detail);
        if !p.works {
            println!("       {:<46} fallback: {}", "", p.fallback);
        }
    }
}
