//! A memcached load client over memcached's UDP protocol, for benchmarking an unmodified
//! memcached (Debian's 1.6, `-U PORT`) under netmit's modes.
//!
//! Every UDP datagram carries an 8-byte frame header before the ASCII command: request
//! id, sequence number (0), datagram count (1) and a reserved zero, all big-endian `u16`.
//! memcached echoes the request id in each datagram of its reply, so latency is measured
//! on the client side, request by request, without timestamps in the payload.
//!
//! The workload ([`Workload`]) follows the shape of Facebook's ETC pool as mutilate
//! models it (Atikoglu et al., SIGMETRICS 2012): key sizes from a generalized extreme
//! value distribution (location 30.8, scale 8.2, shape 0.079), value sizes from a
//! generalized Pareto distribution (location 15, scale 214.5, shape 0.348), and 30 gets
//! per set. Values are capped at [`MAX_VALUE`] so that every reply fits one datagram
//! (about 90 % of ETC values are below it); keys are capped at memcached's 250 bytes.
//! [`client`] preloads every key with sets and then drives the server closed- or
//! open-loop.

pub mod client;

pub use client::{McClient, McReport};

/// The frame header's length.
pub const HEADER: usize = 8;
/// Largest value the workload sets: replies stay within one datagram.
pub const MAX_VALUE: usize = 1000;
/// memcached's key length limit.
pub const MAX_KEY: usize = 250;

/// A request's frame header.
pub fn header(id: u16) -> [u8; HEADER] {
    let id = id.to_be_bytes();
    [id[0], id[1], 0, 0, 0, 1, 0, 0]
}

/// `get KEY` in a frame.
pub fn get_frame(id: u16, key: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&header(id));
    out.extend_from_slice(b"get ");
    out.extend_from_slice(key);
    out.extend_from_slice(b"\r\n");
}

/// `set KEY 0 0 LEN` with `value` in a frame.
pub fn set_frame(id: u16, key: &[u8], value: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&header(id));
    out.extend_from_slice(b"set ");
    out.extend_from_slice(key);
    out.extend_from_slice(format!(" 0 0 {}\r\n", value.len()).as_bytes());
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// What one reply datagram says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reply {
    /// `VALUE ...` (a hit), with the datagram's sequence number and count.
    Value {
        /// Request id.
        id: u16,
        /// Datagrams in the reply.
        total: u16,
    },
    /// `END` alone: a miss.
    Miss {
        /// Request id.
        id: u16,
    },
    /// `STORED`.
    Stored {
        /// Request id.
        id: u16,
    },
    /// Anything else (`ERROR`, `SERVER_ERROR ...`, a continuation datagram).
    Other {
        /// Request id.
        id: u16,
    },
}

impl Reply {
    /// The request id.
    pub fn id(self) -> u16 {
        match self {
            Reply::Value { id, .. }
            | Reply::Miss { id }
            | Reply::Stored { id }
            | Reply::Other { id } => id,
        }
    }
}

/// Parses a reply datagram; `None` when it is shorter than the header.
pub fn parse_reply(d: &[u8]) -> Option<Reply> {
    if d.len() < HEADER {
        return None;
    }
    let id = u16::from_be_bytes([d[0], d[1]]);
    let seq = u16::from_be_bytes([d[2], d[3]]);
    let total = u16::from_be_bytes([d[4], d[5]]);
    let body = &d[HEADER..];
    Some(if seq != 0 {
        Reply::Other { id }
    } else if body.starts_with(b"VALUE ") {
        Reply::Value { id, total }
    } else if body == b"END\r\n" {
        Reply::Miss { id }
    } else if body == b"STORED\r\n" {
        Reply::Stored { id }
    } else {
        Reply::Other { id }
    })
}

/// A small deterministic PRNG (xorshift64*): the workload is the same in every run and
/// for every setup.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (0 is replaced).
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in (0, 1).
    pub fn unit(&mut self) -> f64 {
        ((self.next_u64() >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
}

/// Inverse CDF of the generalized extreme value distribution.
fn gev(u: f64, loc: f64, scale: f64, shape: f64) -> f64 {
    loc + scale * ((-u.ln()).powf(-shape) - 1.0) / shape
}

/// Inverse CDF of the generalized Pareto distribution.
fn gpd(u: f64, loc: f64, scale: f64, shape: f64) -> f64 {
    loc + scale * ((1.0 - u).powf(-shape) - 1.0) / shape
}

/// ETC-like keys and values, and the get/set mix.
#[derive(Clone, Debug)]
pub struct Workload {
    /// The keys (each `k<index>` padded to its sampled length).
    pub keys: Vec<Vec<u8>>,
    /// Each key's value length.
    pub value_lens: Vec<usize>,
    /// Fraction of requests that are gets (ETC: 30 gets per set).
    pub get_fraction: f64,
}

impl Workload {
    /// `keys` keys with ETC-like sizes, from `seed`.
    pub fn etc(keys: usize, seed: u64) -> Workload {
        let mut rng = Rng::new(seed);
        let mut out = Workload {
            keys: Vec::with_capacity(keys),
            value_lens: Vec::with_capacity(keys),
            get_fraction: 30.0 / 31.0,
        };
        for i in 0..keys {
            let name = format!("k{i}");
            let len = gev(rng.unit(), 30.7984, 8.20449, 0.078688).round() as usize;
            let len = len.clamp(name.len(), MAX_KEY);
            let mut key = name.into_bytes();
            key.resize(len, b'x');
            out.keys.push(key);
            let v = gpd(rng.unit(), 15.0, 214.476, 0.348238).round() as usize;
            out.value_lens.push(v.clamp(1, MAX_VALUE));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_header_and_the_command() {
        let mut f = Vec::new();
        get_frame(0x1234, b"k7", &mut f);
        assert_eq!(f, b"\x12\x34\x00\x00\x00\x01\x00\x00get k7\r\n");
        set_frame(1, b"k1", b"abc", &mut f);
        assert_eq!(
            f,
            b"\x00\x01\x00\x00\x00\x01\x00\x00set k1 0 0 3\r\nabc\r\n"
        );
    }

    #[test]
    fn replies_are_classified_by_their_body() {
        let r = |h: &[u8], body: &[u8]| parse_reply(&[h, body].concat());
        let h = b"\x00\x09\x00\x00\x00\x01\x00\x00";
        assert_eq!(
            r(h, b"VALUE k 0 3\r\nabc\r\nEND\r\n"),
            Some(Reply::Value { id: 9, total: 1 })
        );
        assert_eq!(r(h, b"END\r\n"), Some(Reply::Miss { id: 9 }));
        assert_eq!(r(h, b"STORED\r\n"), Some(Reply::Stored { id: 9 }));
        assert_eq!(r(h, b"SERVER_ERROR x\r\n"), Some(Reply::Other { id: 9 }));
        // A continuation datagram of a multi-datagram reply.
        assert_eq!(
            r(b"\x00\x09\x00\x01\x00\x02\x00\x00", b"VALUE"),
            Some(Reply::Other { id: 9 })
        );
        assert_eq!(parse_reply(b"\x00\x01"), None);
    }

    #[test]
    fn etc_sizes_have_the_documented_shape() {
        let w = Workload::etc(20_000, 42);
        assert_eq!(w.keys.len(), 20_000);
        let mean = |v: &[usize]| v.iter().sum::<usize>() as f64 / v.len() as f64;
        let key_lens: Vec<usize> = w.keys.iter().map(Vec::len).collect();
        // GEV(30.8, 8.2, 0.079): mean about 36 bytes.
        let k = mean(&key_lens);
        assert!((33.0..40.0).contains(&k), "mean key length {k}");
        assert!(key_lens.iter().all(|l| (1..=MAX_KEY).contains(l)));
        // GPD(15, 214.5, 0.348) capped at 1000: most values small, a long tail.
        let small = w.value_lens.iter().filter(|v| **v < 500).count() as f64 / 20_000.0;
        assert!(
            (0.75..0.92).contains(&small),
            "{small} of the values below 500 B"
        );
        assert!(w.value_lens.iter().all(|v| (1..=MAX_VALUE).contains(v)));
        // Unique keys, same workload from the same seed.
        let mut sorted = w.keys.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 20_000);
        assert_eq!(Workload::etc(100, 42).keys, w.keys[..100]);
    }
}
