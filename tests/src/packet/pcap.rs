//! Dumping a corpus as a libpcap capture (tcpdump, Wireshark, replay).

use std::{fs::File, io::BufWriter, path::Path, time::Duration};

use anyhow::Context as _;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// Write `frames` to a classic (libpcap) capture file with Ethernet link type, one
/// microsecond apart.
pub fn write_pcap(path: impl AsRef<Path>, frames: &[Vec<u8>]) -> anyhow::Result<()> {
    let path = path.as_ref();
    let file = File::create(path).with_context(|| format!("creating {}", path.display()))?;
    let header = PcapHeader {
        snaplen: 262_144,
        datalink: DataLink::ETHERNET,
        ..Default::default()
    };
    let mut writer = PcapWriter::with_header(BufWriter::new(file), header)
        .with_context(|| format!("writing pcap header to {}", path.display()))?;
    for (i, frame) in frames.iter().enumerate() {
        let packet = PcapPacket::new(Duration::from_micros(i as u64), frame.len() as u32, frame);
        writer
            .write_packet(&packet)
            .with_context(|| format!("writing packet {i} to {}", path.display()))?;
    }
    let mut inner = writer.into_writer();
    std::io::Write::flush(&mut inner).with_context(|| format!("flushing {}", path.display()))?;
    Ok(())
}
