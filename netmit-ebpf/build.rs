//! Code generation options for the BPF object that rustc's flags cannot carry (netmit-user's
//! build script sets the rustflags itself): they go to `bpf-linker`, which generates the code.
//!
//! `allows-misaligned-mem-access` (LLVM 22): LLVM may load a 2-, 4- or 8-byte field of
//! the packet with one instruction where it is not aligned, instead of byte by byte and
//! shifting the bytes together (an IPv6 address took 16 loads and 30 shifts and ORs;
//! now two loads). The kernel accepts misaligned packet access on architectures with
//! efficient unaligned access (x86-64, arm64, ppc64, s390x); on the others the verifier
//! enforces alignment and rejects the program (see `docs/kernel-compat.md`).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() == Ok("bpf") {
        println!("cargo:rustc-link-arg=--cpu-features=+allows-misaligned-mem-access");
    }
}
