//! Entering and changing the cluster: bootstrap, join through a seed, add and remove
//! replicas (on the leader; other replicas pass the request on).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::{MembershipError, Replica, Status};
use crate::raft::NodeId;
use crate::rpc::pb;
use crate::store::Command;

impl Replica {
    pub fn is_initialized(&self) -> bool {
        let m = self.raft.metrics().borrow().clone();
        m.membership_config
            .membership()
            .voter_ids()
            .next()
            .is_some()
    }

    /// Forms a new one-voter cluster (a no-op if this replica already has a membership).
    pub async fn bootstrap(&self) -> anyhow::Result<()> {
        if self.is_initialized() {
            return Ok(());
        }
        let members = BTreeMap::from([(
            self.id,
            BasicNode {
                addr: self.advertise.clone(),
            },
        )]);
        match self.raft.initialize(members).await {
            Ok(()) => Ok(()),
            Err(RaftError::APIError(openraft::error::InitializeError::NotAllowed(_))) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Asks a running replica (any; it forwards to the leader) to take this one in.
    pub async fn join_via(&self, seed: &str) -> anyhow::Result<()> {
        let mut client = self.clients.get(seed)?;
        let reply = client
            .join(pb::JoinRequest {
                node_id: self.id,
                addr: self.advertise.clone(),
                voter: true,
            })
            .await?
            .into_inner();
        decode_membership_reply(&reply.json)??;
        Ok(())
    }

    /// Adds a replica as a learner, then (with `voter`) as a voter. Runs on the leader;
    /// other replicas pass it on.
    pub async fn join(
        &self,
        id: NodeId,
        addr: String,
        voter: bool,
    ) -> Result<Status, MembershipError> {
        if let Some(leader_addr) = self.leader_elsewhere()? {
            let request = pb::JoinRequest {
                node_id: id,
                addr,
                voter,
            };
            return self
                .ask_leader(&leader_addr, |mut c| async move { c.join(request).await })
                .await;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        let known = membership.get_node(&id).map(|n| n.addr.clone());
        if known.as_deref() != Some(addr.as_str()) {
            self.change_membership(ChangeMembers::AddNodes(BTreeMap::from([(
                id,
                BasicNode { addr: addr.clone() },
            )])))
            .await?;
            // Promote only once the learner has caught up, as add_learner(blocking) would.
            self.wait_caught_up(id).await?;
        }
        let is_voter = membership.voter_ids().any(|v| v == id);
        if voter && !is_voter {
            self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                .await?;
        }
        tracing::info!("replica {id} at {addr} joined (voter: {voter})");
        Ok(self.status())
    }

    /// Removes a replica from the membership (voter or learner). Runs on the leader.
    pub async fn remove(&self, id: NodeId) -> Result<Status, MembershipError> {
        if let Some(leader_addr) = self.leader_elsewhere()? {
            let request = pb::RemoveRequest { node_id: id };
            return self
                .ask_leader(&leader_addr, |mut c| async move { c.remove(request).await })
                .await;
        }
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership().clone();
        if membership.voter_ids().any(|v| v == id) {
            if membership.voter_ids().all(|v| v == id) {
                return Err(MembershipError::LastVoter);
            }
            self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await?;
        }
        let m = self.raft.metrics().borrow().clone();
        if m.membership_config.membership().get_node(&id).is_some() {
            self.change_membership(ChangeMembers::RemoveNodes(BTreeSet::from([id])))
                .await?;
        }
        // The nodes whose sessions it held are no longer reachable through it.
        if let Err(e) = self
            .propose(Command::PresenceDropReplica { replica_id: id })
            .await
        {
            tracing::warn!("dropping presence of removed replica {id}: {e}");
        }
        tracing::info!("replica {id} removed");
        Ok(self.status())
    }

    /// `None` on the leader, the leader's address elsewhere.
    fn leader_elsewhere(&self) -> Result<Option<String>, MembershipError> {
        match self.leader_addr() {
            Some((leader, _)) if leader == self.id => Ok(None),
            Some((_, addr)) => Ok(Some(addr)),
            None => Err(MembershipError::NoLeader),
        }
    }

    /// Passes a membership request on to the leader and returns its answer.
    async fn ask_leader<F, Fut>(&self, addr: &str, send: F) -> Result<Status, MembershipError>
    where
        F: FnOnce(crate::rpc::PeerClient) -> Fut,
        Fut: std::future::Future<
                Output = Result<tonic::Response<pb::MembershipReply>, tonic::Status>,
            >,
    {
        let unreachable = |message: String| MembershipError::LeaderUnreachable {
            addr: addr.to_owned(),
            message,
        };
        let client = self
            .clients
            .get(addr)
            .map_err(|e| unreachable(e.to_string()))?;
        let reply = send(client)
            .await
            .map_err(|e| unreachable(e.message().to_owned()))?;
        decode_membership_reply(&reply.into_inner().json)
            .map_err(|e| unreachable(format!("bad reply: {e}")))?
    }

    /// One membership change at a time; a change that meets another one still committing
    /// (two replicas joining at once, a remove right after a join) waits and retries.
    async fn change_membership(
        &self,
        changes: ChangeMembers<NodeId, BasicNode>,
    ) -> Result<(), MembershipError> {
        let _one_at_a_time = self.membership_lock.lock().await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match self.raft.change_membership(changes.clone(), false).await {
                Ok(_) => return Ok(()),
                Err(RaftError::APIError(ClientWriteError::ChangeMembershipError(
                    openraft::error::ChangeMembershipError::InProgress(_),
                ))) if Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                Err(e) => return Err(MembershipError::Raft(e.to_string())),
            }
        }
    }

    /// Waits until replica `id` has replicated the leader's log (bounded).
    async fn wait_caught_up(&self, id: NodeId) -> Result<(), MembershipError> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let caught_up = {
                let metrics = self.raft.metrics();
                let m = metrics.borrow();
                let matched = m
                    .replication
                    .as_ref()
                    .and_then(|r| r.get(&id).cloned().flatten())
                    .map(|l| l.index);
                matched.is_some() && matched >= m.last_log_index.map(|i| i.saturating_sub(64))
            };
            if caught_up {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(MembershipError::NotCaughtUp(id));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// What a `Join` or `Remove` RPC answers: the replica's status after the change, or why
/// it failed.
pub fn decode_membership_reply(
    json: &[u8],
) -> Result<Result<Status, MembershipError>, serde_json::Error> {
    serde_json::from_slice(json)
}
