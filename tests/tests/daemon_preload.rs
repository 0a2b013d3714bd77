//! The daemon sees an unmodified server started by `netmit run` in its namespace: its
//! `/status` lists it under `preload`, `/metrics` counts it, and both drop it within a
//! tick of its exit.

use std::{
    process::Stdio,
    thread,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{
    netmit::http_get,
    support::{RunDir, netmit_bin, require_root, require_tool},
    testbed::{NsChild, Side, Testbed},
};

const PORT: u16 = 9465;

fn spawn<'tb>(tb: &'tb Testbed, run: &RunDir, args: &[&str]) -> NsChild<'tb> {
    let mut cmd = tb.cmd(Side::A, netmit_bin(), args);
    cmd.env("NETMIT_RUN_DIR", &run.0)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    tb.spawn_cmd(cmd).expect("spawn netmit")
}

fn get(tb: &Testbed, path: &str) -> Option<String> {
    http_get(tb, Side::A, PORT, path)
        .filter(|(code, _)| *code == 200)
        .map(|(_, body)| body)
}

fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(50));
    }
}

fn preload(tb: &Testbed) -> Option<Value> {
    let s: Value = serde_json::from_str(&get(tb, "/status")?).ok()?;
    Some(s["preload"].clone())
}

#[test]
fn daemon_lists_and_counts_a_server_started_by_netmit_run() {
    if !require_root("daemon_lists_and_counts_a_server_started_by_netmit_run") {
        return;
    }
    require_tool("memcached");
    let tb = Testbed::new().expect("testbed");
    let run = RunDir::new("dpre");
    let _ = std::fs::remove_dir_all(&run.0);
    std::fs::create_dir_all(&run.0).unwrap();
    let config = run.0.join("netmit.toml");
    std::fs::write(
        &config,
        format!(
            "interval = \"100ms\"\nmetrics_address = \"127.0.0.1:{PORT}\"\n\n\
             [[interface]]\nname = \"{}\"\nattach = \"none\"\n",
            tb.if_a()
        ),
    )
    .unwrap();
    let mut daemon = spawn(&tb, &run, &["daemon", "--config", config.to_str().unwrap()]);
    wait_for("the daemon", || get(&tb, "/healthz"));
    assert_eq!(preload(&tb).unwrap()["processes"], 0);

    let mut server = spawn(
        &tb,
        &run,
        &[
            "run",
            "--",
            "memcached",
            "-U",
            "11611",
            "-p",
            "0",
            "-l",
            "0.0.0.0",
            "-u",
            "root",
            "-t",
            "1",
        ],
    );
    let p = wait_for("memcached in /status", || {
        preload(&tb).filter(|p| p["processes"] == 1 && p["epoll_sets"].as_u64() > Some(0))
    });
    assert_eq!(p["busy_polling"], 1, "{p}");
    assert_eq!(p["list"][0]["comm"], "memcached", "{p}");
    assert_eq!(p["list"][0]["mechanism"], "epoll-params", "{p}");
    let metrics = get(&tb, "/metrics").expect("metrics");
    for line in [
        "netmit_preload_processes 1",
        "netmit_preload_busy_polling_processes 1",
        "netmit_preload_mixed_napi_sets 0",
    ] {
        assert!(
            metrics.lines().any(|l| l.starts_with(line)),
            "{line}:\n{metrics}"
        );
    }

    // SIGTERM to netmit run: passed on to memcached, which exits; the daemon drops it.
    // SAFETY: signals our own unreaped child.
    assert_eq!(unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) }, 0);
    server.wait().expect("netmit run exits");
    wait_for("memcached gone from /status", || {
        preload(&tb).filter(|p| p["processes"] == 0)
    });
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(daemon.pid() as i32, libc::SIGTERM) }, 0);
    assert!(daemon.wait().expect("daemon exits").success());
}
