//! Running the `netmit` binary inside a testbed namespace and reading the kernel's own
//! view of an interface (`ip -j -d link`, bpftool, bpffs), so that tests never judge
//! netmit by netmit's own output alone.

use std::process::Output;

use serde_json::Value;

use crate::{
    support::netmit_bin,
    testbed::{Side, Testbed},
};

/// Result of one `netmit` run.
#[derive(Debug)]
pub struct Run {
    /// Exit status was success.
    pub ok: bool,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Run {
    /// Parses stdout as JSON (panics with the output when it is not).
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}\nstderr: {}", self.stdout, self.stderr))
    }
}

fn to_run(out: Output) -> Run {
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs `netmit ARGS` in the network namespace of `side`.
pub fn netmit(tb: &Testbed, side: Side, args: &[&str]) -> Run {
    let out = tb
        .cmd(side, netmit_bin(), args)
        .output()
        .expect("spawn netmit");
    to_run(out)
}

/// Runs `netmit ARGS` in `side`'s namespace as user `nobody`, without capabilities.
pub fn netmit_unprivileged(tb: &Testbed, side: Side, args: &[&str]) -> Run {
    let bin = netmit_bin();
    let mut full = vec!["--reuid=65534", "--regid=65534", "--clear-groups", "--"];
    full.push(bin.to_str().expect("utf-8 path"));
    full.extend_from_slice(args);
    to_run(
        tb.cmd(side, "setpriv", &full)
            .output()
            .expect("spawn setpriv"),
    )
}

/// The kernel's XDP state of `side`'s interface from `ip -j -d link`: (mode, prog id).
/// Mode is `IFLA_XDP_ATTACHED`: 1 native, 2 generic.
pub fn kernel_xdp(tb: &Testbed, side: Side) -> Option<(u64, u64)> {
    let out = tb
        .run(
            side,
            "ip",
            ["-j", "-d", "link", "show", "dev", tb.ifname(side)],
        )
        .expect("ip link show");
    let v: Value = serde_json::from_slice(&out.stdout).expect("ip -j output");
    let xdp = v.get(0)?.get("xdp")?;
    Some((xdp["mode"].as_u64()?, xdp["prog"]["id"].as_u64()?))
}

/// Whether the kernel still has a BPF program with this id (`bpftool prog show id`).
pub fn prog_exists(id: u64) -> bool {
    std::process::Command::new("bpftool")
        .args(["prog", "show", "id", &id.to_string()])
        .output()
        .expect("bpftool (cargo xtask setup installs it)")
        .status
        .success()
}

/// Waits up to two seconds for a program to be freed (freeing follows an RCU grace
/// period after the last reference goes).
pub fn wait_prog_gone(id: u64) -> bool {
    for _ in 0..40 {
        if !prog_exists(id) {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    false
}

/// netmit's pin directory for `side`'s interface (keyed by namespace and ifindex).
pub fn pin_dir(tb: &Testbed, side: Side) -> std::path::PathBuf {
    netmit_user::ebpf::PinRoot::default()
        .layout(&tb.netdev(side))
        .dir()
        .to_path_buf()
}

/// A plain HTTP/1.0 GET to `127.0.0.1:port` from inside `side`'s namespace (for the
/// daemon's /status, /metrics and /healthz): `(status code, body)`, or `None` when the
/// daemon does not answer.
pub fn http_get(tb: &Testbed, side: Side, port: u16, path: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    let path = path.to_string();
    tb.in_ns(side, move || {
        let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
        let mut s =
            std::net::TcpStream::connect_timeout(&addr, std::time::Duration::from_millis(500))
                .ok()?;
        s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
            .ok()?;
        write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let (head, body) = text.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_string()))
    })
}
