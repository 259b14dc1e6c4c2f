//! The worker's Prometheus metrics. Handles are cheap clones of shared atomics; the registry is
//! only read by `GET /metrics`.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::info::Info;
use prometheus_client::registry::Registry;

/// Why a snapshot was not applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IgnoreReason {
    /// Its generation is not newer than the applied one.
    Stale,
    /// It could not be converted into a valid desired state.
    Invalid,
}

impl IgnoreReason {
    pub fn as_str(self) -> &'static str {
        match self {
            IgnoreReason::Stale => "stale",
            IgnoreReason::Invalid => "invalid",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct IgnoredLabels {
    reason: &'static str,
}

#[derive(Debug, Clone)]
pub struct Metrics {
    generation: Gauge<u64, AtomicU64>,
    connected: Gauge,
    applied: Counter,
    ignored: Family<IgnoredLabels, Counter>,
    reconnects: Counter,
    paths: Gauge,
}

impl Metrics {
    /// Creates the metrics and registers them, with `streamplane_worker_info{version,name}`.
    pub fn register(registry: &mut Registry, version: &str, name: &str) -> Self {
        let metrics = Metrics {
            generation: Gauge::default(),
            connected: Gauge::default(),
            applied: Counter::default(),
            ignored: Family::default(),
            reconnects: Counter::default(),
            paths: Gauge::default(),
        };
        registry.register(
            "streamplane_worker",
            "Worker version and name",
            Info::new(vec![
                ("version".to_string(), version.to_string()),
                ("name".to_string(), name.to_string()),
            ]),
        );
        registry.register(
            "streamplane_worker_desired_state_generation",
            "Generation of the applied desired state (0: none yet)",
            metrics.generation.clone(),
        );
        registry.register(
            "streamplane_worker_control_plane_connected",
            "1 while a session with the control plane is established",
            metrics.connected.clone(),
        );
        registry.register(
            "streamplane_worker_snapshots_applied",
            "Desired-state snapshots applied",
            metrics.applied.clone(),
        );
        registry.register(
            "streamplane_worker_snapshots_ignored",
            "Desired-state snapshots not applied, by reason",
            metrics.ignored.clone(),
        );
        // Both reasons show from the start, so rate() works before the first one happens.
        for reason in [IgnoreReason::Stale, IgnoreReason::Invalid] {
            drop(metrics.ignored.get_or_create(&IgnoredLabels {
                reason: reason.as_str(),
            }));
        }
        registry.register(
            "streamplane_worker_reconnects",
            "Connection attempts to the control plane after a failure",
            metrics.reconnects.clone(),
        );
        registry.register(
            "streamplane_worker_paths",
            "Path rules in the applied desired state",
            metrics.paths.clone(),
        );
        metrics
    }

    /// A snapshot was applied.
    pub fn applied(&self, generation: u64, paths: usize) {
        self.set_state(generation, paths);
        self.applied.inc();
    }

    /// The state in force, without counting an applied snapshot (the built-in initial state).
    pub fn set_state(&self, generation: u64, paths: usize) {
        self.generation.set(generation);
        self.paths.set(i64::try_from(paths).unwrap_or(i64::MAX));
    }

    pub fn ignored(&self, reason: IgnoreReason) {
        self.ignored
            .get_or_create(&IgnoredLabels {
                reason: reason.as_str(),
            })
            .inc();
    }

    pub fn set_connected(&self, connected: bool) {
        self.connected.set(i64::from(connected));
    }

    pub fn reconnecting(&self) {
        self.reconnects.inc();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn exposes_every_metric_by_name() {
        let mut registry = Registry::default();
        let m = Metrics::register(&mut registry, "1.2.3", "edge-1");
        m.applied(7, 3);
        m.ignored(IgnoreReason::Stale);
        m.set_connected(true);
        m.reconnecting();
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "streamplane_worker_info{version=\"1.2.3\",name=\"edge-1\"} 1",
            "streamplane_worker_desired_state_generation 7",
            "streamplane_worker_control_plane_connected 1",
            "streamplane_worker_snapshots_applied_total 1",
            "streamplane_worker_snapshots_ignored_total{reason=\"stale\"} 1",
            "streamplane_worker_snapshots_ignored_total{reason=\"invalid\"} 0",
            "streamplane_worker_reconnects_total 1",
            "streamplane_worker_paths 3",
        ] {
            assert!(text.contains(line), "missing {line:?} in:\n{text}");
        }
    }
}
