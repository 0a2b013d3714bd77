//! How a request becomes its reply: a byte-for-byte echo, or sockperf's ping-pong
//! protocol.
//!
//! # Why sockperf needs more than an echo
//!
//! sockperf (Mellanox, packaged by Debian) measures latency against its own server,
//! `sockperf server`, and its messages start with a 14-byte header: a 64-bit sequence
//! number, 16 bits of flags and a 32-bit length, all big-endian (`src/message.h`). The
//! client sets `MASK_CLIENT` (bit 0 of the flags) in every request and ignores every
//! message that still has it, so a plain echo is never counted (sockperf then reports
//! "No messages were received from the server"). Its server answers only requests that
//! carry `MASK_PONG` (bit 1), never warm-up messages (`MASK_WARMUP_MSG`, bit 2), and
//! sends the request back with `MASK_CLIENT` cleared. [`ReplyFormat::Sockperf`] does
//! exactly that; everything else of the message, its timestamps' sequence number
//! included, goes back unchanged.

use serde::Serialize;

/// sockperf's header: sequence number (8), flags (2), length (4).
pub const SOCKPERF_HEADER: usize = 14;
/// Byte of the flags that holds the low eight bits (the flags are big-endian at 8..10).
const FLAGS_LOW: usize = 9;
const MASK_CLIENT: u8 = 1;
const MASK_PONG: u8 = 2;
const MASK_WARMUP: u8 = 4;

/// How a request becomes its reply.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
#[non_exhaustive]
pub enum ReplyFormat {
    /// The reply's payload is the request's, byte for byte: a client can put its own
    /// timestamps and sequence numbers in the payload and match replies to requests.
    #[default]
    Echo,
    /// sockperf's ping-pong protocol (see the module documentation): requests that
    /// carry sockperf's client and pong-request flags go back with the client flag
    /// cleared; anything else gets no reply.
    Sockperf,
}

impl ReplyFormat {
    /// The name used on the command line and in JSON (`echo`, `sockperf`).
    pub fn as_str(self) -> &'static str {
        match self {
            ReplyFormat::Echo => "echo",
            ReplyFormat::Sockperf => "sockperf",
        }
    }

    /// Turns a request's payload into its reply, in place; `false` when the request
    /// gets no reply (only in [`ReplyFormat::Sockperf`]).
    pub fn apply(self, payload: &mut [u8]) -> bool {
        match self {
            ReplyFormat::Echo => true,
            ReplyFormat::Sockperf => {
                if payload.len() < SOCKPERF_HEADER {
                    return false;
                }
                let flags = payload[FLAGS_LOW];
                if flags & MASK_CLIENT == 0 || flags & MASK_PONG == 0 || flags & MASK_WARMUP != 0 {
                    return false;
                }
                payload[FLAGS_LOW] = flags & !MASK_CLIENT;
                true
            }
        }
    }
}

impl std::fmt::Display for ReplyFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A sockperf message as its client sends it.
    fn sockperf(seq: u64, flags: u16, len: u32) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&seq.to_be_bytes());
        m.extend_from_slice(&flags.to_be_bytes());
        m.extend_from_slice(&len.to_be_bytes());
        m.resize(len as usize, 0xa5);
        m
    }

    #[test]
    fn echo_leaves_everything() {
        let mut p = vec![1, 2, 3];
        assert!(ReplyFormat::Echo.apply(&mut p));
        assert_eq!(p, [1, 2, 3]);
        assert!(ReplyFormat::Echo.apply(&mut []));
    }

    #[test]
    fn sockperf_pong_requests_come_back_as_server_messages() {
        let request = sockperf(77, 0b011, 64);
        let mut reply = request.clone();
        assert!(ReplyFormat::Sockperf.apply(&mut reply));
        assert_eq!(
            &reply[8..10],
            &0b010u16.to_be_bytes(),
            "client flag cleared"
        );
        assert_eq!(&reply[..8], &request[..8], "sequence number kept");
        assert_eq!(&reply[10..], &request[10..], "length and data kept");
    }

    #[test]
    fn sockperf_gets_no_reply_where_its_server_sends_none() {
        for (flags, why) in [
            (0b001, "no pong request"),
            (0b010, "not from a client"),
            (0b111, "warm-up"),
        ] {
            let mut m = sockperf(1, flags, 32);
            let before = m.clone();
            assert!(!ReplyFormat::Sockperf.apply(&mut m), "{why}");
            assert_eq!(m, before, "{why}: unchanged");
        }
        let mut short = vec![0, 0, 0, 0, 0, 0, 0, 0, 0, 3];
        assert!(!ReplyFormat::Sockperf.apply(&mut short));
    }
}
