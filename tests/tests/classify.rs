//! `netmit classify` on captures written by the test: its per-frame verdicts and rules
//! must equal the reference classifier's, for classic pcap and for pcapng.

use std::{borrow::Cow, fs::File, io::BufWriter, path::Path, time::Duration};

use pcap_file::{
    DataLink,
    pcapng::{
        PcapNgWriter,
        blocks::{
            enhanced_packet::EnhancedPacketBlock, interface_description::InterfaceDescriptionBlock,
        },
    },
};
use rand::{SeedableRng, rngs::StdRng};
use tests::{
    packet, reference,
    support::{netmit_bin, require_root},
};

fn write_pcapng(path: &Path, frames: &[Vec<u8>]) {
    let mut w = PcapNgWriter::new(BufWriter::new(File::create(path).unwrap())).unwrap();
    w.write_pcapng_block(InterfaceDescriptionBlock {
        linktype: DataLink::ETHERNET,
        snaplen: 0,
        options: vec![],
    })
    .unwrap();
    for (i, f) in frames.iter().enumerate() {
        w.write_pcapng_block(EnhancedPacketBlock {
            interface_id: 0,
            timestamp: Duration::from_micros(i as u64),
            original_len: f.len() as u32,
            data: Cow::Borrowed(f),
            options: vec![],
        })
        .unwrap();
    }
}

fn check(path: &Path, frames: &[Vec<u8>], rules: &[reference::RefRule]) {
    let mut cmd = std::process::Command::new(netmit_bin());
    cmd.args(["classify", "--json", "--pcap"]).arg(path);
    for r in rules {
        cmd.args(["--steer", &r.to_rule_string()]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let packets = v["packets"].as_array().unwrap();
    let runts = v["skipped_runts"].as_array().unwrap();
    assert_eq!(packets.len() + runts.len(), frames.len());
    for r in runts {
        let i = r["index"].as_u64().unwrap() as usize - 1;
        assert!(frames[i].len() < 14);
        assert_eq!(
            reference::classify(&frames[i], rules, false).verdict.name(),
            "malformed"
        );
    }
    let mut mismatches = 0;
    for p in packets {
        let i = p["index"].as_u64().unwrap() as usize - 1;
        let want = reference::classify(&frames[i], rules, false);
        let rule = p["rule"].as_u64().map(|r| r as usize);
        if p["verdict"] != want.verdict.name() || rule != want.rule {
            mismatches += 1;
            eprintln!(
                "frame {i}: classify {} {:?}, reference {} {:?}",
                p["verdict"],
                rule,
                want.verdict.name(),
                want.rule
            );
        }
    }
    assert_eq!(
        mismatches,
        0,
        "{} ({} frames)",
        path.display(),
        frames.len()
    );
    let summary: u64 = v["summary"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(summary as usize, packets.len());
}

#[test]
fn classify_matches_reference_on_pcap_and_pcapng() {
    if !require_root("classify_matches_reference_on_pcap_and_pcapng") {
        return;
    }
    let mut rng = StdRng::seed_from_u64(7);
    let mut frames = packet::edge_case_packets();
    frames.extend(packet::random_packets(&mut rng, 3000));
    let rules = reference::random_rules(&mut rng, 16);
    let dir = std::env::temp_dir().join(format!("netmit-classify-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pcap = dir.join("frames.pcap");
    let pcapng = dir.join("frames.pcapng");
    packet::write_pcap(&pcap, &frames).unwrap();
    write_pcapng(&pcapng, &frames);
    check(&pcap, &frames, &rules);
    check(&pcapng, &frames, &rules);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn classify_rejects_non_ethernet_and_garbage() {
    if !require_root("classify_rejects_non_ethernet_and_garbage") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("netmit-classify-bad-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let garbage = dir.join("garbage.pcap");
    std::fs::write(&garbage, b"this is not a capture file").unwrap();
    let out = std::process::Command::new(netmit_bin())
        .args(["classify", "--pcap"])
        .arg(&garbage)
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a valid pcap"));
    let missing = std::process::Command::new(netmit_bin())
        .args(["classify", "--pcap", "/nonexistent/x.pcap"])
        .output()
        .unwrap();
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("cannot read the capture /nonexistent/x.pcap")
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
