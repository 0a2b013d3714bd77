//! Builds the eBPF programs of `netmit-ebpf` for the BPF target and leaves the object in
//! `OUT_DIR/netmit`, which `netmit_user::ebpf` embeds. Needs the nightly toolchain with
//! `rust-src` and `bpf-linker`: `cargo xtask setup` installs both.

fn main() -> anyhow::Result<()> {
    let ebpf = aya_build::Package {
        name: "netmit-ebpf",
        root_dir: concat!(env!("CARGO_MANIFEST_DIR"), "/../netmit-ebpf"),
        ..Default::default()
    };
    aya_build::build_ebpf([ebpf], aya_build::Toolchain::default()).map_err(|e| {
        anyhow::anyhow!(
            "building the eBPF programs failed: {e:#}\n\
             hint: run `cargo xtask setup` (installs nightly rust-src and bpf-linker)"
        )
    })
}
