//! Calls to an edge node whose session another replica holds.

use std::time::Duration;

use super::Replica;
use crate::metrics::CallPath;
use crate::raft::{NodeId, codec};
use crate::rpc::{WirePayload, WireResult, pb};
use crate::wamp::{CallError, Payload};

impl Replica {
    /// Routes a call to a node whose session is held by replica `holder`.
    pub async fn call_node_on(
        &self,
        holder: NodeId,
        realm: &str,
        procedure: &str,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        let started = std::time::Instant::now();
        let res = self
            .call_node_via(holder, realm, procedure, payload, timeout)
            .await;
        crate::metrics::meters().observe_call(CallPath::CrossReplica, started.elapsed());
        res
    }

    async fn call_node_via(
        &self,
        holder: NodeId,
        realm: &str,
        procedure: &str,
        payload: Payload,
        timeout: Duration,
    ) -> Result<Payload, CallError> {
        let addr = {
            let metrics = self.raft.metrics();
            let m = metrics.borrow();
            m.membership_config
                .membership()
                .get_node(&holder)
                .map(|n| n.addr.clone())
        };
        let addr = addr.ok_or_else(|| unreachable(holder, "not a member"))?;
        let mut client = self
            .clients
            .get(&addr)
            .map_err(|e| unreachable(holder, e))?;
        let request = pb::NodeCall {
            realm: realm.to_owned(),
            procedure: procedure.to_owned(),
            payload: codec::encode(&WirePayload::from(payload)),
            timeout_ms: timeout.as_millis() as u64,
        };
        // The holder bounds the node's answer by `timeout`; allow for the hop itself.
        let reply =
            tokio::time::timeout(timeout + Duration::from_secs(2), client.call_node(request))
                .await
                .map_err(|_| unreachable(holder, "no answer"))?
                .map_err(|e| unreachable(holder, e.message()))?
                .into_inner();
        let res: WireResult = codec::decode(&reply.result)
            .map_err(|e| unreachable(holder, format!("bad reply: {e}")))?;
        res.map(Into::into)
            .map_err(|(uri, payload)| CallError::passed_on(uri, payload.into()))
    }
}

/// The error of a routed call that the remote replica could not answer at all.
fn unreachable(replica: NodeId, e: impl std::fmt::Display) -> CallError {
    CallError::new(
        crate::wamp::errors::NO_SUCH_PROCEDURE,
        format!("replica {replica} holding the node's session cannot be reached: {e}"),
    )
}
