//! Repeated refusals, audited once per place and window and counted in between.
//!
//! A caller that retries a throttled request at once can send thousands of refusals a
//! second. Writing each as its own durable event would let that flood take the audit
//! log's commits from every legitimate token request (issue 15: client_credentials p99
//! 10 → 76 ms under a 200-caller flood). So the first refusal of a kind from one place
//! (event type, reason, client, address prefix) is committed before its answer, as any
//! event is; the repeats within [`Repeats::window`] are only counted, and one summary
//! event per place (the first event's fields, `detail.repeated` = the count,
//! `detail.first_event` = its id) is committed when the window closes, or at shutdown.
//! A crash loses at most one window's count, never the first event.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use mayfly_store::AuditEvent;
use uuid::Uuid;

/// Most places counted at once; a flood of new places beyond it shares one bucket per
/// event type, so memory stays bounded and no count is dropped.
const MAX_PLACES: usize = 10_000;

/// The bucket of one place.
#[derive(Debug)]
struct Bucket {
    first: AuditEvent,
    opened: Instant,
    repeated: u64,
    last: time::OffsetDateTime,
}

/// Counts of repeated refusals not yet written.
#[derive(Debug)]
pub(super) struct Repeats {
    window: Duration,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// What to do with an event [`Repeats::note`] saw.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Noted {
    /// The first of its place in this window: commit it.
    First,
    /// Counted; its summary is committed when the window closes.
    Counted,
}

impl Repeats {
    pub(super) fn new(window: Duration) -> Self {
        Self {
            window,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// How often the summaries should be looked for.
    pub(super) fn tick(&self) -> Duration {
        (self.window / 4).clamp(Duration::from_millis(10), Duration::from_secs(1))
    }

    /// Counts `event` under `place` unless it opens the place's window.
    pub(super) fn note(&self, place: String, event: &AuditEvent) -> Noted {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let place = if buckets.len() >= MAX_PLACES && !buckets.contains_key(&place) {
            format!("{}|*", event.event_type)
        } else {
            place
        };
        match buckets.get_mut(&place) {
            Some(bucket) => {
                bucket.repeated += 1;
                bucket.last = event.occurred_at;
                metrics::counter!("mayfly_audit_repeats_total").increment(1);
                Noted::Counted
            }
            None => {
                buckets.insert(
                    place,
                    Bucket {
                        first: event.clone(),
                        opened: Instant::now(),
                        repeated: 0,
                        last: event.occurred_at,
                    },
                );
                Noted::First
            }
        }
    }

    /// Closes the windows that have ended (all of them when `all`): the summaries of
    /// those that counted repeats, with their places, to be committed.
    pub(super) fn close(&self, all: bool) -> Vec<(String, AuditEvent, u64)> {
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let ended: Vec<String> = buckets
            .iter()
            .filter(|(_, b)| all || now.duration_since(b.opened) >= self.window)
            .map(|(place, _)| place.clone())
            .collect();
        ended
            .into_iter()
            .filter_map(|place| {
                let bucket = buckets.remove(&place)?;
                (bucket.repeated > 0).then(|| {
                    let summary = summary(&bucket);
                    (place, summary, bucket.repeated)
                })
            })
            .collect()
    }

    /// Puts back the count of a summary that could not be committed, so it is retried.
    pub(super) fn restore(&self, place: String, summary: AuditEvent, repeated: u64) {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        match buckets.get_mut(&place) {
            Some(bucket) => bucket.repeated += repeated,
            None => {
                let first = summary;
                buckets.insert(
                    place,
                    Bucket {
                        last: first.occurred_at,
                        first,
                        // Already closed: retried at the next tick.
                        opened: Instant::now()
                            .checked_sub(self.window)
                            .unwrap_or_else(Instant::now),
                        repeated,
                    },
                );
            }
        }
    }
}

/// The event that stands for a bucket's repeats.
fn summary(bucket: &Bucket) -> AuditEvent {
    let mut event = bucket.first.clone();
    event.id = Uuid::now_v7();
    event.occurred_at = bucket.last;
    let mut detail = match std::mem::take(&mut event.detail) {
        serde_json::Value::Object(map) => map,
        _ => serde_json::Map::new(),
    };
    detail.insert("repeated".into(), bucket.repeated.into());
    detail.insert("first_event".into(), bucket.first.id.to_string().into());
    event.detail = serde_json::Value::Object(detail);
    event
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn refusal() -> AuditEvent {
        crate::audit::event(
            "token.denied",
            "denied",
            time::OffsetDateTime::UNIX_EPOCH,
            &Default::default(),
        )
    }

    #[test]
    fn the_first_opens_the_window_and_the_rest_are_counted() {
        let repeats = Repeats::new(Duration::from_secs(3600));
        let first = refusal();
        assert_eq!(repeats.note("a".into(), &first), Noted::First);
        for _ in 0..9 {
            assert_eq!(repeats.note("a".into(), &refusal()), Noted::Counted);
        }
        assert_eq!(repeats.note("b".into(), &refusal()), Noted::First);
        assert!(repeats.close(false).is_empty(), "the window is still open");
        let mut closed = repeats.close(true);
        assert_eq!(closed.len(), 1, "b counted no repeat: no summary");
        let (place, summary, repeated) = closed.pop().unwrap();
        assert_eq!((place.as_str(), repeated), ("a", 9));
        assert_eq!(summary.detail["repeated"], 9);
        assert_eq!(summary.detail["first_event"], first.id.to_string());
        assert_ne!(summary.id, first.id);
        assert_eq!(repeats.note("a".into(), &refusal()), Noted::First);
    }

    #[test]
    fn a_summary_not_committed_is_kept_for_the_next_tick() {
        let repeats = Repeats::new(Duration::from_secs(3600));
        repeats.note("a".into(), &refusal());
        repeats.note("a".into(), &refusal());
        let (place, summary, repeated) = repeats.close(true).pop().unwrap();
        repeats.restore(place, summary, repeated);
        let (_, summary, repeated) = repeats.close(false).pop().unwrap();
        assert_eq!(
            (repeated, summary.detail["repeated"].as_u64()),
            (1, Some(1))
        );
    }

    #[test]
    fn a_flood_of_places_stays_bounded_and_keeps_every_count() {
        let repeats = Repeats::new(Duration::from_secs(3600));
        for i in 0..MAX_PLACES + 500 {
            repeats.note(format!("place {i}"), &refusal());
        }
        let buckets = repeats.buckets.lock().unwrap().len();
        assert_eq!(buckets, MAX_PLACES + 1);
        let overflow: u64 = repeats.close(true).iter().map(|(_, _, n)| n).sum();
        assert_eq!(
            overflow, 499,
            "the first overflow event is committed, 499 counted"
        );
    }
}
