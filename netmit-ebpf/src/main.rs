//! netmit's XDP programs.
//!
//! `netmit_steer` parses each frame, finds the best-ranked steering rule with a fixed
//! number of table lookups (see `netmit_common` for the bitmap scheme), counts the verdict
//! per RX queue and per rule, and redirects, drops or passes the frame. It never drops a
//! frame that no rule tells it to drop: malformed frames go to the kernel.
//!
//! `netmit_pass` does nothing but `XDP_PASS`: the baseline of `cargo xtask bench xdp`.
#![no_std]
#![no_main]

mod parse;

use aya_ebpf::{
    bindings::xdp_action,
    helpers::bpf_xdp_adjust_meta,
    macros::{map, xdp},
    maps::{Array, LpmTrie, PerCpuArray, XskMap, lpm_trie::Key},
    programs::XdpContext,
};
use netmit_common::{
    Action, Config, Counter, DST_TRIE_ENTRIES, DST4_KEY_LEN, DST6_KEY_LEN, GENERATIONS,
    MAX_QUEUES, MAX_RULES, MAX_XSKS, NO_RULE, PORT_NONE, PORT_SLOTS, PacketProto, QueueStats,
    RuleAction, RuleSet, RuleSpec, VERDICT_MAGIC, VERDICT_SLOTS, VLAN_SLOTS, Verdict,
    VerdictRecord, lookup,
};
use parse::{Dst, parse};

/// Set by the loader (rodata, so the verifier removes the dead branch when it is 0): write
/// a [`VerdictRecord`] into the frame's metadata for BPF_PROG_TEST_RUN callers.
#[unsafe(no_mangle)]
static NETMIT_TRACE_VERDICT: u8 = 0;

#[map]
static NETMIT_CONFIG: Array<Config> = Array::with_max_entries(1, 0);
#[map]
static NETMIT_RULES: Array<RuleSpec> = Array::with_max_entries(MAX_RULES as u32, 0);
#[map]
static NETMIT_ACTIONS: Array<RuleAction> =
    Array::with_max_entries((GENERATIONS * MAX_RULES) as u32, 0);
#[map]
static NETMIT_PORTS: Array<RuleSet> = Array::with_max_entries((GENERATIONS * PORT_SLOTS) as u32, 0);
#[map]
static NETMIT_VLANS: Array<RuleSet> = Array::with_max_entries((GENERATIONS * VLAN_SLOTS) as u32, 0);
#[map]
static NETMIT_DST4: LpmTrie<[u8; DST4_KEY_LEN], RuleSet> =
    LpmTrie::with_max_entries(DST_TRIE_ENTRIES, 0);
#[map]
static NETMIT_DST6: LpmTrie<[u8; DST6_KEY_LEN], RuleSet> =
    LpmTrie::with_max_entries(DST_TRIE_ENTRIES, 0);
#[map]
static NETMIT_QSTATS: PerCpuArray<QueueStats> = PerCpuArray::with_max_entries(MAX_QUEUES as u32, 0);
#[map]
static NETMIT_RHITS: PerCpuArray<Counter> = PerCpuArray::with_max_entries(MAX_RULES as u32, 0);
#[map]
static NETMIT_XSKS: XskMap = XskMap::with_max_entries(MAX_XSKS, 0);

#[xdp]
pub fn netmit_pass(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
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

    count(queue, verdict, rule_id, len);

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
#[inline(always)]
fn best_rule(pkt: &parse::Packet) -> Option<RuleAction> {
    let cfg = NETMIT_CONFIG.get(0)?;
    let g = (cfg.active & 1) as usize;
    let gen_cfg = &cfg.gens[g];
    if gen_cfg.rule_count == 0 {
        return None;
    }
    let lookups = gen_cfg.lookups;

    let mut set = match pkt.proto {
        PacketProto::Udp => gen_cfg.proto[0],
        PacketProto::Tcp => gen_cfg.proto[1],
        PacketProto::Other => gen_cfg.proto[2],
    };

    if lookups & lookup::PORT != 0 {
        let slot = match pkt.dport {
            Some(port) => port as usize,
            None => PORT_NONE,
        };
        set.intersect_with(NETMIT_PORTS.get((g * PORT_SLOTS + slot) as u32)?);
    }

    if lookups & lookup::VLAN != 0 {
        match pkt.vlan {
            Some(vid) => {
                let slot = g * VLAN_SLOTS + (vid as usize & (VLAN_SLOTS - 1));
                set.intersect_with(NETMIT_VLANS.get(slot as u32)?);
            }
            None => set.intersect_with(&gen_cfg.untagged),
        }
    }

    match pkt.dst {
        Dst::V4(addr) if lookups & lookup::DST4 != 0 => {
            let key = Key::new(
                (DST4_KEY_LEN * 8) as u32,
                [g as u8, addr[0], addr[1], addr[2], addr[3]],
            );
            set.intersect_with(NETMIT_DST4.get(&key)?);
        }
        Dst::V6(addr) if lookups & lookup::DST6 != 0 => {
            let mut data = [0u8; DST6_KEY_LEN];
            data[0] = g as u8;
            data[1..].copy_from_slice(&addr);
            let key = Key::new((DST6_KEY_LEN * 8) as u32, data);
            set.intersect_with(NETMIT_DST6.get(&key)?);
        }
        // No rule constrains this family (or the frame is not IP): only the rules without
        // a destination can match.
        _ => set.intersect_with(&gen_cfg.any_dst),
    }

    let rank = set.first()?;
    NETMIT_ACTIONS.get((g * MAX_RULES + rank) as u32).copied()
}

#[inline(always)]
fn count(queue: u32, verdict: Verdict, rule_id: u16, len: u64) {
    let slot = if (queue as usize) < MAX_QUEUES { queue } else { (MAX_QUEUES - 1) as u32 };
    if let Some(stats) = NETMIT_QSTATS.get_ptr_mut(slot) {
        // SAFETY: per-CPU value, only this CPU writes it while the program runs.
        // LLVM knows `verdict < 6` and would drop a plain mask; the verifier does not know
        // it, so launder the value and keep the mask that proves the index in bounds.
        let v = unsafe { core::ptr::read_volatile(&(verdict as u8)) } as usize;
        let c = unsafe { &mut (*stats).verdicts[v & (VERDICT_SLOTS - 1)] };
        c.packets += 1;
        c.bytes += len;
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

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
