//! What a reconciler pass found, and how it is written back: the object's status and its
//! `orchestration` report (per node and worker: what runs, what failed and why), written
//! through Raft only when either changed, so `stat_*` on any replica tells the truth and a
//! new leader starts from it.

use std::collections::BTreeMap;

use serde_json::json;

use crate::api::reply::transition;
use crate::api::scope::Scope;
use crate::api::to_value;
use crate::clock::now_ns;
use crate::router::internal::CallError;
use crate::store::model::{Extra, Json};
use crate::store::{Command, Kind, StatusRule};

/// Passes in a row with a failed step after which a starting object is DEGRADED (the
/// first failures are often a worker still coming up).
pub const FAILURES_BEFORE_DEGRADED: u32 = 3;

/// One pass's findings on one node.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct NodeReport {
    pub authid: String,
    pub online: bool,
    /// Worker id → its state ("running", "stopped", "failed") and details.
    pub workers: BTreeMap<String, Json>,
    /// The first failed step on this node, if any.
    pub error: Option<String>,
}

impl NodeReport {
    pub fn new(authid: &str, online: bool) -> NodeReport {
        NodeReport {
            authid: authid.to_owned(),
            online,
            ..Default::default()
        }
    }

    pub fn fail(&mut self, what: &str, e: &CallError) {
        if self.error.is_none() {
            self.error = Some(format!("{what}: {} {}", e.uri, e.message));
        }
    }
}

/// A whole pass: per node (by oid), plus problems that are not a node's.
#[derive(Default, Debug, Clone)]
pub struct Report {
    pub nodes: BTreeMap<String, NodeReport>,
    pub problems: Vec<String>,
}

impl Report {
    pub fn node(&mut self, oid: &uuid::Uuid, authid: &str, online: bool) -> &mut NodeReport {
        self.nodes
            .entry(oid.to_string())
            .or_insert_with(|| NodeReport::new(authid, online))
    }

    pub fn any_offline(&self) -> bool {
        self.nodes.values().any(|n| !n.online)
    }

    pub fn any_failed(&self) -> bool {
        !self.problems.is_empty() || self.nodes.values().any(|n| n.error.is_some())
    }

    /// Why the object is not RUNNING, if it is not: the first reason.
    pub fn reason(&self) -> Option<String> {
        if let Some(p) = self.problems.first() {
            return Some(p.clone());
        }
        if let Some(n) = self.nodes.values().find(|n| !n.online) {
            return Some(format!("node {} is offline", n.authid));
        }
        self.nodes
            .values()
            .find_map(|n| n.error.as_ref().map(|e| format!("node {}: {e}", n.authid)))
    }

    /// The stored form (without the pass counter and timestamps).
    pub fn to_json(&self) -> Json {
        let nodes: serde_json::Map<String, Json> = self
            .nodes
            .iter()
            .map(|(oid, n)| {
                (
                    oid.clone(),
                    json!({
                        "authid": n.authid,
                        "online": n.online,
                        "workers": n.workers,
                        "error": n.error,
                    }),
                )
            })
            .collect();
        json!({"nodes": nodes, "problems": self.problems, "reason": self.reason()})
    }
}

/// The status an active (started) object should have after a pass with this report, given
/// how many passes in a row have now failed.
pub fn active_status(current: &str, report: &Report, failures: u32) -> &'static str {
    if report.any_offline() {
        "DEGRADED"
    } else if report.any_failed() {
        if current == "STARTING" && failures < FAILURES_BEFORE_DEGRADED {
            "STARTING"
        } else {
            "DEGRADED"
        }
    } else {
        "RUNNING"
    }
}

/// Writes the outcome of a pass if the status or the report changed: `from` lists the
/// statuses it may change (a concurrent stop wins: the write is then refused, and the next
/// pass sees STOPPING). Publishes `<prefix>on_<name>_<event>` for a new RUNNING (started)
/// or STOPPED (stopped). Returns whether it wrote.
#[allow(clippy::too_many_arguments)]
pub async fn write(
    s: &Scope,
    kind: Kind,
    key: &str,
    current: &Json,
    status: &str,
    report: &Report,
    failures: u32,
    from: &[&str],
    events: (&str, &str),
) -> Result<bool, CallError> {
    let now_status = current.get("status").and_then(Json::as_str).unwrap_or("");
    let stored = current.get("orchestration").cloned().unwrap_or(Json::Null);
    let mut report_json = report.to_json();
    let same_report = stored.get("nodes") == report_json.get("nodes")
        && stored.get("problems") == report_json.get("problems");
    if now_status == status && same_report {
        return Ok(false);
    }
    report_json["failures"] = json!(failures);
    report_json["updated"] = json!(now_ns());
    let mut delta = Extra::new();
    delta.insert("orchestration".into(), report_json);
    if now_status != status {
        delta.insert("status".into(), json!(status));
        delta.insert("changed".into(), json!(now_ns()));
    }
    // `StartFrom` is the store's "only from these statuses" rule; a new rule kind would be
    // a log entry older replicas cannot apply during a rolling upgrade.
    let rule = StatusRule::StartFrom(from.iter().map(|x| x.to_string()).collect());
    let written = s
        .ctx
        .replica
        .propose(Command::Modify {
            kind,
            key: key.to_owned(),
            delta,
            status_rule: Some(rule),
        })
        .await?;
    if now_status != status {
        tracing::info!(
            "{kind:?} {key}: {now_status} -> {status}{}",
            report
                .reason()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        );
        let (prefix, name) = events;
        let event = match status {
            "RUNNING" => Some("started"),
            "STOPPED" => Some("stopped"),
            "DEGRADED" => Some("degraded"),
            _ => None,
        };
        if let Some(event) = event {
            s.events.publish(
                &format!("{prefix}on_{name}_{event}"),
                vec![to_value(transition(&written, None))],
            );
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(online: bool, error: Option<&str>) -> Report {
        let mut r = Report::default();
        let n = r.node(&uuid::Uuid::nil(), "node1", online);
        n.error = error.map(str::to_owned);
        r
    }

    #[test]
    fn status_follows_the_nodes() {
        assert_eq!(active_status("STARTING", &report(true, None), 0), "RUNNING");
        assert_eq!(
            active_status("RUNNING", &report(false, None), 0),
            "DEGRADED"
        );
        assert_eq!(
            active_status("STARTING", &report(true, Some("x")), 1),
            "STARTING"
        );
        assert_eq!(
            active_status(
                "STARTING",
                &report(true, Some("x")),
                FAILURES_BEFORE_DEGRADED
            ),
            "DEGRADED"
        );
        assert_eq!(
            active_status("RUNNING", &report(true, Some("x")), 1),
            "DEGRADED"
        );
        assert_eq!(active_status("DEGRADED", &report(true, None), 0), "RUNNING");
        assert_eq!(
            report(false, None).reason().as_deref(),
            Some("node node1 is offline")
        );
    }
}
