//! `netmit tune profile suspend` where nothing busy-polls: refused with one line naming the
//! measured cost and changing nothing, unless `--force`; accepted without a word when a
//! busy-polling process started by `netmit run` lives in the namespace.

use std::os::unix::fs::MetadataExt;

use netmit_user::{
    preload::{self, ProcessState, SetState},
    sys::napi::{self, NapiParam},
};
use tests::{
    netmit::{Run, netmit},
    support::{RunDir, netmit_bin, require_root},
    testbed::{Side, Testbed},
};

fn tune(tb: &Testbed, run: &RunDir, args: &[&str]) -> Run {
    let out = tb
        .cmd(Side::A, netmit_bin(), args)
        .env("NETMIT_RUN_DIR", &run.0)
        .output()
        .expect("spawn netmit");
    Run {
        ok: out.status.success(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn suspend_timeout(tb: &Testbed, id: u32) -> u64 {
    tb.in_ns(Side::A, move || {
        napi::read(id, NapiParam::IrqSuspendTimeout)
    })
    .expect("napi read")
}

#[test]
fn suspend_profile_is_refused_where_nothing_busy_polls_unless_forced() {
    if !require_root("suspend_profile_is_refused_where_nothing_busy_polls_unless_forced") {
        return;
    }
    let tb = Testbed::new().expect("testbed");
    let attach = netmit(&tb, Side::A, &["attach", tb.if_a(), "--mode", "native"]);
    assert!(attach.ok, "{}", attach.stderr);
    let dev = tb.netdev(Side::A);
    let id = tb.in_ns(Side::A, || napi::list(&dev)).expect("napi list")[0].id;
    let run = RunDir::new("suspend");
    let before = suspend_timeout(&tb, id);

    // Nothing busy-polls: refused, one line with the measured cost, nothing changed.
    let refused = tune(&tb, &run, &["tune", "profile", tb.if_a(), "suspend"]);
    assert!(!refused.ok, "{}", refused.stdout);
    let lines: Vec<&str> = refused.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line: {}", refused.stderr);
    for part in ["BusyPollRxPackets +0", "66k to 39k requests/s", "--force"] {
        assert!(lines[0].contains(part), "{part:?} missing: {}", lines[0]);
    }
    assert_eq!(suspend_timeout(&tb, id), before);
    assert!(!run.0.join("journal.json").exists(), "nothing journaled");

    // --force (or --yes): applied, and the warning still said.
    let forced = tune(
        &tb,
        &run,
        &["tune", "profile", tb.if_a(), "suspend", "--yes"],
    );
    assert!(forced.ok, "{}", forced.stderr);
    assert!(
        forced.stderr.contains("warning (--force)"),
        "{}",
        forced.stderr
    );
    assert_eq!(suspend_timeout(&tb, id), 20_000_000);
    assert!(tune(&tb, &run, &["tune", "restore", tb.if_a()]).ok);
    assert_eq!(suspend_timeout(&tb, id), before);

    // A busy-polling preloaded process of this namespace (its state file, as the library
    // writes it, for a live process): accepted without a warning.
    let sleeper = tb.spawn(Side::A, "sleep", ["60"]).expect("sleep");
    let pid = sleeper.id();
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let state = ProcessState {
        version: 1,
        pid,
        start_time: preload::stat_start_time(&stat).unwrap(),
        comm: "sleep".into(),
        mechanism: "epoll-params".into(),
        busy_poll_usecs: 64,
        busy_poll_budget: 64,
        prefer_busy_poll: 1,
        epoll_sets: 1,
        sockets: 1,
        mixed_sets: 0,
        napi_ids: vec![id],
        sets: vec![SetState {
            epfd: 3,
            sockets: 1,
            napi_ids: vec![id],
        }],
    };
    assert_eq!(
        std::fs::metadata(format!("/proc/{pid}/ns/net"))
            .unwrap()
            .ino(),
        tb.in_ns(Side::A, || std::fs::metadata("/proc/thread-self/ns/net"))
            .unwrap()
            .ino(),
        "the sleeper is in the testbed's namespace"
    );
    let dir = preload::state_dir(&run.0);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join(pid.to_string()),
        serde_json::to_string(&state).unwrap(),
    )
    .unwrap();
    let accepted = tune(&tb, &run, &["tune", "profile", tb.if_a(), "suspend"]);
    assert!(accepted.ok, "{}", accepted.stderr);
    assert!(
        !accepted.stderr.contains("busy-polls"),
        "{}",
        accepted.stderr
    );
    assert_eq!(suspend_timeout(&tb, id), 20_000_000);
    assert!(tune(&tb, &run, &["tune", "restore", tb.if_a()]).ok);
    assert_eq!(suspend_timeout(&tb, id), before);
    drop(sleeper);
}
