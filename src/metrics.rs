//! What an operator watches and an autoscaler scales on, in the Prometheus/OpenMetrics
//! format of the `prometheus-client` library.
//!
//! Counters and histograms live in one process-wide [`Meters`] that every layer records
//! into (`meters()`); it imports nothing of the crate but WAMP's error URIs, so any layer may
//! use it. Gauges that are a view of current state (sessions, Raft) are read at scrape time
//! by a collector the server registers beside these ([`Exposition`]).
//!
//! Label values are bounded, so no client can grow the series without limit: an error URI
//! that is not one of the router's or the API's own counts as `application_error`, and
//! realms beyond [`MAX_REALM_LABELS`] share the label `_other`.

use std::collections::HashSet;
use std::sync::OnceLock;
use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::wamp::errors;

/// Realms with a label of their own; the rest count under `_other`.
pub const MAX_REALM_LABELS: usize = 256;

/// The label realms beyond [`MAX_REALM_LABELS`] share.
pub const OTHER_REALM: &str = "_other";

/// The outcome of an error URI that is not the router's or the API's own.
pub const APPLICATION_ERROR: &str = "application_error";

/// Error URIs that are outcomes of their own; any other is [`APPLICATION_ERROR`].
const KNOWN_ERRORS: &[&str] = &[
    errors::INVALID_URI,
    errors::NO_SUCH_PROCEDURE,
    errors::PROCEDURE_ALREADY_EXISTS,
    errors::NO_SUCH_REGISTRATION,
    errors::NO_SUCH_SUBSCRIPTION,
    errors::NO_SUCH_SESSION,
    errors::INVALID_ARGUMENT,
    errors::NOT_AUTHORIZED,
    errors::AUTHORIZATION_FAILED,
    errors::AUTHENTICATION_FAILED,
    errors::NO_SUCH_REALM,
    errors::NO_SUCH_ROLE,
    errors::NO_AUTH_METHOD,
    errors::CANCELED,
    errors::TIMEOUT,
    errors::OPTION_NOT_ALLOWED,
    errors::PROTOCOL_VIOLATION,
    errors::RUNTIME_ERROR,
    errors::UNAVAILABLE,
    errors::INVALID_CONFIGURATION,
    errors::NO_SUCH_OBJECT,
    errors::ALREADY_EXISTS,
    errors::DEPENDENT_OBJECTS,
    errors::NOT_STOPPED,
    errors::CANNOT_START,
    errors::CANNOT_STOP,
    errors::ALREADY_RUNNING,
    errors::NO_SUCH_WORKER,
    errors::INVALID_CONFIG,
    errors::FABRIC_NOT_AUTHORIZED,
    errors::LIMIT_EXCEEDED,
    errors::NO_QUORUM,
    errors::NODE_ALREADY_PAIRED,
    errors::NODE_NOT_PAIRED,
    errors::AUTH_INVALID_PARAMETERS,
    errors::AUTH_INVALID_CODE,
    errors::AUTH_EMAIL_FAILURE,
    errors::AUTH_NODE_UNPAIRED,
    errors::AUTH_NO_PENDING_ACTIVATION,
    errors::AUTH_PENDING_ACTIVATION,
    errors::AUTH_REGISTERED_USER_CODE_SENT,
    errors::AUTH_NEW_USER_CODE_SENT,
    errors::AUTH_UNKNOWN_KEY,
    errors::AUTH_RATE_LIMITED,
];

/// The outcome label of an answer that is the error `uri`.
pub fn error_outcome(uri: &str) -> &'static str {
    KNOWN_ERRORS
        .iter()
        .find(|known| **known == uri)
        .copied()
        .unwrap_or(APPLICATION_ERROR)
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealmOutcome {
    pub realm: String,
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RealmLabel {
    pub realm: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PathLabel {
    pub path: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PassLabel {
    /// `arealm`, `webcluster`, `routercluster`.
    pub object: String,
    /// `done` (nothing left to do) or `undone` (a node offline or a step failed).
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthRejected {
    pub reason: String,
}

/// How a call reached its callee, for the latency histogram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CallPath {
    /// Caller and callee on this replica's router (management API calls included).
    Local,
    /// A call to an edge node whose session another replica holds (the peer hop included).
    CrossReplica,
    /// A `remote.*` management call, however it reached the node.
    Remote,
}

impl CallPath {
    /// In the order of their discriminants.
    const ALL: [CallPath; 3] = [CallPath::Local, CallPath::CrossReplica, CallPath::Remote];

    fn label(self) -> &'static str {
        match self {
            CallPath::Local => "local",
            CallPath::CrossReplica => "cross_replica",
            CallPath::Remote => "remote",
        }
    }
}

/// The outcomes of a proposal: answered, refused by the state machine, or failed.
pub const PROPOSAL_OUTCOMES: &[&str] = &[
    "ok",
    "refused",
    "not_leader",
    "no_quorum",
    "timeout",
    "fatal",
];

/// The outcomes of a linearizable read.
pub const READ_OUTCOMES: &[&str] = &["ok", "no_quorum"];

/// Every counter and histogram of the process.
#[derive(Clone)]
pub struct Meters {
    calls: Family<RealmOutcome, Counter>,
    call_seconds: Family<PathLabel, Histogram>,
    publications: Family<RealmOutcome, Counter>,
    events_delivered: Family<RealmLabel, Counter>,
    proposals: Family<OutcomeLabel, Counter>,
    proposal_seconds: Histogram,
    reads: Family<OutcomeLabel, Counter>,
    relay_queued: Gauge,
    relay_sent: Counter,
    relay_dropped: Counter,
    auth_rejected: Family<AuthRejected, Counter>,
    snapshot_bytes: Gauge,
    snapshots_built: Counter,
    snapshots_installed: Counter,
    slow_sessions_dropped: Counter,
    log_lines_lost: Counter,
    orchestration_passes: Family<PassLabel, Counter>,
    orchestration_node_calls: Family<OutcomeLabel, Counter>,
    orchestration_node_call_seconds: Histogram,
    realm_labels: std::sync::Arc<Mutex<HashSet<String>>>,
    /// The series of the hot paths, resolved once: an observation touches no map and
    /// allocates nothing. Indexed like `CallPath`, `PROPOSAL_OUTCOMES`, `READ_OUTCOMES`.
    call_seconds_by_path: Vec<Histogram>,
    proposals_by_outcome: Vec<Counter>,
    reads_by_outcome: Vec<Counter>,
}

/// 100 µs to about 13 s, doubling.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 18)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

/// The process's meters.
pub fn meters() -> &'static Meters {
    static METERS: OnceLock<Meters> = OnceLock::new();
    METERS.get_or_init(Meters::new)
}

impl Meters {
    fn new() -> Meters {
        let mut m = Meters {
            calls: Family::default(),
            call_seconds: Family::new_with_constructor(latency_histogram),
            publications: Family::default(),
            events_delivered: Family::default(),
            proposals: Family::default(),
            proposal_seconds: latency_histogram(),
            reads: Family::default(),
            relay_queued: Gauge::default(),
            relay_sent: Counter::default(),
            relay_dropped: Counter::default(),
            auth_rejected: Family::default(),
            snapshot_bytes: Gauge::default(),
            snapshots_built: Counter::default(),
            snapshots_installed: Counter::default(),
            slow_sessions_dropped: Counter::default(),
            log_lines_lost: Counter::default(),
            orchestration_passes: Family::default(),
            orchestration_node_calls: Family::default(),
            orchestration_node_call_seconds: latency_histogram(),
            realm_labels: Default::default(),
            call_seconds_by_path: Vec::new(),
            proposals_by_outcome: Vec::new(),
            reads_by_outcome: Vec::new(),
        };
        // Every series a dashboard or an alert names exists from the start (at zero), so a
        // query finds it before the first event of its kind.
        m.call_seconds_by_path = CallPath::ALL
            .iter()
            .map(|path| {
                m.call_seconds
                    .get_or_create(&PathLabel {
                        path: path.label().into(),
                    })
                    .clone()
            })
            .collect();
        let outcomes = |family: &Family<OutcomeLabel, Counter>, outcomes: &[&str]| {
            outcomes
                .iter()
                .map(|outcome| {
                    family
                        .get_or_create(&OutcomeLabel {
                            outcome: (*outcome).into(),
                        })
                        .clone()
                })
                .collect::<Vec<Counter>>()
        };
        m.proposals_by_outcome = outcomes(&m.proposals, PROPOSAL_OUTCOMES);
        m.reads_by_outcome = outcomes(&m.reads, READ_OUTCOMES);
        for uri in [errors::NOT_AUTHORIZED, errors::AUTHENTICATION_FAILED] {
            let _ = m
                .auth_rejected
                .get_or_create(&AuthRejected { reason: uri.into() });
        }
        m
    }

    /// The label of realm `name`: its name while fewer than [`MAX_REALM_LABELS`] realms have
    /// one, [`OTHER_REALM`] after. Called once per realm, when it is created.
    pub fn realm_label(&self, name: &str) -> String {
        let mut labels = self.realm_labels.lock();
        if labels.contains(name) {
            return name.to_owned();
        }
        if labels.len() < MAX_REALM_LABELS {
            labels.insert(name.to_owned());
            return name.to_owned();
        }
        OTHER_REALM.to_owned()
    }

    /// The meters of one realm, resolved once so the hot paths touch no map.
    pub fn for_realm(&self, label: &str) -> RealmMeters {
        RealmMeters {
            label: label.to_owned(),
            calls_ok: self
                .calls
                .get_or_create(&RealmOutcome {
                    realm: label.to_owned(),
                    outcome: "ok".into(),
                })
                .clone(),
            publications_ok: self
                .publications
                .get_or_create(&RealmOutcome {
                    realm: label.to_owned(),
                    outcome: "ok".into(),
                })
                .clone(),
            events_delivered: self
                .events_delivered
                .get_or_create(&RealmLabel {
                    realm: label.to_owned(),
                })
                .clone(),
        }
    }

    pub fn observe_call(&self, path: CallPath, took: Duration) {
        self.call_seconds_by_path[path as usize].observe(took.as_secs_f64());
    }

    /// A proposal answered (`ok`), refused by the state machine (`refused`) or failed
    /// (`not_leader`, `no_quorum`, `timeout`, `fatal`: one of [`PROPOSAL_OUTCOMES`]), with
    /// the time it took.
    pub fn observe_proposal(&self, outcome: &'static str, took: Duration) {
        if let Some(i) = PROPOSAL_OUTCOMES.iter().position(|o| *o == outcome) {
            self.proposals_by_outcome[i].inc();
        }
        if outcome == "ok" || outcome == "refused" {
            self.proposal_seconds.observe(took.as_secs_f64());
        }
    }

    /// A linearizable read served (`ok`) or refused for lack of quorum (`no_quorum`).
    pub fn count_read(&self, outcome: &'static str) {
        if let Some(i) = READ_OUTCOMES.iter().position(|o| *o == outcome) {
            self.reads_by_outcome[i].inc();
        }
    }

    pub fn relay_queued(&self) -> &Gauge {
        &self.relay_queued
    }

    pub fn count_relayed(&self, n: u64) {
        self.relay_sent.inc_by(n);
    }

    pub fn count_relay_dropped(&self, n: u64) {
        self.relay_dropped.inc_by(n);
    }

    /// A HELLO refused: `reason` is the ABORT's URI, bounded like any error outcome.
    pub fn count_auth_rejected(&self, uri: &str) {
        self.auth_rejected
            .get_or_create(&AuthRejected {
                reason: error_outcome(uri).into(),
            })
            .inc();
    }

    pub fn snapshot_built(&self, bytes: usize) {
        self.snapshots_built.inc();
        self.snapshot_bytes.set(bytes as i64);
    }

    pub fn snapshot_installed(&self, bytes: usize) {
        self.snapshots_installed.inc();
        self.snapshot_bytes.set(bytes as i64);
    }

    pub fn count_slow_session_dropped(&self) {
        self.slow_sessions_dropped.inc();
    }

    pub fn count_log_line_lost(&self) {
        self.log_lines_lost.inc();
    }

    /// A reconciler pass over `object` (`arealm`, `webcluster`, `routercluster`), `done` or
    /// `undone`.
    pub fn count_orchestration_pass(&self, object: &'static str, done: bool) {
        self.orchestration_passes
            .get_or_create(&PassLabel {
                object: object.into(),
                outcome: if done { "done" } else { "undone" }.into(),
            })
            .inc();
    }

    /// A node call of a reconciler: `ok`, or its error URI (bounded like any error outcome).
    pub fn observe_orchestration_call(&self, error_uri: Option<&str>, took: Duration) {
        let outcome = error_uri.map_or("ok", error_outcome);
        self.orchestration_node_calls
            .get_or_create(&OutcomeLabel {
                outcome: outcome.into(),
            })
            .inc();
        self.orchestration_node_call_seconds
            .observe(took.as_secs_f64());
    }

    /// Registers every meter (sharing its values) in `registry`, under the prefix `fabric`.
    fn register(&self, registry: &mut Registry) {
        let r = registry;
        r.register(
            "calls",
            "CALLs answered, by realm and outcome (ok, or the error URI; application_error for a callee's own)",
            self.calls.clone(),
        );
        r.register(
            "call_duration_seconds",
            "From CALL to its answer: local (callee on this replica), cross_replica (node held by another replica), remote (remote.* management calls)",
            self.call_seconds.clone(),
        );
        r.register(
            "publications",
            "PUBLISHes, by realm and outcome",
            self.publications.clone(),
        );
        r.register(
            "events_delivered",
            "EVENTs sent to this replica's subscribers, by realm",
            self.events_delivered.clone(),
        );
        r.register(
            "raft_proposals",
            "Raft proposals made on this replica, by outcome",
            self.proposals.clone(),
        );
        r.register(
            "raft_proposal_duration_seconds",
            "From proposal to its applied answer (commit latency as a client sees it)",
            self.proposal_seconds.clone(),
        );
        r.register(
            "raft_linearizable_reads",
            "Linearizable reads, by outcome",
            self.reads.clone(),
        );
        r.register(
            "relay_queued_events",
            "Publications waiting to be relayed to the other replicas",
            self.relay_queued.clone(),
        );
        r.register(
            "relay_sent_events",
            "Publications relayed to other replicas",
            self.relay_sent.clone(),
        );
        r.register(
            "relay_dropped_events",
            "Publications not relayed (a replica's queue full or unreachable)",
            self.relay_dropped.clone(),
        );
        r.register(
            "auth_rejected",
            "HELLOs refused, by the ABORT reason",
            self.auth_rejected.clone(),
        );
        r.register(
            "raft_snapshot_bytes",
            "Size of the last snapshot built or installed",
            self.snapshot_bytes.clone(),
        );
        r.register(
            "raft_snapshots_built",
            "Snapshots built by this replica",
            self.snapshots_built.clone(),
        );
        r.register(
            "raft_snapshots_installed",
            "Snapshots installed from the leader",
            self.snapshots_installed.clone(),
        );
        r.register(
            "slow_sessions_dropped",
            "Sessions closed because they did not read what was sent to them",
            self.slow_sessions_dropped.clone(),
        );
        r.register(
            "log_lines_lost",
            "Log lines that could not be written to stderr (a full disk or a closed pipe behind it)",
            self.log_lines_lost.clone(),
        );
        r.register(
            "orchestration_passes",
            "Reconciler passes on the leader, by object kind and outcome (done, undone)",
            self.orchestration_passes.clone(),
        );
        r.register(
            "orchestration_node_calls",
            "Node calls of the reconcilers, by outcome (ok, or the error URI)",
            self.orchestration_node_calls.clone(),
        );
        r.register(
            "orchestration_node_call_seconds",
            "Latency of the reconcilers' node calls",
            self.orchestration_node_call_seconds.clone(),
        );
    }
}

/// The meters of one realm (clones share the values of the process's families).
#[derive(Clone, Debug)]
pub struct RealmMeters {
    label: String,
    calls_ok: Counter,
    publications_ok: Counter,
    events_delivered: Counter,
}

impl RealmMeters {
    pub fn label(&self) -> &str {
        &self.label
    }

    pub fn call_ok(&self) {
        self.calls_ok.inc();
    }

    pub fn call_failed(&self, uri: &str) {
        meters()
            .calls
            .get_or_create(&RealmOutcome {
                realm: self.label.clone(),
                outcome: error_outcome(uri).into(),
            })
            .inc();
    }

    pub fn published(&self) {
        self.publications_ok.inc();
    }

    pub fn publication_refused(&self, uri: &str) {
        meters()
            .publications
            .get_or_create(&RealmOutcome {
                realm: self.label.clone(),
                outcome: error_outcome(uri).into(),
            })
            .inc();
    }

    pub fn delivered(&self, n: u64) {
        if n > 0 {
            self.events_delivered.inc_by(n);
        }
    }
}

/// A `/metrics` page: the process's meters plus the gauges `state` reads at scrape time.
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    pub fn new(state: impl Collector) -> Exposition {
        let mut registry = Registry::with_prefix("fabric");
        meters().register(&mut registry);
        registry.register_collector(Box::new(state));
        Exposition { registry }
    }

    /// The page in the OpenMetrics text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// The content type of [`Exposition::render`].
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_outcomes_are_bounded() {
        assert_eq!(
            error_outcome(errors::NOT_AUTHORIZED),
            "wamp.error.not_authorized"
        );
        assert_eq!(error_outcome("com.example.oops"), APPLICATION_ERROR);
        assert_eq!(error_outcome("wamp.error.made.up"), APPLICATION_ERROR);
    }

    #[test]
    fn realm_labels_are_capped() {
        let m = Meters::new();
        for i in 0..MAX_REALM_LABELS {
            assert_eq!(m.realm_label(&format!("r{i}")), format!("r{i}"));
        }
        assert_eq!(m.realm_label("one.too.many"), OTHER_REALM);
        assert_eq!(
            m.realm_label("r7"),
            "r7",
            "a labelled realm keeps its label"
        );
    }
}
