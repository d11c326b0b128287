//! `remote.*` served inside the dealer when the node's session is on this replica.

use super::*;

/// Serves `remote.*` calls in the dealer when the node's session is on this replica: the
/// call goes to the node's procedure directly and its answer straight back. Everything else
/// (errors to report, a node held by another replica) returns `None`, and the forwarder's
/// registered handlers take the call.
pub struct DirectRoutes {
    pub(super) forwarder: Forwarder,
    /// `crossbarfabriccenter.remote.<api>.<name>` → (level, remote name, node-side name).
    pub(super) procs: HashMap<String, (Level, &'static str, &'static str)>,
}

impl CallRetarget for DirectRoutes {
    fn prefix(&self) -> &str {
        "crossbarfabriccenter.remote."
    }

    fn retarget(
        &self,
        procedure: &str,
        caller_authrole: &str,
        payload: &Payload,
    ) -> Option<(String, Payload)> {
        // A redb read transaction does not wait for writers, so a stale cache is refreshed
        // here (once per applied index) rather than sending the call the slow way.
        let paired = self.forwarder.paired_nodes().ok()?;
        let role = Some(caller_authrole);
        let target = if procedure.starts_with(REALM_META_PREFIX) {
            self.forwarder
                .meta_target(&paired, procedure, role, payload)
        } else {
            let &(level, remote_name, node_name) = self.procs.get(procedure)?;
            self.forwarder
                .target(&paired, level, remote_name, node_name, role, payload)
        };
        target
            .ok()
            .map(|(_, procedure, payload)| (procedure, payload))
    }
}
