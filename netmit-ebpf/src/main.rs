//! netmit's XDP programs.
//!
//! `netmit_steer` parses each frame, finds the best-ranked steering rule with a fixed
//! number of table lookups (see `netmit_common` for the bitmap scheme), counts the verdict
//! per RX queue and per rule, and redirects, drops or passes the frame. It never drops a
//! frame that no rule tells it to drop: malformed frames go to the kernel.
//!
//! `netmit_pass` does nothing but `XDP_PASS`: the baseline of `cargo xtask bench xdp`.
//! `netmit_floor` (in `floor.rs`) parses the headers and makes one map lookup: the
//! benchmark's floor for "parse and decide".
//!
//! `netmit_gen` is the traffic generator's program (`netmit gen`): run by user space with
//! BPF_PROG_TEST_RUN in live-frames mode on a template UDP frame, it writes the next
//! flow's ports and the matching UDP checksum into the frame and returns `XDP_TX`, which
//! the kernel turns into a transmission out of the interface named in the run's context.
//!
//! `netmit_load` (in `load.rs`) is the load client's receive side (`netmit load`): it
//! records the latency of stamped replies and, in a closed loop, turns each reply into
//! the next request. `netmit_gen` writes that stamp when its parameters ask for it.
//!
//! `netmit_napi_poll` is not an XDP program: a raw tracepoint on `napi:napi_poll` that
//! counts polls, packets, budget-exhausted and empty polls and a work histogram per NAPI
//! id (see `netmit_user::signals` for why a raw tracepoint and per-CPU counting).
#![no_std]
#![no_main]

mod floor;
mod load;
mod parse;

use aya_ebpf::{
    bindings::{BPF_NOEXIST, xdp_action},
    helpers::{bpf_probe_read_kernel, bpf_xdp_adjust_meta},
    macros::{map, raw_tracepoint, xdp},
    maps::{Array, LruPerCpuHashMap, PerCpuArray, XskMap},
    programs::{RawTracePointContext, XdpContext},
};
use aya_log_ebpf::{
    debug, info,
    macro_support::{Level, level_enabled},
    warn,
};
use netmit_common::{
    Action, Config, Counter, DST_CHILD, DST_ENTRIES, DST_ROOT_V4, DST_ROOT_V6, GENERATIONS,
    GenTables, MAX_QUEUES, MAX_RULES, MAX_XSKS, NO_RULE, PORT_NONE, QueueStats, RULE_WORDS,
    RuleAction, RuleSet, RuleSpec, SET_POOL_SLOTS, V6_CHECKS, VERDICT_MAGIC, VERDICT_SLOTS,
    VLAN_SLOTS, Verdict, VerdictRecord, lookup, lowest_bit,
};
use netmit_common::{
    MAX_NAPIS, NAPI_OFFSET_UNSET, NapiOffsets, NapiPollCounters, STAMP_LEN, TrafficParams,
    TrafficState, udp_csum_update, udp_csum_update_stamped,
};
use parse::{FAMILY_V4, FAMILY_V6, NO_VLAN, parse};

/// Set by the loader (rodata, so the verifier removes the dead branch when it is 0): write
/// a [`VerdictRecord`] into the frame's metadata for BPF_PROG_TEST_RUN callers.
#[unsafe(no_mangle)]
static NETMIT_TRACE_VERDICT: u8 = 0;

#[map]
static NETMIT_CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static NETMIT_RULES: Array<RuleSpec> = Array::with_max_entries(MAX_RULES as u32, 0);
/// One [`GenTables`] per generation: a packet's whole classification reads one value.
#[map]
static NETMIT_TABLES: Array<GenTables> = Array::with_max_entries(GENERATIONS as u32, 0);
#[map]
static NETMIT_QSTATS: PerCpuArray<QueueStats> = PerCpuArray::with_max_entries(MAX_QUEUES as u32, 0);
#[map]
static NETMIT_RHITS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES as u32, 0);
#[map]
static NETMIT_XSKS: XskMap = XskMap::with_max_entries(MAX_XSKS, 0);
/// The rule generation each CPU last logged (only touched while debug logging is on).
#[map]
static NETMIT_LOGGEN: PerCpuArray<u32> = PerCpuArray::with_max_entries(1, 0);

#[xdp]
pub fn netmit_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// Set by the generator's loader (rodata, so the verifier sees constants): which ports
/// `netmit_gen` writes.
#[unsafe(no_mangle)]
static NETMIT_GEN_PARAMS: TrafficParams = TrafficParams {
    udp_off: 34,
    flows: 1,
    dports: 1,
    csum_seed: 0,
    sport_base: 0,
    dport_base: 0,
    stamp: 0,
};

/// One entry shared by all CPUs, so that consecutive frames go to consecutive flows even
/// when the sending thread moves between CPUs. Plain (non-atomic) updates are enough:
/// one generator runs on one thread, and a test run stays on one CPU.
#[map]
static NETMIT_GEN_STATE: Array<TrafficState> = Array::with_max_entries(1, 0);

/// One frame of the traffic generator: next flow's ports, RFC 1624 checksum, `XDP_TX`.
///
/// In live-frames mode the kernel recycles pages without restoring their content, so
/// the frame holds either the template or what an earlier run wrote. Every field written
/// here is therefore computed from the template's values in [`NETMIT_GEN_PARAMS`], never
/// from what is in the frame. A frame too short for the UDP header is dropped without
/// being counted (user space probes live-frames support with such a frame).
#[xdp]
pub fn netmit_gen(ctx: XdpContext) -> u32 {
    // SAFETY: a plain read of a rodata global.
    let p = unsafe { core::ptr::read_volatile(&NETMIT_GEN_PARAMS) };
    let (start, end) = parse::bounds(&ctx);
    let udp = start + if p.udp_off == 54 { 54 } else { 34 };
    let need = if p.stamp != 0 { 8 + STAMP_LEN } else { 8 };
    if udp + need > end {
        return xdp_action::XDP_DROP;
    }
    let Some(state) = NETMIT_GEN_STATE.get_ptr_mut(0) else {
        return xdp_action::XDP_DROP;
    };
    // SAFETY: only this generator's one thread runs the program (see the map).
    let state = unsafe { &mut *state };
    let flow = if state.flow < p.flows { state.flow } else { 0 };
    let dport = if state.dport < p.dports {
        state.dport
    } else {
        0
    };
    // Flow i always gets destination port index i % dports, without a division.
    if flow + 1 >= p.flows {
        state.flow = 0;
        state.dport = 0;
    } else {
        state.flow = flow + 1;
        state.dport = if dport + 1 >= p.dports { 0 } else { dport + 1 };
    }
    state.packets += 1;

    let sport = p.sport_base.wrapping_add(flow as u16);
    let dport = p.dport_base.wrapping_add(dport as u16);
    // With a send stamp (the load client's requests) the checksum covers its time too.
    let check = if p.stamp != 0 {
        match load::write_stamp(&ctx, p.udp_off == 54) {
            Some(ts) => udp_csum_update_stamped(p.csum_seed, sport, dport, ts),
            None => return xdp_action::XDP_DROP,
        }
    } else {
        udp_csum_update(p.csum_seed, sport, dport)
    };
    let h = udp as *mut [u8; 2];
    // SAFETY: [udp, udp + 8) was checked against `data_end` above.
    unsafe {
        core::ptr::write_unaligned(h, sport.to_be_bytes());
        core::ptr::write_unaligned(h.add(1), dport.to_be_bytes());
        core::ptr::write_unaligned(h.add(3), check.to_be_bytes());
    }
    xdp_action::XDP_TX
}

#[xdp]
pub fn netmit_steer(ctx: XdpContext) -> u32 {
    // SAFETY: the context pointer is valid for the program's run.
    let queue = unsafe { (*ctx.ctx).rx_queue_index };
    let (start, end) = parse::bounds(&ctx);
    let len = (end - start) as u64;

    let (verdict, rule_id, malformed) = match parse(&ctx) {
        Err(why) => (Verdict::Malformed, NO_RULE, why as u8),
        Ok(pkt) => match best_rule(&pkt) {
            None => (Verdict::Unmatched, NO_RULE, 0),
            Some(rule) => {
                let verdict = match Action::from_u8(rule.action) {
                    Some(Action::Drop) => Verdict::Drop,
                    // The map lookup is inlined by the verifier; checking it first spares
                    // the redirect helper call on queues without a socket.
                    Some(Action::Xsk) if NETMIT_XSKS.get(queue).is_none() => Verdict::XskFallback,
                    Some(Action::Xsk) => {
                        match NETMIT_XSKS.redirect(queue, xdp_action::XDP_PASS as u64) {
                            Ok(_) => Verdict::Xsk,
                            Err(_) => Verdict::XskFallback,
                        }
                    }
                    _ => Verdict::Pass,
                };
                (verdict, rule.rule_id, 0)
            }
        },
    };

    let seen = count(queue, verdict, rule_id, len);
    // Rare events, for people: off unless the loader set AYA_LOG_LEVEL (rodata, so with
    // logging off the verifier removes all of this from the program).
    if level_enabled(Level::Error) {
        log_events(&ctx, queue, verdict, malformed, len, seen);
    }

    // SAFETY: a plain read of a rodata global.
    if unsafe { core::ptr::read_volatile(&NETMIT_TRACE_VERDICT) } != 0 {
        trace(&ctx, verdict, rule_id, malformed);
    }

    match verdict {
        Verdict::Drop => xdp_action::XDP_DROP,
        Verdict::Xsk => xdp_action::XDP_REDIRECT,
        _ => xdp_action::XDP_PASS,
    }
}

/// Finds the best-ranked rule that matches `pkt` in the active generation.
///
/// Two map lookups (the config, then the generation's [`GenTables`]); the rest are plain
/// loads at bounded offsets into that value. Gathers one bitmap per field (pointers, nothing
/// copied), then ANDs them a word at a time and stops at the first non-zero word: its
/// lowest bit is the best-ranked rule. Words past the installed rules are never read.
/// An IPv6 packet first tries [`v6_candidates`], which spares it the deep trie walk.
#[inline(always)]
fn best_rule(pkt: &parse::Packet) -> Option<RuleAction> {
    let cfg = NETMIT_CONFIG.get(0)?;
    let t = NETMIT_TABLES.get(cfg.active & 1)?;
    if t.rule_count == 0 {
        return None;
    }
    let lookups = t.lookups;

    let proto: &RuleSet = &t.proto[if pkt.proto < 2 { pkt.proto as usize } else { 2 }];

    let port: &RuleSet = if lookups & lookup::PORT != 0 {
        // The port comes from a 16-bit byte swap (BPF_END). Verifiers before about 6.15
        // forget the bounds of a byte-swapped register (Linux 6.1 and 6.12 reject the
        // program with "math between map_value pointer and register with unbounded min
        // value"), and LLVM, which knows the bound, drops the comparison below. A volatile
        // read hides the bound from LLVM, so the comparison stays and bounds the index
        // for every verifier (`cargo xtask test --kernels` loads it on 6.1 and 6.12).
        // (The copy is what is read back, so only that one value goes through the stack,
        // not the whole parsed packet.)
        let slot = opaque(pkt.port_slot as usize);
        set(t, t.ports[if slot < PORT_NONE { slot } else { PORT_NONE }])
    } else {
        &t.all
    };

    let vlan: &RuleSet = if pkt.vlan != NO_VLAN && lookups & lookup::VLAN != 0 {
        set(t, t.vlans[pkt.vlan as usize & (VLAN_SLOTS - 1)])
    } else {
        &t.untagged
    };

    let dst: &RuleSet = match pkt.family {
        FAMILY_V4 if lookups & lookup::DST4 != 0 => {
            dst_rules(t, DST_ROOT_V4, pkt.dst as *const [u8; 4])
        }
        FAMILY_V6 if lookups & lookup::DST6 != 0 => {
            let addr = pkt.dst as *const [u8; 16];
            match v6_candidates(t, [proto, port, vlan], addr) {
                Some(decided) => return decided,
                None => dst_rules(t, DST_ROOT_V6, addr),
            }
        }
        // No rule constrains this family (or the frame is not IP): only the rules without
        // a destination can match.
        _ => &t.any_dst,
    };

    // Most rule sets fit one word: decide them before the loop (every set is empty past
    // the installed rules, and there is at least one).
    let m = proto.0[0] & port.0[0] & vlan.0[0] & dst.0[0];
    if m != 0 {
        return Some(t.actions[lowest_bit(m) as usize]);
    }
    let words = (t.rule_count as usize).div_ceil(64);
    let mut w = 1;
    while w < RULE_WORDS {
        if w >= words {
            return None;
        }
        let m = proto.0[w] & port.0[w] & vlan.0[w] & dst.0[w];
        if m != 0 {
            let rank = masked(w * 64 + lowest_bit(m) as usize, MAX_RULES - 1);
            return Some(t.actions[rank]);
        }
        w += 1;
    }
    None
}

/// Decides an IPv6 packet without the trie when it can: goes through the rules that the
/// other fields allow (`sets`) and that could match an IPv6 packet, best first, and checks
/// each one's prefix itself. `Some(None)` when no rule matches; `None` when more than
/// [`V6_CHECKS`] candidates would have to be checked (the caller then walks the trie).
#[inline(always)]
fn v6_candidates(
    t: &GenTables,
    sets: [&RuleSet; 3],
    addr: *const [u8; 16],
) -> Option<Option<RuleAction>> {
    // SAFETY: the parser checked that the 16 bytes lie inside the frame. The object
    // is built for CPUs with misaligned access (`build.rs`), so these are two plain loads.
    let (a0, a1) = unsafe {
        let p = addr as *const u64;
        (
            core::ptr::read_unaligned(p),
            core::ptr::read_unaligned(p.add(1)),
        )
    };
    let words = (t.rule_count as usize).div_ceil(64);
    let mut checks = 0;
    let mut w = 0;
    while w < RULE_WORDS {
        if w >= words {
            return Some(None);
        }
        let mut m = sets[0].0[w] & sets[1].0[w] & sets[2].0[w] & t.v6_candidates.0[w];
        while m != 0 {
            if checks >= V6_CHECKS {
                return None;
            }
            checks += 1;
            let bit = lowest_bit(m);
            let rank = masked(w * 64 + bit as usize, MAX_RULES - 1);
            if (t.any_dst.0[w] >> bit) & 1 != 0 || t.v6_prefixes[rank].contains(a0, a1) {
                return Some(Some(t.actions[rank]));
            }
            m &= m - 1;
        }
        w += 1;
    }
    Some(None)
}

/// `value & mask`, with the mask kept in the program even where LLVM can prove it changes
/// nothing. Verifiers before about 6.15 lose a register's bounds after an OR, XOR or shift
/// by a register (LLVM writes `w * 64 + bit` as an OR), and reject the table access that
/// follows; an AND with a constant restores them. The volatile read keeps LLVM from
/// dropping that AND (see `cargo xtask test --kernels` for the kernels it is checked on).
#[inline(always)]
fn masked(value: usize, mask: usize) -> usize {
    opaque(value) & mask
}

/// `value`, read back through a volatile load so that LLVM forgets what it knows of it
/// (its range) and keeps the checks that follow.
#[inline(always)]
fn opaque(value: usize) -> usize {
    // SAFETY: a read of a local.
    unsafe { core::ptr::read_volatile(&value) }
}

/// The rule set with pool index `index`.
#[inline(always)]
fn set(t: &GenTables, index: u16) -> &RuleSet {
    &t.sets[index as usize & (SET_POOL_SLOTS - 1)]
}

/// Walks the destination trie (root at entry `root`) for `addr` and returns the rules
/// whose prefix contains it.
#[inline(always)]
fn dst_rules<'t, const N: usize>(
    t: &'t GenTables,
    root: usize,
    addr: *const [u8; N],
) -> &'t RuleSet {
    // SAFETY: the parser checked that the N bytes lie inside the frame.
    let addr = unsafe { &*addr };
    let mut entry = t.dst[root | ((addr[0] as usize) << 8) | addr[1] as usize];
    let mut i = 2;
    while i < N {
        if entry & DST_CHILD == 0 {
            break;
        }
        entry = t.dst[(((entry as usize) << 8) | addr[i] as usize) & (DST_ENTRIES - 1)];
        i += 1;
    }
    // A child entry after the last byte cannot happen (prefixes end by then); the mask
    // keeps the index in range for the verifier either way.
    set(t, entry)
}

/// Logs a steered flow that found no socket and a malformed frame, each when its per-CPU
/// count (`seen`) reaches a power of two (so a flood costs a log line per doubling, not
/// one per packet), and at debug level a change of the active rule generation.
#[inline(always)]
fn log_events(ctx: &XdpContext, queue: u32, verdict: Verdict, malformed: u8, len: u64, seen: u64) {
    let first_of_many = seen & seen.wrapping_sub(1) == 0;
    match verdict {
        Verdict::XskFallback if first_of_many && level_enabled(Level::Warn) => warn!(
            ctx,
            "queue {}: a flow steered to AF_XDP has no socket there; {} packets went to the kernel on this CPU",
            queue,
            seen
        ),
        Verdict::Malformed if first_of_many && level_enabled(Level::Info) => info!(
            ctx,
            "queue {}: malformed frame of {} bytes (reason {}); {} so far on this CPU",
            queue,
            len,
            malformed,
            seen
        ),
        _ => {}
    }
    if level_enabled(Level::Debug)
        && let (Some(cfg), Some(last)) = (NETMIT_CONFIG.get(0), NETMIT_LOGGEN.get_ptr_mut(0))
    {
        // Stored plus one, so the map's initial 0 means "nothing logged yet".
        let now = (cfg.active & 1) + 1;
        // SAFETY: per-CPU value, only this CPU writes it while the program runs.
        if unsafe { *last } != now {
            unsafe { *last = now };
            debug!(ctx, "rule generation {} is active", now - 1);
        }
    }
}

/// Counts the frame; returns this CPU's count of its verdict on its queue, now.
#[inline(always)]
fn count(queue: u32, verdict: Verdict, rule_id: u16, len: u64) -> u64 {
    let slot = if (queue as usize) < MAX_QUEUES {
        queue
    } else {
        (MAX_QUEUES - 1) as u32
    };
    let mut seen = 0;
    if let Some(stats) = NETMIT_QSTATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, only this CPU writes it while the program runs.
        // LLVM knows `verdict < 6` and would drop a plain mask; the verifier does not know
        // it, so launder the value and keep the mask that proves the index in bounds.
        let v = unsafe { core::ptr::read_volatile(&(verdict as u8)) } as usize;
        let c = unsafe { &mut (*stats).verdicts[v & (VERDICT_SLOTS - 1)] };
        c.packets += 1;
        c.bytes += len;
        seen = c.packets;
    }
    if rule_id != NO_RULE
        && let Some(hits) = NETMIT_RHITS.get_ptr_mut(rule_id as u32)
    {
        // SAFETY: as above.
        unsafe {
            (*hits).packets += 1;
            (*hits).bytes += len;
        }
    }
    seen
}

/// Prepends a [`VerdictRecord`] as XDP metadata.
#[inline(always)]
fn trace(ctx: &XdpContext, verdict: Verdict, rule_id: u16, malformed: u8) {
    const LEN: usize = core::mem::size_of::<VerdictRecord>();
    // SAFETY: the helper only moves the metadata pointer; it fails if there is no room.
    if unsafe { bpf_xdp_adjust_meta(ctx.ctx, -(LEN as i32)) } != 0 {
        return;
    }
    let meta = ctx.metadata();
    if meta + LEN > ctx.data() {
        return;
    }
    let record = VerdictRecord {
        magic: VERDICT_MAGIC,
        rule_id,
        verdict: verdict as u8,
        malformed,
        _pad: [0; 2],
    };
    // SAFETY: the metadata area [meta, meta + LEN) was checked against `data` above.
    unsafe { core::ptr::write_unaligned(meta as *mut VerdictRecord, record) };
}

/// Set by the loader (rodata): where `napi_id`, `dev` and `ifindex` live in this kernel's
/// structs, from its BTF. While unset, `netmit_napi_poll` returns at once (the verifier
/// sees the values as constants, so it does not verify the branch not taken).
#[unsafe(no_mangle)]
static NETMIT_NAPI_OFFSETS: NapiOffsets = NapiOffsets::UNSET;

/// NAPI id -> counters, per CPU. LRU, so that the entries of destroyed NAPIs (ids are
/// not reused) age out instead of filling the map.
#[map]
static NETMIT_NAPIPOLL: LruPerCpuHashMap<u32, NapiPollCounters> =
    LruPerCpuHashMap::with_max_entries(MAX_NAPIS, 0);

/// Polls that could not be counted (unreadable NAPI id, failed insert).
#[map]
static NETMIT_NAPILOST: PerCpuArray<u64> = PerCpuArray::with_max_entries(1, 0);

/// Counts one NAPI poll: `napi:napi_poll` passes `(struct napi_struct *napi, int work,
/// int budget)`.
///
/// It runs on every poll of every NAPI of the machine, so the common path is one
/// `bpf_probe_read_kernel` of the NAPI id, one map lookup and a few additions into this
/// CPU's value. The device's ifindex (two more reads) is read only when a NAPI's entry
/// is created.
#[raw_tracepoint(tracepoint = "napi_poll")]
pub fn netmit_napi_poll(ctx: RawTracePointContext) -> i32 {
    // SAFETY: a plain read of a rodata global.
    let off = unsafe { core::ptr::read_volatile(&NETMIT_NAPI_OFFSETS) };
    if off.napi_id == NAPI_OFFSET_UNSET {
        return 0;
    }
    let napi: *const u8 = ctx.arg(0);
    let work: i32 = ctx.arg(1);
    let budget: i32 = ctx.arg(2);

    // SAFETY: bpf_probe_read_kernel checks the address and fails instead of faulting;
    // the offset lies inside struct napi_struct (user space checked it against BTF).
    let id = match unsafe {
        bpf_probe_read_kernel(napi.wrapping_add(off.napi_id as usize) as *const u32)
    } {
        Ok(id) => id,
        Err(_) => {
            count_lost();
            return 0;
        }
    };

    if let Some(c) = NETMIT_NAPIPOLL.get_ptr_mut(id) {
        // SAFETY: this CPU's value; a raw tracepoint program does not nest on one CPU
        // (the kernel skips a run that would recurse), so nothing else writes it now.
        unsafe { (*c).record(work, budget) };
        return 0;
    }

    // The first poll of this NAPI (or the first since its entry was evicted).
    let mut fresh = NapiPollCounters {
        ifindex: napi_ifindex(napi, &off),
        ..Default::default()
    };
    fresh.record(work, budget);
    if NETMIT_NAPIPOLL
        .insert(id, fresh, BPF_NOEXIST as u64)
        .is_ok()
    {
        return 0;
    }
    // Another CPU created the entry in the meantime: count into ours.
    match NETMIT_NAPIPOLL.get_ptr_mut(id) {
        // SAFETY: as above.
        Some(c) => unsafe { (*c).record(work, budget) },
        None => count_lost(),
    }
    0
}

/// `napi->dev->ifindex`, or 0 for a NAPI without a device (the per-CPU backlog) or when a
/// read fails.
#[inline(always)]
fn napi_ifindex(napi: *const u8, off: &NapiOffsets) -> u32 {
    // SAFETY: probe reads check the address; offsets come from BTF as above.
    let dev = match unsafe {
        bpf_probe_read_kernel(napi.wrapping_add(off.napi_dev as usize) as *const u64)
    } {
        Ok(dev) if dev != 0 => dev as *const u8,
        _ => return 0,
    };
    // SAFETY: as above.
    unsafe { bpf_probe_read_kernel(dev.wrapping_add(off.dev_ifindex as usize) as *const u32) }
        .unwrap_or(0)
}

#[inline(always)]
fn count_lost() {
    if let Some(n) = NETMIT_NAPILOST.get_ptr_mut(0) {
        // SAFETY: this CPU's value, see `netmit_napi_poll`.
        unsafe { *n += 1 };
    }
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
