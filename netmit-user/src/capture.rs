//! Reading frames from pcap and pcapng files (the `pcap-file` crate: pure Rust, reads
//! both formats). Only Ethernet captures are accepted, since that is what XDP sees.

use std::{
    fs::File,
    io::{BufReader, Read},
    path::Path,
};

use pcap_file::{
    DataLink,
    pcap::PcapReader,
    pcapng::{Block, PcapNgReader},
};

/// Errors reading a capture.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The file cannot be opened or read.
    #[error("cannot read {path}")]
    Io {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Not a valid capture.
    #[error("{path} is not a valid pcap or pcapng file: {reason}")]
    Format {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// Not Ethernet.
    #[error("{path} has link type {link:?}; only Ethernet captures can be run through XDP")]
    LinkType {
        /// The file.
        path: String,
        /// The link type found.
        link: DataLink,
    },
}

/// Reads every frame of a pcap or pcapng file.
pub fn read_frames(path: &Path) -> Result<Vec<Vec<u8>>, CaptureError> {
    let p = path.display().to_string();
    let io = |source| CaptureError::Io {
        path: p.clone(),
        source,
    };
    let fmt = |e: pcap_file::PcapError| CaptureError::Format {
        path: p.clone(),
        reason: e.to_string(),
    };
    let mut file = BufReader::new(File::open(path).map_err(io)?);
    let mut magic = [0u8; 4];
    file.read_exact(&mut magic).map_err(io)?;
    let file = BufReader::new(File::open(path).map_err(io)?);
    let mut frames = Vec::new();
    if magic == [0x0a, 0x0d, 0x0d, 0x0a] {
        let mut reader = PcapNgReader::new(file).map_err(fmt)?;
        let mut links = Vec::new();
        while let Some(block) = reader.next_block() {
            let data = match block.map_err(fmt)? {
                Block::SectionHeader(_) => {
                    links.clear();
                    continue;
                }
                Block::InterfaceDescription(i) => {
                    links.push(i.linktype);
                    continue;
                }
                Block::EnhancedPacket(b) => {
                    check_link(&p, links.get(b.interface_id as usize).copied())?;
                    b.data.into_owned()
                }
                Block::SimplePacket(b) => {
                    check_link(&p, links.first().copied())?;
                    b.data.into_owned()
                }
                _ => continue,
            };
            frames.push(data);
        }
    } else {
        let mut reader = PcapReader::new(file).map_err(fmt)?;
        check_link(&p, Some(reader.header().datalink))?;
        while let Some(pkt) = reader.next_packet() {
            frames.push(pkt.map_err(fmt)?.data.into_owned());
        }
    }
    Ok(frames)
}

fn check_link(path: &str, link: Option<DataLink>) -> Result<(), CaptureError> {
    match link {
        Some(DataLink::ETHERNET) | None => Ok(()),
        Some(link) => Err(CaptureError::LinkType {
            path: path.to_string(),
            link,
        }),
    }
}
