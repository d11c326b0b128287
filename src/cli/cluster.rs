//! `fabric-master cluster | backup | restore | state`: operate a running cluster over the
//! peer gRPC service, and restore a backup into a fresh data dir.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use futures_util::StreamExt;

use super::PeerTlsArgs;
use crate::replica::{Query, Status};
use crate::rpc::{PeerClient, pb};
use crate::store::Kind;

/// Which replica to talk to, and how.
#[derive(Args, Debug)]
pub struct PeerArgs {
    /// Peer address of any running replica.
    #[arg(long, env = "FABRIC_PEER", default_value = "127.0.0.1:9401")]
    pub peer: String,
    #[command(flatten)]
    pub tls: PeerTlsArgs,
}

impl PeerArgs {
    /// A client of the replica at `addr`, with the operator's certificate if given.
    fn client(&self, addr: &str) -> anyhow::Result<PeerClient> {
        let tls = self.tls.load()?;
        crate::rpc::client(addr, tls.as_deref()).with_context(|| format!("peer address {addr:?}"))
    }
}

#[derive(Args, Debug)]
pub struct ClusterArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    #[command(subcommand)]
    pub action: ClusterAction,
}

#[derive(Subcommand, Debug)]
pub enum ClusterAction {
    /// Print the replica's view of the cluster as JSON.
    Status,
    /// Add a replica: as a learner, then (unless --learner) as a voter once caught up.
    Add {
        #[arg(long)]
        node_id: u64,
        /// The new replica's advertised peer address.
        #[arg(long)]
        addr: String,
        #[arg(long)]
        learner: bool,
    },
    /// Remove a replica from the membership.
    Remove {
        #[arg(long)]
        node_id: u64,
    },
    /// Make another voter the leader.
    TransferLeader {
        #[arg(long)]
        node_id: u64,
    },
    /// Make the replica (--peer) snapshot its state now and purge the log the snapshot
    /// covers, as it does by itself every --raft-snapshot-logs entries; waits for the snapshot.
    Snapshot,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    /// File to write the backup to.
    #[arg(long, required_unless_present = "out_dir", conflicts_with = "out_dir")]
    pub out: Option<PathBuf>,
    /// Directory to write a timestamped backup into
    /// (`fabric-master-backup-YYYYMMDDTHHMMSSZ.bin`), for scheduled backups.
    #[arg(long, env = "FABRIC_BACKUP_DIR")]
    pub out_dir: Option<PathBuf>,
    /// With --out-dir: keep only the newest N backups there (older ones are deleted after the
    /// new one is written); 0 keeps all.
    #[arg(
        long,
        env = "FABRIC_BACKUP_KEEP",
        default_value_t = 0,
        requires = "out_dir"
    )]
    pub keep: usize,
}

/// The names `backup --out-dir` writes: sortable by time.
const BACKUP_PREFIX: &str = "fabric-master-backup-";
const BACKUP_SUFFIX: &str = ".bin";

/// `fabric-master-backup-20261129T171000.123Z.bin` for now (UTC, to the millisecond).
fn backup_name() -> String {
    let micros = crate::clock::now_micros().max(0) as u64;
    let iso = crate::clock::format_utc(micros / 1_000_000); // 2026-11-29T17:10:00.000Z
    let compact: String = iso[..19]
        .chars()
        .filter(|c| *c != '-' && *c != ':')
        .collect();
    let millis = micros / 1000 % 1000;
    format!("{BACKUP_PREFIX}{compact}.{millis:03}Z{BACKUP_SUFFIX}")
}

/// Deletes all but the newest `keep` backups in `dir`; returns the deleted names.
fn prune_backups(dir: &std::path::Path, keep: usize) -> anyhow::Result<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .with_context(|| format!("listing {}", dir.display()))?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.starts_with(BACKUP_PREFIX) && n.ends_with(BACKUP_SUFFIX))
        .collect();
    names.sort();
    let excess = names.len().saturating_sub(keep);
    let old: Vec<String> = names.into_iter().take(excess).collect();
    for name in &old {
        std::fs::remove_file(dir.join(name))
            .with_context(|| format!("deleting the old backup {name}"))?;
    }
    Ok(old)
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    /// A file written by `backup`.
    #[arg(long)]
    pub from: PathBuf,
    /// A fresh data dir; start the first replica on it afterwards.
    #[arg(long)]
    pub data_dir: PathBuf,
    /// Raft id of the replica that will run on this data dir.
    #[arg(long, default_value_t = 1)]
    pub node_id: u64,
    /// Peer address that replica will advertise.
    #[arg(long, default_value = "127.0.0.1:9401")]
    pub advertise: String,
}

#[derive(Args, Debug)]
pub struct StateArgs {
    #[command(flatten)]
    pub peer: PeerArgs,
    #[command(subcommand)]
    pub query: StateQuery,
}

#[derive(Subcommand, Debug)]
pub enum StateQuery {
    /// One object by primary key.
    Get { kind: String, key: String },
    /// Objects whose key starts with a prefix.
    List {
        kind: String,
        #[arg(default_value = "")]
        prefix: String,
    },
    /// Number of objects of a kind.
    Count { kind: String },
    /// Remove an object that cannot be read back (a listing warns "unreadable record"):
    /// its stored bytes and every index entry pointing at it, through Raft.
    Purge { kind: String, key: String },
}

fn parse_kind(name: &str) -> anyhow::Result<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.name() == name)
        .with_context(|| {
            let names: Vec<_> = Kind::ALL.iter().map(|k| k.name()).collect();
            format!("unknown kind {name:?}; kinds: {}", names.join(", "))
        })
}

async fn status_of(args: &PeerArgs, peer: &str) -> anyhow::Result<Status> {
    let reply = args
        .client(peer)?
        .status(pb::StatusRequest {})
        .await
        .with_context(|| format!("asking {peer} for its status"))?;
    Ok(serde_json::from_slice(&reply.into_inner().json)?)
}

/// The replica's own status, plus one line per member as every member reports itself:
/// role, address, lag behind the leader's log, client sessions (or why it did not answer).
async fn cluster_status(args: &PeerArgs, peer: &str) -> anyhow::Result<serde_json::Value> {
    let status = status_of(args, peer).await?;
    let asked = futures_util::future::join_all(status.nodes.iter().map(|(id, addr)| async move {
        let answer = tokio::time::timeout(Duration::from_secs(2), status_of(args, addr)).await;
        (*id, addr.clone(), answer)
    }))
    .await;
    let leader_log = asked
        .iter()
        .find_map(|(id, _, answer)| match answer {
            Ok(Ok(s)) if Some(*id) == status.leader => s.last_log_index,
            _ => None,
        })
        .or(status.last_log_index);
    let members: Vec<serde_json::Value> = asked
        .into_iter()
        .map(|(id, addr, answer)| {
            let role = if status.leader == Some(id) {
                "leader"
            } else if status.voters.contains(&id) {
                "voter"
            } else {
                "learner"
            };
            match answer {
                Ok(Ok(s)) => serde_json::json!({
                    "id": id,
                    "role": role,
                    "addr": addr,
                    "reachable": true,
                    "lag": leader_log.map(|l| l.saturating_sub(s.last_applied.unwrap_or(0))),
                    "sessions": s.sessions,
                    "has_quorum": s.has_quorum,
                }),
                Ok(Err(e)) => serde_json::json!({
                    "id": id, "role": role, "addr": addr, "reachable": false,
                    "error": format!("{e:#}"),
                }),
                Err(_) => serde_json::json!({
                    "id": id, "role": role, "addr": addr, "reachable": false,
                    "error": "no answer within 2 s",
                }),
            }
        })
        .collect();
    let mut out = serde_json::to_value(status)?;
    out["members"] = serde_json::Value::Array(members);
    Ok(out)
}

fn membership_result(json: &[u8]) -> anyhow::Result<serde_json::Value> {
    let status = crate::replica::decode_membership_reply(json)??;
    Ok(serde_json::to_value(status)?)
}

pub async fn cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let p = &args.peer;
    let peer = p.peer.as_str();
    let out = match args.action {
        ClusterAction::Status => cluster_status(p, peer).await?,
        ClusterAction::Add {
            node_id,
            addr,
            learner,
        } => {
            let reply = p
                .client(peer)?
                .join(pb::JoinRequest {
                    node_id,
                    addr,
                    voter: !learner,
                    voter_if_room: false,
                    fresh: false,
                })
                .await?;
            membership_result(&reply.into_inner().json)?
        }
        ClusterAction::Remove { node_id } => {
            let reply = p
                .client(peer)?
                .remove(pb::RemoveRequest { node_id })
                .await?;
            membership_result(&reply.into_inner().json)?
        }
        ClusterAction::TransferLeader { node_id } => {
            let status = status_of(p, peer).await?;
            if !status.voters.contains(&node_id) {
                bail!("replica {node_id} is not a voter ({:?})", status.voters);
            }
            let target = status
                .nodes
                .get(&node_id)
                .context("target has no address")?
                .clone();
            // openraft 0.9 has no leadership transfer: the target starts an election, which
            // it wins when its log is up to date (it is a voter the leader replicates to).
            // Elections can lose to a busy machine's timing: keep asking for a while.
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let now = status_of(p, &target).await?;
                if now.leader == Some(node_id) {
                    break serde_json::to_value(now)?;
                }
                if Instant::now() > deadline {
                    bail!("replica {node_id} did not become leader within 30 s");
                }
                p.client(&target)?
                    .trigger_elect(pb::ElectRequest {})
                    .await?;
                tokio::time::sleep(Duration::from_millis(700)).await;
            }
        }
        ClusterAction::Snapshot => {
            let before = status_of(p, peer).await?;
            p.client(peer)?
                .trigger_snapshot(pb::SnapshotRequest {})
                .await?;
            // A snapshot covers what was applied when it was asked for, or later.
            let wanted = before.last_applied;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let now = status_of(p, peer).await?;
                if now.snapshot >= wanted {
                    break serde_json::to_value(now)?;
                }
                if Instant::now() > deadline {
                    bail!(
                        "replica {} has no snapshot up to {wanted:?} after 30 s (it has {:?})",
                        now.id,
                        now.snapshot
                    );
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

pub async fn backup(args: BackupArgs) -> anyhow::Result<()> {
    let mut stream = args
        .peer
        .client(&args.peer.peer)?
        .backup(pb::BackupRequest {})
        .await
        .with_context(|| format!("backup from {}", args.peer.peer))?
        .into_inner();
    let mut data = Vec::new();
    while let Some(chunk) = stream.next().await {
        data.extend_from_slice(&chunk?.data);
    }
    let objects = crate::store::snapshot::object_count(&data)?;
    let out = match (&args.out, &args.out_dir) {
        (Some(out), _) => out.clone(),
        (None, Some(dir)) => {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
            let out = dir.join(backup_name());
            anyhow::ensure!(!out.exists(), "{} exists already", out.display());
            out
        }
        (None, None) => anyhow::bail!("give --out FILE or --out-dir DIR"),
    };
    // Written aside and renamed: a backup that is there is whole.
    let tmp = out.with_extension("partial");
    std::fs::write(&tmp, &data).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, &out)?;
    eprintln!(
        "wrote {} ({} bytes, {objects} objects)",
        out.display(),
        data.len()
    );
    if let (Some(dir), true) = (&args.out_dir, args.keep > 0) {
        for name in prune_backups(dir, args.keep)? {
            eprintln!("deleted the old backup {name}");
        }
    }
    Ok(())
}

pub fn restore(args: RestoreArgs) -> anyhow::Result<()> {
    let data =
        std::fs::read(&args.from).with_context(|| format!("reading {}", args.from.display()))?;
    let objects = crate::store::snapshot::object_count(&data).context("not a backup file")?;
    std::fs::create_dir_all(&args.data_dir)?;
    let path = args.data_dir.join(crate::server::STATE_FILE);
    let db = crate::raft::open_database(&path)?;
    crate::raft::restore_into(&db, &data, args.node_id, &args.advertise)?;
    eprintln!(
        "restored {objects} objects into {} as replica {} ({})",
        path.display(),
        args.node_id,
        args.advertise
    );
    Ok(())
}

pub async fn state(args: StateArgs) -> anyhow::Result<()> {
    let query = match args.query {
        StateQuery::Purge { kind, key } => {
            let command = crate::store::Command::Purge {
                kind: parse_kind(&kind)?,
                key,
            };
            let reply = args
                .peer
                .client(&args.peer.peer)?
                .propose(pb::Proposal {
                    command: serde_json::to_vec(&command)?,
                    forwarded: false,
                })
                .await?;
            let res: Result<serde_json::Value, crate::replica::ProposeError> =
                serde_json::from_slice(&reply.into_inner().result)?;
            println!("{}", serde_json::to_string_pretty(&res?)?);
            return Ok(());
        }
        StateQuery::Get { kind, key } => Query::Get {
            kind: parse_kind(&kind)?,
            key,
        },
        StateQuery::List { kind, prefix } => Query::List {
            kind: parse_kind(&kind)?,
            prefix,
        },
        StateQuery::Count { kind } => Query::Count {
            kind: parse_kind(&kind)?,
        },
    };
    let reply = args
        .peer
        .client(&args.peer.peer)?
        .query(pb::QueryRequest {
            query: serde_json::to_vec(&query)?,
        })
        .await?;
    let res: Result<serde_json::Value, crate::replica::QueryError> =
        serde_json::from_slice(&reply.into_inner().result)?;
    println!("{}", serde_json::to_string_pretty(&res?)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_names_sort_by_time_and_pruning_keeps_the_newest() {
        let name = backup_name();
        assert!(
            name.starts_with(BACKUP_PREFIX) && name.ends_with("Z.bin"),
            "{name}"
        );
        assert_eq!(
            name.len(),
            BACKUP_PREFIX.len() + "20261129T171000.123Z.bin".len()
        );
        let dir = tempfile::tempdir().unwrap();
        for stamp in ["20261101T000000Z", "20261103T000000Z", "20261102T000000Z"] {
            std::fs::write(dir.path().join(format!("{BACKUP_PREFIX}{stamp}.bin")), b"x").unwrap();
        }
        std::fs::write(dir.path().join("notes.txt"), b"not a backup").unwrap();
        let deleted = prune_backups(dir.path(), 2).unwrap();
        assert_eq!(
            deleted,
            vec![format!("{BACKUP_PREFIX}20261101T000000Z.bin")]
        );
        assert!(dir.path().join("notes.txt").exists());
        assert_eq!(prune_backups(dir.path(), 2).unwrap(), Vec::<String>::new());
    }
}
