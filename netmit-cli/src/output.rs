//! Small helpers shared by the subcommands' output.

use netmit_common::AttachMode;

pub fn mode_name(mode: u32) -> &'static str {
    match mode {
        m if m == AttachMode::Native as u32 => "native",
        m if m == AttachMode::Generic as u32 => "generic",
        _ => "unknown",
    }
}

pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(v)?);
    Ok(())
}
