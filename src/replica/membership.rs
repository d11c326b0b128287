//! Entering and changing the cluster: bootstrap, join through a seed, add and remove
//! replicas (on the leader; other replicas pass the request on).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use openraft::error::{ClientWriteError, RaftError};
use openraft::{BasicNode, ChangeMembers};

use super::{MembershipError, Replica, Status};

/// What the other voters' pods say, for a pod 0 deciding whether to form the cluster.
#[derive(Debug)]
pub enum Survey {
    /// These answered with a membership: the cluster exists.
    Formed(Vec<String>),
    /// Every one answered, none with a membership.
    AllEmpty,
    /// These did not answer.
    Silent(Vec<String>),
}

/// What a joining replica becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JoinAs {
    Voter,
    Learner,
    /// A voter while the cluster has fewer voters than the leader's `--voters`, a learner
    /// (a serving replica that does not vote) otherwise: how replicas join by themselves.
    VoterIfRoom,
}

impl JoinAs {
    pub fn from_request(r: &pb::JoinRequest) -> JoinAs {
        match (r.voter_if_room, r.voter) {
            (true, _) => JoinAs::VoterIfRoom,
            (false, true) => JoinAs::Voter,
            (false, false) => JoinAs::Learner,
        }
    }
}
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

    /// Asks each of `peers` for its state (bounded): does any of them hold a cluster?
    pub async fn survey(&self, peers: &[String]) -> Survey {
        let mut formed = Vec::new();
        let mut silent = Vec::new();
        for peer in peers {
            match self.status_of(peer, self.survey_timeout()).await {
                Ok(s) if !s.voters.is_empty() => formed.push(peer.clone()),
                Ok(_) => {}
                Err(_) => silent.push(peer.clone()),
            }
        }
        if !formed.is_empty() {
            Survey::Formed(formed)
        } else if silent.is_empty() {
            Survey::AllEmpty
        } else {
            Survey::Silent(silent)
        }
    }

    /// Another replica's status over the peer port, bounded by `timeout`.
    pub(crate) async fn status_of(&self, addr: &str, timeout: Duration) -> Result<Status, String> {
        let mut client = self.clients.get(addr).map_err(|e| e.to_string())?;
        let mut request = tonic::Request::new(pb::StatusRequest {});
        request.set_timeout(timeout);
        let reply = client
            .status(request)
            .await
            .map_err(|e| e.message().to_owned())?;
        serde_json::from_slice(&reply.into_inner().json).map_err(|e| format!("bad status: {e}"))
    }

    /// Asks a running replica (any; it forwards to the leader) to take this one in, as `role`
    /// says (by default a voter while the cluster has fewer than the leader's `--voters`,
    /// else a learner; `--learner`: always a learner).
    pub async fn join_via(&self, seed: &str, role: JoinAs) -> anyhow::Result<()> {
        let mut client = self.clients.get(seed)?;
        let reply = client
            .join(pb::JoinRequest {
                node_id: self.id,
                addr: self.advertise.clone(),
                voter: role != JoinAs::Learner,
                voter_if_room: role == JoinAs::VoterIfRoom,
                fresh: self.started_empty,
            })
            .await?
            .into_inner();
        decode_membership_reply(&reply.json)??;
        Ok(())
    }

    /// Adds a replica as a learner and, as `role` says, promotes it once it has caught up.
    /// Runs on the leader; other replicas pass it on. A replica new to the membership must
    /// answer under `id` and hold no other cluster's state.
    pub async fn join(
        &self,
        id: NodeId,
        addr: String,
        role: JoinAs,
        fresh: bool,
    ) -> Result<Status, MembershipError> {
        if let Some(leader_addr) = self.leader_elsewhere()? {
            let request = pb::JoinRequest {
                node_id: id,
                addr,
                voter: role != JoinAs::Learner,
                voter_if_room: role == JoinAs::VoterIfRoom,
                fresh,
            };
            return self
                .ask_leader(&leader_addr, |mut c| async move { c.join(request).await })
                .await;
        }
        // One join at a time: "is there room for a voter" is decided and acted on together.
        let _one_join = self.join_lock.lock().await;
        let mut membership = self.membership();
        let mut known = membership.get_node(&id).map(|n| n.addr.clone());
        if known.as_deref() == Some(addr.as_str()) && (fresh || self.lost_its_state(&addr).await) {
            // A member that comes back with an empty data dir (a lost volume) has forgotten
            // its log and its votes: it is removed and added again as a new replica, never
            // counted as a voter before it has caught up. (Until its join arrives it may
            // already take the leader's entries: `fresh` says how it started.)
            tracing::warn!("replica {id} at {addr} came back without its data: replacing it");
            self.remove(id).await?;
            membership = self.membership();
            known = None;
        }
        if known.as_deref() != Some(addr.as_str()) {
            self.check_joiner(id, &addr, &membership).await?;
            self.change_membership(ChangeMembers::AddNodes(BTreeMap::from([(
                id,
                BasicNode { addr: addr.clone() },
            )])))
            .await?;
            // Promote only once the learner has caught up, as add_learner(blocking) would.
            self.wait_caught_up(id).await?;
        }
        let membership = self.membership();
        let is_voter = membership.voter_ids().any(|v| v == id);
        let voter = match role {
            JoinAs::Voter => true,
            JoinAs::Learner => false,
            JoinAs::VoterIfRoom => membership.voter_ids().count() < self.max_voters,
        };
        if voter && !is_voter {
            self.change_membership(ChangeMembers::AddVoterIds(BTreeSet::from([id])))
                .await?;
        }
        tracing::info!(
            "replica {id} at {addr} joined as a {}",
            if voter || is_voter {
                "voter"
            } else {
                "learner"
            }
        );
        Ok(self.status())
    }

    /// How long a survey or a state check waits for one replica.
    fn survey_timeout(&self) -> Duration {
        self.write_timeout.min(Duration::from_secs(2))
    }

    /// Whether the replica at `addr` answers with no membership at all (an empty data dir).
    async fn lost_its_state(&self, addr: &str) -> bool {
        self.status_of(addr, self.survey_timeout())
            .await
            .is_ok_and(|s| s.voters.is_empty() && s.learners.is_empty())
    }

    /// Refuses a replica that is not who the caller says, or that holds the state of another
    /// cluster (for example its own one-voter cluster, from a start without `--join`): its
    /// log would contradict ours. A replica removed from this cluster may come back: its
    /// membership still names members of ours.
    async fn check_joiner(
        &self,
        id: NodeId,
        addr: &str,
        ours: &openraft::Membership<NodeId, BasicNode>,
    ) -> Result<(), MembershipError> {
        let theirs = self
            .status_of(addr, self.write_timeout)
            .await
            .map_err(|message| MembershipError::JoinerUnreachable {
                addr: addr.to_owned(),
                message,
            })?;
        if theirs.id != id {
            return Err(MembershipError::WrongReplica {
                addr: addr.to_owned(),
                expected: id,
                found: theirs.id,
            });
        }
        if theirs.voters.is_empty() && theirs.learners.is_empty() {
            return Ok(());
        }
        let shares_members = theirs.nodes.iter().any(|(member, member_addr)| {
            *member != id && ours.get_node(member).map(|n| &n.addr) == Some(member_addr)
        });
        if shares_members {
            Ok(())
        } else {
            Err(MembershipError::ForeignState {
                id,
                addr: addr.to_owned(),
                voters: theirs.voters,
            })
        }
    }

    /// Removes a replica from the membership (voter or learner). Runs on the leader.
    pub async fn remove(&self, id: NodeId) -> Result<Status, MembershipError> {
        if let Some(leader_addr) = self.leader_elsewhere()? {
            let request = pb::RemoveRequest { node_id: id };
            return self
                .ask_leader(&leader_addr, |mut c| async move { c.remove(request).await })
                .await;
        }
        let membership = self.membership();
        if membership.voter_ids().any(|v| v == id) {
            if membership.voter_ids().all(|v| v == id) {
                return Err(MembershipError::LastVoter);
            }
            self.change_membership(ChangeMembers::RemoveVoters(BTreeSet::from([id])))
                .await?;
        }
        if self.membership().get_node(&id).is_some() {
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

    pub(crate) fn membership(&self) -> openraft::Membership<NodeId, BasicNode> {
        self.raft
            .metrics()
            .borrow()
            .membership_config
            .membership()
            .clone()
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
        self.change_membership_locked(changes).await
    }

    /// Finishes a membership change that an earlier leader left in its joint stage. openraft
    /// makes a change in two commits (the joint config of old and new voters, then the new
    /// one) and does not finish one whose leader died or was deposed between them: the
    /// cluster would then need a majority of the old voters as well as of the new ones, for
    /// good. With voters {1,3} joined by 2 and then a dead 1, for example, 2 and 3 could
    /// never elect a leader. Runs on the leader; `Ok(None)` when there is nothing to finish
    /// (or this replica does not lead), else the voters it finished at.
    pub(crate) async fn finish_joint_change(
        &self,
    ) -> Result<Option<BTreeSet<NodeId>>, MembershipError> {
        if !self.is_leader() {
            return Ok(None);
        }
        // Under the lock: a change of this leader's own is not half-done, only under way.
        let _one_at_a_time = self.membership_lock.lock().await;
        let before = self.membership();
        let sets = before.get_joint_config();
        let (true, Some(goal)) = (sets.len() > 1, sets.last().cloned()) else {
            return Ok(None);
        };
        tracing::warn!("finishing a membership change left half-done: {sets:?} -> {goal:?}");
        self.change_membership_locked(ChangeMembers::ReplaceAllVoters(goal.clone()))
            .await?;
        // A voter the change removed held sessions no replica serves any more, as after
        // `remove`.
        for gone in before.voter_ids().filter(|id| !goal.contains(id)) {
            if self.membership().get_node(&gone).is_some() {
                continue;
            }
            if let Err(e) = self
                .propose(Command::PresenceDropReplica { replica_id: gone })
                .await
            {
                tracing::warn!("dropping presence of removed replica {gone}: {e}");
            }
        }
        Ok(Some(goal))
    }

    async fn change_membership_locked(
        &self,
        changes: ChangeMembers<NodeId, BasicNode>,
    ) -> Result<(), MembershipError> {
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
