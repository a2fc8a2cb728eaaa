//! Client-side pacing for one API account (a DingTalk app), shared by every sender task of a
//! process: calls per API are spaced to at most `max_qps`, and when the server says "too fast"
//! the pace halves and pauses, then climbs back one call per second per second of success
//! (additive increase, multiplicative decrease, as TCP does). The calls already under way when
//! the server first objects are answered "too fast" together: they halve the pace once, not
//! once each.
//!
//! [`FleetPacer`] keeps every process of a deployment together under the same limit, with
//! counters in the store; [`Pacer`] keeps one process from overrunning it on its own and backs
//! off when the server objects.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tracing::warn;

use crate::event::now_ms;
use crate::store::RateStore;

/// The slowest pace a throttle can push an API to.
const MIN_QPS: f64 = 1.0;
/// The longest a call waits for its slot. A later slot (after an IP ban, or with many senders
/// queued at a slow pace) is not waited for in place: the delivery is parked instead, so no
/// function sleeps through its timeout and no worker is held.
pub const MAX_SLEEP: Duration = Duration::from_secs(2);

struct Lane {
    /// When the next call may start.
    next: Instant,
    qps: f64,
    /// Further "too fast" answers before this time belong to the same overload.
    calm_until: Instant,
}

pub struct Pacer {
    max_qps: f64,
    lanes: Mutex<HashMap<&'static str, Lane>>,
}

impl Pacer {
    pub fn new(max_qps: u32) -> Self {
        Pacer {
            max_qps: f64::from(max_qps.max(1)),
            lanes: Mutex::default(),
        }
    }

    fn lane<T>(&self, api: &'static str, f: impl FnOnce(&mut Lane, Instant) -> T) -> T {
        let now = Instant::now();
        let mut lanes = self.lanes.lock().unwrap_or_else(|e| e.into_inner());
        let lane = lanes.entry(api).or_insert(Lane {
            next: now,
            qps: self.max_qps,
            calm_until: now,
        });
        f(lane, now)
    }

    /// Waits for this call's slot, or says how long until the API takes calls again when that
    /// is more than [`MAX_SLEEP`] away (then no slot is taken).
    pub async fn wait(&self, api: &'static str) -> Result<(), Duration> {
        let slot = self.lane(api, |lane, now| {
            let slot = lane.next.max(now);
            if slot - now > MAX_SLEEP {
                return Err(slot - now);
            }
            lane.next = slot + Duration::from_secs_f64(1.0 / lane.qps);
            Ok(slot)
        })?;
        tokio::time::sleep_until(slot).await;
        Ok(())
    }

    /// The server said "too fast": halve the pace (once per overload) and hold every call to
    /// `api` for `pause`.
    pub fn throttled(&self, api: &'static str, pause: Duration) {
        self.lane(api, |lane, now| {
            if now >= lane.calm_until {
                lane.qps = (lane.qps / 2.0).max(MIN_QPS);
                lane.calm_until = now + pause.max(Duration::from_secs(1));
            }
            lane.next = lane.next.max(now + pause);
        });
    }

    /// A call went through: speed up by one call per second over about a second of calls.
    pub fn succeeded(&self, api: &'static str) {
        let max = self.max_qps;
        self.lane(api, |lane, _| {
            lane.qps = (lane.qps + 1.0 / lane.qps).min(max)
        });
    }

    /// The current pace of `api`, in calls per second.
    pub fn qps(&self, api: &'static str) -> f64 {
        self.lane(api, |lane, _| lane.qps)
    }
}

/// Fleet windows: calls are counted per 250 ms window, at most a fifth of the per-second limit
/// in each, so that any second, however it falls on the windows (it touches five), holds no
/// more than the limit: 20 QPS becomes 4 per window, 16 a second on average, never 21.
pub const FLEET_WINDOW_MS: i64 = 250;

pub struct FleetPacer {
    rates: Arc<dyn RateStore>,
    /// The account the limit is for, e.g. `dingtalk#<app_key>`.
    name: String,
    per_window: u32,
}

impl FleetPacer {
    pub fn new(rates: Arc<dyn RateStore>, name: String, max_qps: u32) -> Self {
        FleetPacer {
            rates,
            name,
            per_window: (max_qps / 5).max(1),
        }
    }

    /// Takes a place for a call to `api` in the fleet's current window, waiting for the next
    /// windows up to [`MAX_SLEEP`]; beyond that, how long to hold the call. A store that does
    /// not answer costs the fleet-wide pace, never the call: the process's own pace and the
    /// server's "too fast" still hold.
    pub async fn take(&self, api: &str) -> Result<(), Duration> {
        let name = format!("{}#{api}", self.name);
        let start = now_ms();
        loop {
            let now = now_ms();
            let window = now / FLEET_WINDOW_MS;
            match self.rates.take_slot(&name, window, self.per_window).await {
                Ok(true) if now_ms() / FLEET_WINDOW_MS == window => return Ok(()),
                // Granted after its window ended (a slow store): sent now, the call would crowd
                // the next window, so the place is left unused and the current one taken.
                Ok(true) if now_ms() - start <= MAX_SLEEP.as_millis() as i64 => continue,
                Ok(true) => return Err(Duration::from_millis(FLEET_WINDOW_MS as u64)),
                Ok(false) => {}
                Err(e) => {
                    warn!(error = %e, api, "fleet-wide pacing unavailable; pacing this process only");
                    return Ok(());
                }
            }
            let next = (window + 1) * FLEET_WINDOW_MS;
            let waited = Duration::from_millis(u64::try_from(next - start).unwrap_or(0));
            if waited > MAX_SLEEP {
                return Err(Duration::from_millis(FLEET_WINDOW_MS as u64));
            }
            tokio::time::sleep(Duration::from_millis(
                u64::try_from(next - now_ms()).unwrap_or(0),
            ))
            .await;
        }
    }
}

/// How one API account's calls are kept under its per-second limit across the senders of a
/// deployment.
pub enum Fleet {
    /// This process is the only sender (the stack runs the function one instance at a time):
    /// a window of its own per API is the fleet's, and costs no write.
    Alone(PerRecipient),
    /// Several senders at once: each call takes a place in a window counted in the store.
    Shared(FleetPacer),
}

impl Fleet {
    /// `senders`: how many processes may call at once (1: this one alone).
    pub fn new(senders: u32, rates: Arc<dyn RateStore>, name: String, max_qps: u32) -> Self {
        if senders <= 1 {
            Fleet::Alone(RateWindow::per_second(max_qps).per_recipient())
        } else {
            Fleet::Shared(FleetPacer::new(rates, name, max_qps))
        }
    }

    /// Takes a place for a call to `api`, waiting up to [`MAX_SLEEP`]; beyond that, how long
    /// to hold the call.
    pub async fn take(&self, api: &str) -> Result<(), Duration> {
        match self {
            Fleet::Alone(apis) => apis.wait(&[api.to_owned()]).await,
            Fleet::Shared(pacer) => pacer.take(api).await,
        }
    }
}

/// Windows of calls per process: at most so many in any minute (and, where the system says
/// so, in any second or hour), a group robot's limits; its sender runs one instance at a time,
/// so these are the limits fleet-wide. Each window is a little longer than the system's: a
/// call is counted here when it leaves and there when it arrives, by unequal delays, so a
/// window of exactly the system's length lets the last call of one arrive inside the next.
/// A system's second, minute and hour as these windows count them.
const SECOND: Duration = Duration::from_millis(1200);
const MINUTE: Duration = Duration::from_secs(61);
const HOUR: Duration = Duration::from_secs(3601);

pub struct RateWindow {
    /// `(calls, period)`, each of which must hold.
    limits: Vec<(usize, Duration)>,
    /// When the calls of the longest period were made, oldest first.
    sent: Mutex<VecDeque<Instant>>,
}

impl RateWindow {
    /// At most `per_minute` calls in any 60 s.
    pub fn per_minute(per_minute: u32) -> Self {
        RateWindow {
            limits: vec![(per_minute.max(1) as usize, MINUTE)],
            sent: Mutex::default(),
        }
    }

    /// At most `per_second` calls in any second.
    pub fn per_second(per_second: u32) -> Self {
        RateWindow {
            limits: vec![(per_second.max(1) as usize, SECOND)],
            sent: Mutex::default(),
        }
    }

    /// And at most `per_second` in any second.
    pub fn and_per_second(self, per_second: u32) -> Self {
        self.and(per_second, SECOND)
    }

    /// And at most `per_hour` in any hour.
    pub fn and_per_hour(self, per_hour: u32) -> Self {
        self.and(per_hour, HOUR)
    }

    fn and(mut self, calls: u32, period: Duration) -> Self {
        self.limits.push((calls.max(1) as usize, period));
        self
    }

    /// The same windows kept for each recipient apart: a platform's limit on messages to one
    /// person.
    pub fn per_recipient(self) -> PerRecipient {
        PerRecipient {
            limits: self.limits,
            sent: Mutex::default(),
        }
    }

    /// Takes a place in every window, or says how long until each has one.
    pub fn take(&self) -> Result<(), Duration> {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let wait = room(&self.limits, &mut sent, now);
        if wait > Duration::ZERO {
            return Err(wait);
        }
        sent.push_back(now);
        Ok(())
    }
}

/// How long until `sent` has a place in every window of `limits` (zero: now), forgetting the
/// calls older than the longest window.
fn room(limits: &[(usize, Duration)], sent: &mut VecDeque<Instant>, now: Instant) -> Duration {
    let longest = limits.iter().map(|l| l.1).max().unwrap_or_default();
    while sent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= longest)
    {
        sent.pop_front();
    }
    let mut wait = Duration::ZERO;
    for &(limit, period) in limits {
        let within = sent
            .iter()
            .rev()
            .take_while(|t| now.duration_since(**t) < period)
            .count();
        if within >= limit {
            // The call that must leave this period before another fits in it.
            let leaving = sent[sent.len() - limit];
            wait = wait.max(period - now.duration_since(leaving));
        }
    }
    wait
}

/// [`RateWindow`]s per recipient, in one process (see [`RateWindow::per_recipient`]).
pub struct PerRecipient {
    limits: Vec<(usize, Duration)>,
    sent: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl PerRecipient {
    /// Takes a place for each of `people`, or for none of them and says how long until all
    /// have one.
    pub fn take(&self, people: &[String]) -> Result<(), Duration> {
        let now = Instant::now();
        let mut sent = self.sent.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait = Duration::ZERO;
        for p in people {
            if let Some(times) = sent.get_mut(p) {
                wait = wait.max(room(&self.limits, times, now));
            }
        }
        if wait > Duration::ZERO {
            return Err(wait);
        }
        for p in people {
            sent.entry(p.clone()).or_default().push_back(now);
        }
        // People not written to for the longest window leave the map, so it holds only the
        // recent ones however many are written to over time.
        if sent.len() > 1024 {
            let longest = self.limits.iter().map(|l| l.1).max().unwrap_or_default();
            sent.retain(|_, t| t.back().is_some_and(|t| now.duration_since(*t) < longest));
        }
        Ok(())
    }

    /// Takes places for `people`, waiting for them when that is at most [`MAX_SLEEP`]; else
    /// says how long until they have them (then none is taken).
    pub async fn wait(&self, people: &[String]) -> Result<(), Duration> {
        loop {
            match self.take(people) {
                Err(wait) if wait <= MAX_SLEEP => tokio::time::sleep(wait).await,
                taken => return taken,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::StoreError;

    #[tokio::test(start_paused = true)]
    async fn throttles_halve_the_pace_once_per_overload_and_successes_win_it_back() {
        let p = Pacer::new(20);
        assert_eq!(p.qps("a"), 20.0);
        p.throttled("a", Duration::ZERO);
        p.throttled("a", Duration::ZERO);
        assert_eq!(
            p.qps("a"),
            10.0,
            "answers to calls already under way count once"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        p.throttled("a", Duration::ZERO);
        assert_eq!(p.qps("a"), 5.0);
        assert_eq!(p.qps("b"), 20.0, "each API has its own pace");
        let mut calls = 0;
        while p.qps("a") < 10.0 {
            p.succeeded("a");
            calls += 1;
        }
        assert!((30..45).contains(&calls), "{calls}");
        for _ in 0..1000 {
            p.succeeded("a");
        }
        assert_eq!(p.qps("a"), 20.0, "never above the configured pace");
        for _ in 0..10 {
            tokio::time::advance(Duration::from_secs(1)).await;
            p.throttled("a", Duration::ZERO);
        }
        assert_eq!(p.qps("a"), MIN_QPS);
    }

    #[tokio::test(start_paused = true)]
    async fn calls_are_spaced_and_a_throttle_pauses_them() {
        let p = Pacer::new(10);
        let start = Instant::now();
        for _ in 0..5 {
            p.wait("a").await.unwrap();
        }
        assert_eq!(start.elapsed(), Duration::from_millis(400));
        p.throttled("a", Duration::from_secs(1));
        p.wait("a").await.unwrap();
        assert_eq!(start.elapsed(), Duration::from_millis(1400));
        p.wait("a").await.unwrap();
        assert_eq!(
            start.elapsed(),
            Duration::from_millis(1600),
            "then at half the pace"
        );
        p.throttled("a", Duration::from_secs(300));
        let held = p.wait("a").await.unwrap_err();
        assert!(held > Duration::from_secs(299), "{held:?}");
        assert_eq!(start.elapsed(), Duration::from_millis(1600), "not slept");
    }

    /// A store that answers its first request only after that request's window has ended.
    struct Slow(Mutex<Vec<i64>>);

    #[async_trait::async_trait]
    impl RateStore for Slow {
        async fn take_slot(&self, _: &str, window: i64, _: u32) -> Result<bool, StoreError> {
            let first = {
                let mut asked = self.0.lock().unwrap();
                asked.push(window);
                asked.len() == 1
            };
            if first {
                let end = (window + 1) * FLEET_WINDOW_MS;
                tokio::time::sleep(Duration::from_millis((end - now_ms() + 10) as u64)).await;
            }
            Ok(true)
        }
        async fn advance(&self, _: &str, _: i64) -> Result<bool, StoreError> {
            unreachable!("the pacer takes no marks")
        }
    }

    #[tokio::test]
    async fn a_place_granted_after_its_window_ended_is_not_used() {
        let store = Arc::new(Slow(Mutex::default()));
        let fleet = FleetPacer::new(store.clone(), "dingtalk#k".into(), 20);
        assert_eq!(fleet.take("send").await, Ok(()));
        let asked = store.0.lock().unwrap().clone();
        assert!(asked.len() >= 2, "{asked:?}");
        assert!(
            asked[1] > asked[0],
            "the place is taken again, in a later window: {asked:?}"
        );
    }

    #[test]
    fn the_window_holds_the_21st_message_of_a_minute() {
        let w = RateWindow::per_minute(20);
        for _ in 0..20 {
            assert!(w.take().is_ok());
        }
        let wait = w.take().unwrap_err();
        assert!(wait > Duration::from_secs(60) && wait <= MINUTE, "{wait:?}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_second_window_holds_the_sixth_call_of_a_second_and_the_minute_still_counts() {
        let w = RateWindow::per_minute(7).and_per_second(5);
        for _ in 0..5 {
            assert!(w.take().is_ok());
        }
        let wait = w.take().unwrap_err();
        assert!(wait == SECOND, "{wait:?}");
        tokio::time::advance(SECOND).await;
        assert!(w.take().is_ok() && w.take().is_ok(), "a new second");
        let wait = w.take().unwrap_err();
        assert!(
            wait > Duration::from_secs(58),
            "the minute is full: {wait:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn each_recipient_has_a_window_and_a_send_takes_places_for_all_or_none() {
        let w = RateWindow::per_minute(2).and_per_hour(3).per_recipient();
        let (a, b) = (["a".to_owned()], ["b".to_owned()]);
        assert!(w.take(&a).is_ok());
        assert!(w.take(&[a[0].clone(), b[0].clone()]).is_ok());
        let wait = w.take(&[b[0].clone(), a[0].clone()]).unwrap_err();
        assert!(
            wait > Duration::from_secs(59),
            "a's minute is full: {wait:?}"
        );
        assert!(
            w.take(&b).is_ok(),
            "b kept its place: the refused send took none"
        );
        tokio::time::advance(MINUTE).await;
        assert!(w.take(&a).is_ok());
        let wait = w.take(&a).unwrap_err();
        assert!(
            wait > Duration::from_secs(3500),
            "a's hour is full: {wait:?}"
        );
        assert!(w.take(&["c".to_owned()]).is_ok(), "others are not held");

        let w = RateWindow::per_second(1).per_recipient();
        assert!(w.wait(&b).await.is_ok());
        let before = Instant::now();
        assert!(w.wait(&b).await.is_ok(), "a short wait is waited");
        assert!(Instant::now() - before >= Duration::from_secs(1));
    }
}
