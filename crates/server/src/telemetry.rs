//! Logging setup: text for people, JSON for machines. `RUST_LOG` overrides the filter.
//! Metrics: the Prometheus recorder, its upkeep, and handles registered once for the
//! metrics every request updates.

use std::sync::{OnceLock, PoisonError, RwLock};
use std::time::Duration;

use metrics::Counter;
use tokio::task::JoinHandle;
use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

/// Installs the global subscriber, writing to stderr (stdout is for command output).
pub fn init(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) is harmless: keep the first subscriber.
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
}

/// The Prometheus recorder's handle. The recorder is process-wide (the `metrics` facade
/// has one global recorder); it is installed on first use.
pub fn metrics() -> &'static metrics_exporter_prometheus::PrometheusHandle {
    static HANDLE: std::sync::OnceLock<metrics_exporter_prometheus::PrometheusHandle> =
        std::sync::OnceLock::new();
    HANDLE.get_or_init(|| {
        // Latency buckets from 100 µs to 5 s.
        const BUCKETS: &[f64] = &[
            0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
            2.5, 5.0,
        ];
        let builder = metrics_exporter_prometheus::PrometheusBuilder::new();
        let builder = builder
            .set_buckets_for_metric(
                metrics_exporter_prometheus::Matcher::Suffix("_seconds".into()),
                BUCKETS,
            )
            .and_then(|b| {
                b.set_buckets_for_metric(
                    metrics_exporter_prometheus::Matcher::Full("mayfly_audit_batch_size".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0],
                )
            })
            .unwrap_or_else(|_| metrics_exporter_prometheus::PrometheusBuilder::new());
        let recorder = builder.build_recorder();
        let handle = recorder.handle();
        // Only the first recorder of a process is installed (tests start many services).
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// How often histogram samples are folded into their buckets: the exporter's own default.
const UPKEEP_EVERY: Duration = Duration::from_secs(5);

/// Folds recorded histogram samples into their buckets every few seconds. The recorder
/// keeps each sample until then: without upkeep, a service nobody scrapes would hold
/// every request's latency sample in memory forever.
pub fn spawn_metrics_upkeep() -> JoinHandle<()> {
    let handle = metrics();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(UPKEEP_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            handle.run_upkeep();
        }
    })
}

/// Counters of one name and one label, registered once per label value. The `metrics`
/// macros copy their key and look it up on every call (an allocation each), which is
/// too dear for a counter every request updates. Meant for a few label values.
#[derive(Debug)]
pub struct CounterFamily {
    name: &'static str,
    label: &'static str,
    handles: RwLock<Vec<(&'static str, Counter)>>,
}

impl CounterFamily {
    /// The counters `name{label="…"}`.
    pub const fn new(name: &'static str, label: &'static str) -> Self {
        Self {
            name,
            label,
            handles: RwLock::new(Vec::new()),
        }
    }

    /// The counter whose label is `value`.
    pub fn get(&self, value: &'static str) -> Counter {
        let found = |handles: &[(&'static str, Counter)]| {
            handles
                .iter()
                .find(|(v, _)| *v == value)
                .map(|(_, c)| c.clone())
        };
        let handles = self.handles.read().unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = found(&handles) {
            return counter;
        }
        drop(handles);
        let mut handles = self.handles.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(counter) = found(&handles) {
            return counter;
        }
        // Registered with the Prometheus recorder, never with the no-op one.
        metrics();
        let counter = metrics::counter!(self.name, self.label => value);
        handles.push((value, counter.clone()));
        counter
    }
}

/// A counter without labels, registered once (see [`CounterFamily`]).
#[derive(Debug)]
pub struct OnceCounter {
    name: &'static str,
    handle: OnceLock<Counter>,
}

impl OnceCounter {
    /// The counter `name`.
    pub const fn new(name: &'static str) -> Self {
        Self {
            name,
            handle: OnceLock::new(),
        }
    }

    /// Its handle.
    pub fn get(&self) -> &Counter {
        self.handle.get_or_init(|| {
            metrics();
            metrics::counter!(self.name)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(name: &str) -> Vec<String> {
        metrics()
            .render()
            .lines()
            .filter(|l| l.starts_with(name))
            .map(str::to_owned)
            .collect()
    }

    #[test]
    fn a_counter_family_counts_each_label_value_apart() {
        static FAMILY: CounterFamily = CounterFamily::new("mayfly_test_family_total", "kind");
        let family = &FAMILY;
        family.get("a").increment(2);
        family.get("b").increment(1);
        family.get("a").increment(1);
        let lines = rendered("mayfly_test_family_total");
        assert!(
            lines.contains(&r#"mayfly_test_family_total{kind="a"} 3"#.to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&r#"mayfly_test_family_total{kind="b"} 1"#.to_owned()),
            "{lines:?}"
        );
    }

    #[test]
    fn a_counter_registered_once_is_the_rendered_one() {
        static ONCE: OnceCounter = OnceCounter::new("mayfly_test_once_total");
        ONCE.get().increment(4);
        ONCE.get().increment(1);
        assert_eq!(
            rendered("mayfly_test_once_total"),
            ["mayfly_test_once_total 5"]
        );
    }
}
