//! `netmit check`: what works here, what does not, and the fallback.

use anyhow::bail;
use netmit_user::{
    check::{self, Probe},
    sys::{IfName, Netdev, caps},
};
use serde_json::json;

use crate::output;

pub fn run(iface: Option<&IfName>, as_json: bool) -> anyhow::Result<()> {
    if !caps::is_root() {
        bail!("netmit check loads BPF programs and reads netlink state: run it with sudo");
    }
    let dev = iface.map(Netdev::resolve).transpose()?;
    let system = check::system(&netmit_user::host::System::new());
    let device = dev.as_ref().map(check::iface);
    if as_json {
        return output::print_json(&json!({"system": system, "iface": iface, "device": device}));
    }
    print("kernel", &system);
    if let (Some(name), Some(d)) = (iface, &device) {
        print(name.as_str(), d);
    }
    Ok(())
}

fn print(title: &str, probes: &[Probe]) {
    println!("{title}:");
    for p in probes {
        let mark = match (p.known, p.works) {
            (false, _) => "?  ",
            (true, true) => "yes",
            (true, false) => "no ",
        };
        println!("  {mark}  {:<46} {}", p.feature, p.detail);
        if !p.works {
            println!("       {:<46} fallback: {}", "", p.fallback);
        }
    }
}
