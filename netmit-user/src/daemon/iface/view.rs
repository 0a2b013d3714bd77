//! The interface's part of the snapshot the daemon publishes (metrics, `/status`).

use std::collections::BTreeMap;

use netmit_common::{NapiPollCounters, Verdict};

use super::Iface;
use crate::metrics::snapshot::{
    IfaceSnapshot, NapiView, OverrideView, QueueView, SampleView, VerdictCount, XdpView,
};

impl Iface {
    /// The interface's part of the published snapshot.
    pub fn snapshot(
        &self,
        ctx_counters: Option<&BTreeMap<u32, NapiPollCounters>>,
    ) -> IfaceSnapshot {
        let napis = self
            .napis
            .iter()
            .map(|n| {
                let c = ctx_counters.and_then(|all| all.get(&n.id));
                NapiView {
                    napi_id: n.id,
                    polls: c.map(|c| c.polls),
                    packets: c.map(|c| c.packets),
                    budget_exhausted: c.map(|c| c.budget_exhausted),
                    empty: c.map(|c| c.empty),
                    work_hist: c.map(|c| c.work_hist),
                    defer_hard_irqs: n.defer_hard_irqs.map(u64::from),
                    gro_flush_timeout_ns: n.gro_flush_timeout_ns,
                    irq_suspend_timeout_ns: n.irq_suspend_timeout_ns,
                    threaded: n.threaded.map(u64::from),
                }
            })
            .collect();
        let queues = self
            .queues
            .iter()
            .map(|q| QueueView {
                queue: q.queue,
                verdicts: Verdict::ALL
                    .iter()
                    .map(|v| {
                        let c = q.stats.verdicts[*v as usize];
                        VerdictCount {
                            verdict: v.name(),
                            packets: c.packets,
                            bytes: c.bytes,
                        }
                    })
                    .collect(),
            })
            .collect();
        IfaceSnapshot {
            device: self.cfg.name.to_string(),
            ifindex: self.dev.as_ref().map(|d| d.ifindex),
            mode: self.controller.mode(),
            max_mode: self.controller.ceiling(),
            mode_since_unix: self.mode_since,
            last_transition: self.last_transition.clone(),
            transitions: self.transitions,
            xdp: XdpView {
                configured: self.cfg.attach.name().into(),
                attached: self.attached,
                attached_by_daemon: self.attached_by_daemon,
                queues,
            },
            sample: self.last_sample.as_ref().map(SampleView::from),
            napis,
            interrupts: self.irqs,
            sysfs_fallback: false,
            last_error: self.last_error.clone(),
            external_overrides: self
                .overrides
                .iter()
                .map(|(&(napi_id, param), &(ours, theirs))| OverrideView {
                    napi_id,
                    setting: param.name(),
                    netmit_value: ours,
                    value: theirs,
                })
                .collect(),
        }
    }
}
