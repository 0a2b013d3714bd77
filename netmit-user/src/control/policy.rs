//! The controller: one per interface (or per NAPI), fed one [`Sample`] per interval,
//! answering with a [`Decision`]. The rules are described in [`crate::control`].

use std::time::Duration;

use super::{
    config::{ControlError, PolicyConfig},
    effect::{Backoff, Recent, Trial, Verdict},
    mode::{Capabilities, Mode, ModeTarget},
    sample::Sample,
};

/// The rule behind a switch: the `reason` label of `netmit_mode_switches_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Rule {
    /// Interrupt → Defer: packets and wake-ups at or above the enter thresholds.
    LoadHigh,
    /// Defer → Interrupt: packets at or below the exit threshold.
    LoadLow,
    /// → Suspend (or Defer under a ceiling): an application busy-polls.
    BusyPolling,
    /// Suspend →: busy polling stopped.
    BusyPollingStopped,
    /// The signals that could end the mode were missing too long.
    MissingSignal,
    /// The mode is above the ceiling (configuration or capabilities).
    Ceiling,
    /// The switch was taken back: the load fell after it ([`crate::control::effect`]).
    LoadFell,
    /// The switch into Defer was taken back: polls per packet did not fall.
    NoBatching,
}

impl Rule {
    /// Every rule (their label values are exported from the start).
    pub const ALL: [Rule; 8] = [
        Rule::LoadHigh,
        Rule::LoadLow,
        Rule::BusyPolling,
        Rule::BusyPollingStopped,
        Rule::MissingSignal,
        Rule::Ceiling,
        Rule::LoadFell,
        Rule::NoBatching,
    ];

    /// The label value.
    pub fn name(self) -> &'static str {
        match self {
            Rule::LoadHigh => "load_high",
            Rule::LoadLow => "load_low",
            Rule::BusyPolling => "busy_polling",
            Rule::BusyPollingStopped => "busy_polling_stopped",
            Rule::MissingSignal => "missing_signal",
            Rule::Ceiling => "ceiling",
            Rule::LoadFell => "load_fell",
            Rule::NoBatching => "no_batching",
        }
    }
}

impl std::fmt::Display for Rule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A validated [`PolicyConfig`]; cheap to clone, one per group of interfaces that share a
/// configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    config: PolicyConfig,
}

impl Policy {
    /// Validates `config`.
    ///
    /// # Errors
    ///
    /// The first problem [`PolicyConfig::validate`] finds.
    pub fn new(config: PolicyConfig) -> Result<Policy, ControlError> {
        config.validate()?;
        Ok(Policy { config })
    }

    /// The configuration.
    pub fn config(&self) -> &PolicyConfig {
        &self.config
    }

    /// What the caller must put in place to be in `mode`.
    pub fn target(&self, mode: Mode) -> ModeTarget<'_> {
        self.config.modes.target(mode)
    }
}

impl Default for Policy {
    /// The documented defaults (valid by construction; a unit test checks it).
    fn default() -> Self {
        Policy {
            config: PolicyConfig::default(),
        }
    }
}

/// What the caller should do after a sample.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Decision {
    /// Keep the current mode.
    Stay,
    /// Apply the settings of `to` (see [`Policy::target`]). The controller already counts
    /// itself in `to`; if applying fails, tell it with [`Controller::set_mode`].
    Switch {
        /// The mode being left.
        from: Mode,
        /// The mode to apply.
        to: Mode,
        /// The rule that fired.
        rule: Rule,
        /// Why, with the numbers that triggered it against their thresholds.
        reason: String,
    },
}

impl Decision {
    /// The mode to switch to, if any.
    pub fn switch_to(&self) -> Option<Mode> {
        match self {
            Decision::Stay => None,
            Decision::Switch { to, .. } => Some(*to),
        }
    }
}

/// How long a condition has held without a sample against it. Samples where the
/// condition cannot be evaluated (a signal is missing) neither extend nor break it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Streak {
    time: Duration,
    intervals: u32,
}

impl Streak {
    fn update(&mut self, condition: Option<bool>, interval: Duration) {
        match condition {
            Some(true) => {
                self.time = self.time.saturating_add(interval);
                self.intervals = self.intervals.saturating_add(1);
            }
            Some(false) => *self = Streak::default(),
            None => {}
        }
    }

    /// At least one agreeing sample and at least `ms` of them.
    fn reached(&self, ms: u64) -> bool {
        self.intervals > 0 && self.time >= Duration::from_millis(ms)
    }

    fn describe(&self) -> String {
        format!(
            "for {} interval{} ({:.1} s)",
            self.intervals,
            if self.intervals == 1 { "" } else { "s" },
            self.time.as_secs_f64()
        )
    }
}

/// The per-condition streaks of a controller; all reset on every switch.
#[derive(Clone, Copy, Debug, Default)]
struct Streaks {
    /// Interrupt → Defer: load high.
    load_high: Streak,
    /// Defer → Interrupt: load low and no busy polling.
    load_low: Streak,
    /// → Suspend: busy polling active.
    busy_active: Streak,
    /// Suspend →: busy polling stopped.
    busy_stopped: Streak,
    /// The signals that could end the current mode are missing.
    blind: Streak,
}

/// The mode controller of one interface or NAPI. Pure: no I/O, no clock (time is the sum
/// of the samples' intervals).
#[derive(Clone, Debug)]
pub struct Controller {
    policy: Policy,
    capabilities: Capabilities,
    mode: Mode,
    /// Time since the last switch; `None` before the first one (no dwell applies then).
    since_switch: Option<Duration>,
    streaks: Streaks,
    /// Sum of every sample's interval: the clock of the back-off.
    clock: Duration,
    /// The last samples of the current mode (the baseline of the next trial).
    recent: Recent,
    /// The switch being judged, if any.
    trial: Option<Trial>,
    /// Per mode (index [`mode_index`]): its back-off after take-backs.
    backoff: [Backoff; 3],
    /// The outcome of the last trial that passed, until taken.
    judgement: Option<String>,
}

fn mode_index(mode: Mode) -> usize {
    match mode {
        Mode::Interrupt => 0,
        Mode::Defer => 1,
        Mode::Suspend => 2,
    }
}

impl Controller {
    /// A controller in [`Mode::Interrupt`] (the kernel's default, and what a freshly
    /// restored interface is in), free to switch on its first sample.
    pub fn new(policy: Policy, capabilities: Capabilities) -> Controller {
        Controller {
            policy,
            capabilities,
            mode: Mode::Interrupt,
            since_switch: None,
            streaks: Streaks::default(),
            clock: Duration::ZERO,
            recent: Recent::default(),
            trial: None,
            backoff: [Backoff::default(); 3],
            judgement: None,
        }
    }

    /// The outcome of the last trial that passed (a switch judged by its effect and kept),
    /// once: for the log.
    pub fn take_judgement(&mut self) -> Option<String> {
        self.judgement.take()
    }

    /// How long `mode` is still held off after a take-back (`None`: it is not).
    pub fn holdoff(&self, mode: Mode) -> Option<Duration> {
        self.backoff[mode_index(mode)].remaining(self.clock)
    }

    /// Whether a switch is under trial.
    pub fn judging(&self) -> bool {
        self.trial.is_some()
    }

    /// The mode the controller counts the interface in.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The most mitigating mode allowed: the lower of the configuration's `max_mode` and
    /// the capabilities' ceiling.
    pub fn ceiling(&self) -> Mode {
        self.policy
            .config
            .max_mode
            .min(self.capabilities.max_mode())
    }

    /// Time since the last switch (`None` before the first).
    pub fn time_in_mode(&self) -> Option<Duration> {
        self.since_switch
    }

    /// New capabilities (e.g. after a re-probe). If the current mode is no longer
    /// allowed, the answer is an immediate switch to the ceiling, whatever the dwell.
    pub fn set_capabilities(&mut self, capabilities: Capabilities) -> Decision {
        self.capabilities = capabilities;
        self.enforce_ceiling().unwrap_or(Decision::Stay)
    }

    /// Tells the controller the mode the interface is really in: after applying a
    /// [`Decision::Switch`] failed (pass the previous mode), or at start-up. The mode is
    /// clamped to the ceiling; the dwell starts again, which spaces retries.
    pub fn set_mode(&mut self, mode: Mode) {
        self.mode = mode.min(self.ceiling());
        self.since_switch = Some(Duration::ZERO);
        self.streaks = Streaks::default();
        self.trial = None;
        self.recent.clear();
    }

    /// Takes one interval's sample and decides.
    ///
    /// A sample with a zero interval is ignored. The ceiling is enforced first and
    /// ignores the dwell; every other switch waits for `min_dwell_ms` after the previous
    /// one.
    pub fn decide(&mut self, sample: &Sample) -> Decision {
        if sample.interval.is_zero() {
            return Decision::Stay;
        }
        if let Some(decision) = self.enforce_ceiling() {
            return decision;
        }
        let interval = sample.interval;
        self.clock = self.clock.saturating_add(interval);
        if let Some(t) = &mut self.since_switch {
            *t = t.saturating_add(interval);
        }
        let c = &self.policy.config;
        let pps = sample.packets();
        let busy_active = self.busy_active(sample);
        let busy_stopped = self.busy_stopped(sample);
        let load_high = pps.map(|p| {
            p >= c.defer.enter_packets_per_sec as f64
                && sample
                    .wakeups()
                    .is_none_or(|(w, _)| w >= c.defer.enter_wakeups_per_sec as f64)
        });
        // Busy polling holds Defer: it is what a capped Suspend falls back to, and leaving
        // it would bring the busy-poll test straight back. An unknown busy-poll signal
        // does not hold it.
        let load_low =
            pps.map(|p| p <= c.defer.exit_packets_per_sec as f64 && busy_active != Some(true));
        let blind = match self.mode {
            Mode::Interrupt => false,
            Mode::Defer => pps.is_none(),
            Mode::Suspend => busy_stopped.is_none(),
        };
        let s = &mut self.streaks;
        s.load_high.update(load_high, interval);
        s.load_low.update(load_low, interval);
        s.busy_active.update(busy_active, interval);
        s.busy_stopped.update(busy_stopped, interval);
        s.blind.update(Some(blind), interval);
        let judge_span = Duration::from_millis(c.effect.judge_after_ms);
        self.recent.push(sample, judge_span);

        // A switch under trial is judged before the dwell: taking a bad switch back is
        // what the dwell must not delay.
        if let Some(decision) = self.judge(sample, judge_span) {
            return decision;
        }
        let c = &self.policy.config;
        let dwell = Duration::from_millis(c.min_dwell_ms);
        if self.since_switch.is_some_and(|t| t < dwell) {
            return Decision::Stay;
        }
        match self.next(sample) {
            Some((to, rule, reason)) => self.switch(to, rule, reason),
            None => Decision::Stay,
        }
    }

    /// Adds `sample` to the trial and judges it once it covers `span`.
    fn judge(&mut self, sample: &Sample, span: Duration) -> Option<Decision> {
        let trial = self.trial.as_mut()?;
        trial.after.push(sample);
        if trial.after.time() < span {
            return None;
        }
        let trial = self.trial.take()?;
        let effect = self.policy.config.effect.clone();
        let (rule, why) = match trial.judge(&effect) {
            Verdict::Pass(numbers) => {
                self.backoff[mode_index(trial.to)].reset();
                self.judgement = Some(format!(
                    "{} -> {} kept after judging its effect: {numbers}",
                    trial.from, trial.to
                ));
                return None;
            }
            Verdict::LoadFell(why) => (Rule::LoadFell, why),
            Verdict::NoBatching(why) => (Rule::NoBatching, why),
        };
        let hold = self.backoff[mode_index(trial.to)].strike(self.clock, &effect);
        let reason = format!(
            "{why}; back to {}, holding {} off for {:.0} s",
            trial.from,
            trial.to,
            hold.as_secs_f64()
        );
        Some(self.switch(trial.from, rule, reason))
    }

    /// The switch the streaks call for, if any (dwell already satisfied).
    fn next(&self, sample: &Sample) -> Option<(Mode, Rule, String)> {
        let c = &self.policy.config;
        let s = &self.streaks;
        let ceiling = self.ceiling();
        // Busy polling wants Suspend; with Suspend not allowed, Defer is the preferred
        // busy-polling configuration of Linux 5.11 (prefer_busy_poll with deferral).
        let busy_target = ceiling.min(Mode::Suspend);
        if self.mode < busy_target
            && self.holdoff(busy_target).is_none()
            && s.busy_active.reached(c.suspend.enter_after_ms)
        {
            return Some((
                busy_target,
                Rule::BusyPolling,
                format!(
                    "busy polling active {}: {}",
                    s.busy_active.describe(),
                    self.busy_numbers(sample)
                ),
            ));
        }
        let fallback_ms = c.missing_signal_fallback_ms;
        match self.mode {
            Mode::Interrupt => {
                if ceiling >= Mode::Defer
                    && self.holdoff(Mode::Defer).is_none()
                    && s.load_high.reached(c.defer.enter_after_ms)
                {
                    return Some((Mode::Defer, Rule::LoadHigh, self.load_high_reason(sample)));
                }
            }
            Mode::Defer => {
                if s.load_low.reached(c.defer.exit_after_ms) {
                    let pps = sample.packets().unwrap_or(f64::NAN);
                    return Some((
                        Mode::Interrupt,
                        Rule::LoadLow,
                        format!(
                            "packets {pps:.0}/s <= {}/s {} without busy polling",
                            c.defer.exit_packets_per_sec,
                            s.load_low.describe()
                        ),
                    ));
                }
                if s.blind.reached(fallback_ms) {
                    return Some((
                        Mode::Interrupt,
                        Rule::MissingSignal,
                        format!(
                            "no packet rate {}: back to the kernel default",
                            s.blind.describe()
                        ),
                    ));
                }
            }
            Mode::Suspend => {
                if s.busy_stopped.reached(c.suspend.exit_after_ms) {
                    let (to, load) = self.after_suspend(sample);
                    return Some((
                        to,
                        Rule::BusyPollingStopped,
                        format!(
                            "busy polling stopped {}: {}; {load}",
                            s.busy_stopped.describe(),
                            self.busy_numbers(sample)
                        ),
                    ));
                }
                if s.blind.reached(fallback_ms) {
                    let (to, load) = self.after_suspend(sample);
                    return Some((
                        to,
                        Rule::MissingSignal,
                        format!(
                            "no busy-poll signal (BusyPollRxPackets or AF_XDP busy polling) {}; \
                             {load}",
                            s.blind.describe()
                        ),
                    ));
                }
            }
        }
        None
    }

    /// Where to go from Suspend: Defer while the load still warrants deferral, else
    /// Interrupt; and the words for it.
    fn after_suspend(&self, sample: &Sample) -> (Mode, String) {
        let exit = self.policy.config.defer.exit_packets_per_sec;
        match sample.packets() {
            Some(p) if p > exit as f64 => (
                Mode::Defer,
                format!("packets {p:.0}/s > {exit}/s keep deferral"),
            ),
            Some(p) => (Mode::Interrupt, format!("packets {p:.0}/s <= {exit}/s")),
            None => (
                Mode::Interrupt,
                "packet rate unknown: back to the kernel default".into(),
            ),
        }
    }

    fn load_high_reason(&self, sample: &Sample) -> String {
        let d = &self.policy.config.defer;
        let pps = sample.packets().unwrap_or(f64::NAN);
        let wakeups = match sample.wakeups() {
            Some((w, source)) => format!(
                "wake-ups {w:.0}/s ({source}) >= {}/s",
                d.enter_wakeups_per_sec
            ),
            None => "no wake-up signal".into(),
        };
        let per_poll = sample
            .packets_per_poll()
            .map(|p| format!("; {p:.1} packets per poll"))
            .unwrap_or_default();
        format!(
            "packets {pps:.0}/s >= {}/s and {wakeups} {}{per_poll}",
            d.enter_packets_per_sec,
            self.streaks.load_high.describe()
        )
    }

    fn busy_numbers(&self, sample: &Sample) -> String {
        let mut parts = Vec::new();
        if let Some(b) = sample.busy_polled() {
            let s = &self.policy.config.suspend;
            parts.push(format!(
                "busy-polled packets {b:.0}/s (enter >= {}/s, exit <= {}/s)",
                s.enter_busy_poll_packets_per_sec, s.exit_busy_poll_packets_per_sec
            ));
        }
        match sample.xsk_busy_poll {
            Some(true) => parts.push("an AF_XDP socket busy-polls".into()),
            Some(false) => parts.push("no AF_XDP busy polling".into()),
            None => {}
        }
        match sample.preloaded_busy_pollers.as_slice() {
            [] => {}
            [one] => parts.push(format!("preloaded busy-polling process {one} (netmit run)")),
            many => parts.push(format!(
                "{} preloaded busy-polling processes (netmit run: {})",
                many.len(),
                many.join(", ")
            )),
        }
        if parts.is_empty() {
            parts.push("no busy-poll signal".into());
        }
        parts.join(", ")
    }

    /// Busy polling active: an AF_XDP socket busy-polls, or the busy-polled packet rate
    /// reaches the enter threshold. `None` when neither signal says so and the rate is
    /// missing.
    fn busy_active(&self, sample: &Sample) -> Option<bool> {
        if sample.xsk_busy_poll == Some(true) {
            return Some(true);
        }
        let enter = self.policy.config.suspend.enter_busy_poll_packets_per_sec as f64;
        sample.busy_polled().map(|b| b >= enter)
    }

    /// Busy polling stopped: no AF_XDP busy polling and the busy-polled packet rate at or
    /// below the exit threshold. `None` when the rate is missing (an explicit "no AF_XDP
    /// busy polling" says nothing about epoll busy polling).
    fn busy_stopped(&self, sample: &Sample) -> Option<bool> {
        if sample.xsk_busy_poll == Some(true) {
            return Some(false);
        }
        let exit = self.policy.config.suspend.exit_busy_poll_packets_per_sec as f64;
        sample.busy_polled().map(|b| b <= exit)
    }

    fn enforce_ceiling(&mut self) -> Option<Decision> {
        let ceiling = self.ceiling();
        if self.mode <= ceiling {
            return None;
        }
        let reason = format!(
            "{} is not allowed here: the ceiling is {ceiling} (max_mode {}, capabilities \
             allow up to {})",
            self.mode,
            self.policy.config.max_mode,
            self.capabilities.max_mode()
        );
        Some(self.switch(ceiling, Rule::Ceiling, reason))
    }

    fn switch(&mut self, to: Mode, rule: Rule, reason: String) -> Decision {
        let from = self.mode;
        self.mode = to;
        self.since_switch = Some(Duration::ZERO);
        self.streaks = Streaks::default();
        // A switch into a more mitigating mode on the load is a trial; taking one back,
        // or obeying the ceiling, is not.
        let judged = !matches!(rule, Rule::Ceiling | Rule::LoadFell | Rule::NoBatching);
        self.trial = (self.policy.config.effect.enabled && to > from && judged).then(|| Trial {
            from,
            to,
            before: self.recent.window(),
            after: Default::default(),
        });
        self.recent.clear();
        Decision::Switch {
            from,
            to,
            rule,
            reason,
        }
    }
}

#[cfg(test)]
mod tests;
