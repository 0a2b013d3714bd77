//! Booting a kernel in a virtual machine with virtme-ng, which shows the host's root
//! filesystem to the guest (read-only, with tmpfs over /tmp and /run), so the test
//! binaries cargo just built run there unchanged.
//!
//! - **Tools.** Debian's `qemu-system-x86` and `busybox-static` (apt), and virtme-ng
//!   from PyPI in a venv of its own under `~/.cache/netmit-vm/venv` (pinned, never into
//!   the system Python). Missing tools that cannot be installed are a skip with a reason.
//! - **Acceleration.** KVM when it works, TCG otherwise. `/dev/kvm` can exist and still
//!   hang (nested KVM on the project's machines stops after "Probing EDD"), so a short
//!   probe boots the kernel under KVM without a root filesystem and waits up to 20 s for
//!   its panic; the verdict is kept for the host's boot (`/proc/sys/kernel/random/boot_id`).
//!   `NETMIT_VM_ACCEL=kvm|tcg` overrides it.
//! - **Nothing left behind.** The VM runs in its own process group, which is killed on
//!   timeout, on Ctrl-C or SIGTERM (caught here), and when the run ends; its scratch
//!   directory (guest script, results, virtme-ng's temporary files through `TMPDIR`) is
//!   removed by a guard. virtme-ng mounts nothing on the host.

use std::{
    fs,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::atomic::{AtomicBool, AtomicU32, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context, Result, bail};

use crate::kernels::{GuestKernel, cache_dir};

/// The virtme-ng release these scripts are written against.
const VIRTME_NG: &str = "virtme-ng==1.42";

/// Set by the SIGINT/SIGTERM handler.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Catches Ctrl-C and SIGTERM so that a run can kill its VM and clean up before exiting.
pub fn catch_interrupts() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
        unsafe {
            libc::signal(sig, on_signal as *const () as libc::sighandler_t);
        }
    }
}

/// Whether Ctrl-C or SIGTERM arrived.
pub fn interrupted() -> bool {
    INTERRUPTED.load(Ordering::SeqCst)
}

/// A scratch directory removed (with everything in it) when dropped.
pub struct ScratchDir(pub PathBuf);

impl ScratchDir {
    /// A new, empty directory under the target dir (visible to the guest: the host's root
    /// filesystem is the guest's).
    pub fn new(tag: &str) -> Result<ScratchDir> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let dir = crate::target_dir().join("netmit-vm").join(format!(
            "{tag}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(ScratchDir(dir))
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// virtme-ng's `vng`, ready to run.
pub struct Vng {
    bin: PathBuf,
}

fn have(cmd: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {cmd} >/dev/null")])
        .status()
        .is_ok_and(|s| s.success())
}

/// Makes sure QEMU, busybox and virtme-ng are there; the error says why not (a skip).
pub fn prepare() -> Result<Vng> {
    let debs: Vec<&str> = [
        ("qemu-system-x86_64", "qemu-system-x86"),
        ("/bin/busybox", "busybox-static"),
    ]
    .into_iter()
    .filter(|(f, _)| {
        if f.starts_with('/') {
            !Path::new(f).exists()
        } else {
            !have(f)
        }
    })
    .map(|(_, p)| p)
    .collect();
    if !debs.is_empty() {
        println!("xtask vm: installing {}", debs.join(" "));
        let st = Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&debs)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .context("could not run apt-get")?;
        if !st.success() {
            bail!("apt-get install {} failed ({st})", debs.join(" "));
        }
    }
    let venv = cache_dir().join("venv");
    let bin = venv.join("bin/vng");
    if !bin.is_file() {
        println!("xtask vm: installing {VIRTME_NG} into {}", venv.display());
        let st = Command::new("python3")
            .arg("-m")
            .arg("venv")
            .arg(&venv)
            .status()
            .context("could not run python3 -m venv")?;
        if !st.success() {
            bail!("python3 -m venv failed ({st})");
        }
        let st = Command::new(venv.join("bin/pip"))
            .args(["install", "-q", VIRTME_NG])
            .status()
            .context("could not run pip")?;
        if !st.success() || !bin.is_file() {
            let _ = fs::remove_dir_all(&venv);
            bail!("pip install {VIRTME_NG} failed ({st})");
        }
    }
    Ok(Vng { bin })
}

/// How the guest is accelerated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// Hardware virtualization.
    Kvm,
    /// QEMU's emulation: slower, works everywhere.
    Tcg,
}

/// KVM if it works here, else TCG; prints the reason for TCG once.
pub fn accel(probe_kernel: &Path) -> Accel {
    match std::env::var("NETMIT_VM_ACCEL").as_deref() {
        Ok("kvm") => return Accel::Kvm,
        Ok("tcg") => return Accel::Tcg,
        _ => {}
    }
    if fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_err()
    {
        println!("xtask vm: no usable /dev/kvm: using TCG (emulation)");
        return Accel::Tcg;
    }
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let cache = cache_dir().join("kvm-probe");
    if let Ok(saved) = fs::read_to_string(&cache)
        && let Some((id, verdict)) = saved.split_once(' ')
        && id == boot_id.trim()
    {
        let kvm = verdict.trim() == "kvm";
        if !kvm {
            println!("xtask vm: KVM hung in an earlier probe since boot: using TCG (emulation)");
        }
        return if kvm { Accel::Kvm } else { Accel::Tcg };
    }
    let kvm = kvm_boots(probe_kernel);
    let _ = fs::create_dir_all(cache_dir());
    let _ = fs::write(
        &cache,
        format!("{} {}\n", boot_id.trim(), if kvm { "kvm" } else { "tcg" }),
    );
    if kvm {
        Accel::Kvm
    } else {
        println!("xtask vm: KVM did not boot a kernel within 20 s: using TCG (emulation)");
        Accel::Tcg
    }
}

/// Boots `kernel` under KVM without a root filesystem: a working KVM reaches the kernel's
/// "unable to mount root" panic (and exits, `-no-reboot`) in a second or two.
fn kvm_boots(kernel: &Path) -> bool {
    let Ok(scratch) = ScratchDir::new("kvm-probe") else {
        return false;
    };
    let serial = scratch.0.join("serial");
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args([
        "-accel",
        "kvm",
        "-m",
        "256",
        "-display",
        "none",
        "-no-reboot",
    ])
    .arg("-kernel")
    .arg(kernel)
    .args(["-append", "console=ttyS0 panic=-1"])
    .arg("-serial")
    .arg(format!("file:{}", serial.display()))
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null())
    .process_group(0);
    let Ok(mut child) = cmd.spawn() else {
        return false;
    };
    let start = Instant::now();
    let mut booted = false;
    while start.elapsed() < Duration::from_secs(20) && !interrupted() {
        let text = fs::read_to_string(&serial).unwrap_or_default();
        if text.contains("Kernel panic") || text.contains("VFS:") {
            booted = true;
            break;
        }
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    kill_group(child.id());
    let _ = child.wait();
    booted
}

/// SIGKILL to a process group (the VM's), ignoring one that is already gone.
fn kill_group(pgid: u32) {
    if let Ok(pgid) = libc::pid_t::try_from(pgid) {
        // SAFETY: kill(2) with a negative pid signals that process group; no memory involved.
        unsafe {
            libc::kill(-pgid, libc::SIGTERM);
        }
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: as above.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
    }
}

/// How a VM run ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// vng exited by itself.
    Exited,
    /// It ran past its time limit and was killed.
    TimedOut,
    /// Ctrl-C or SIGTERM; it was killed.
    Interrupted,
}

impl Vng {
    /// Boots `kernel` and runs `sh SCRIPT` in it, with `share` writable from the guest.
    /// The console goes to `share/console.log`; lines starting with `netmit-vm:` are
    /// echoed as they come.
    pub fn run(
        &self,
        kernel: &GuestKernel,
        accel: Accel,
        script: &Path,
        share: &Path,
        limit: Duration,
    ) -> Result<Ended> {
        let console = share.join("console.log");
        let tmp = share.join("tmp");
        fs::create_dir_all(&tmp)?;
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--run")
            .arg(&kernel.image)
            .args(["--cpus", "2", "--memory", "2G", "--name", "netmit-vm"])
            .arg("--rwdir")
            .arg(share)
            .arg("--exec")
            .arg(format!("sh {}", script.display()));
        if accel == Accel::Tcg {
            cmd.arg("--disable-kvm");
        }
        // vng runs virtme-run from PATH: the venv's bin directory comes first.
        let venv_bin = self.bin.parent().unwrap_or(Path::new("/"));
        let path = std::env::var_os("PATH").unwrap_or_default();
        let mut paths = vec![venv_bin.to_path_buf()];
        paths.extend(std::env::split_paths(&path));
        cmd.current_dir(crate::workspace_root())
            .env("PATH", std::env::join_paths(paths)?)
            .env("TMPDIR", &tmp)
            .stdin(Stdio::null())
            .stdout(fs::File::create(&console)?)
            .stderr(fs::File::create(share.join("vng.err"))?)
            .process_group(0);
        let mut child = cmd.spawn().context("could not start vng")?;
        let start = Instant::now();
        let mut echoed = 0;
        let ended = loop {
            echoed = echo_progress(&console, echoed);
            if let Some(_status) = child.try_wait()? {
                break Ended::Exited;
            }
            if interrupted() {
                break Ended::Interrupted;
            }
            if start.elapsed() > limit {
                break Ended::TimedOut;
            }
            std::thread::sleep(Duration::from_millis(200));
        };
        // Whatever ended it, nothing of the VM's group may survive (QEMU, virtme-ng).
        kill_group(child.id());
        let _ = child.wait();
        echo_progress(&console, echoed);
        Ok(ended)
    }
}

/// Prints the `netmit-vm:` lines of `console` past byte `from`; returns the new offset.
fn echo_progress(console: &Path, from: usize) -> usize {
    let Ok(bytes) = fs::read(console) else {
        return from;
    };
    let Some(end) = bytes.iter().rposition(|&b| b == b'\n').map(|i| i + 1) else {
        return from;
    };
    if end <= from {
        return from;
    }
    for line in String::from_utf8_lossy(&bytes[from..end]).lines() {
        if let Some(rest) = line.trim_start().strip_prefix("netmit-vm:") {
            println!("  guest:{rest}");
        }
    }
    end
}
