//! `fabric-master bench`: a load generator for any WAMP router, so the same tool measures
//! fabric-master and the reference Crossbar.io master in one run.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::client::{Client, ClientConfig};
use crate::wamp::{Dict, Payload, Protocol, Serializer, Value};

#[derive(Clone, Copy, Debug, ValueEnum, PartialEq)]
pub enum Mode {
    /// One callee registers an echo procedure; callers call it.
    Rpc,
    /// Callers call an existing procedure (e.g. the reference master's list_mrealms).
    Call,
    /// One publisher, N subscribers; counts delivered events.
    Pubsub,
    /// Opens `--count` idle sessions and holds them for `--hold-seconds` (memory per session).
    Sessions,
    /// `--inflight` proposers commit `--count` writes (new organizations) through the peer
    /// service of the replica at `--peer`; latency is propose-to-commit-and-apply.
    Raft,
    /// `--inflight` readers make `--count` linearizable reads (an organization count)
    /// through the peer service of the replica at `--peer`.
    RaftRead,
    /// fsync latency of a 4 KiB write in `--dir`: the floor under every durable commit.
    Fsync,
    /// Simulates a paired edge node's management uplink: joins with `--key` as role `node`
    /// and answers `crossbarfabriccenter.node.<authid>.get_status` with a status like a real
    /// edge node's, for `--hold-seconds` (the target of `remote.node.get_status` benchmarks).
    Node,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum Ser {
    Json,
    Msgpack,
    Cbor,
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    #[arg(long, default_value = "ws://127.0.0.1:9000/ws")]
    pub url: String,
    /// Realm to join (default: none, the router assigns one).
    #[arg(long)]
    pub realm: Option<String>,
    #[arg(long, value_enum, default_value = "rpc")]
    pub mode: Mode,
    #[arg(long, value_enum, default_value = "cbor")]
    pub serializer: Ser,
    #[arg(long)]
    pub batched: bool,
    /// Cryptosign private key file (Crossbar.io format); anonymous without.
    #[arg(long)]
    pub key: Option<std::path::PathBuf>,
    /// authid in HELLO (default: the key file's user-id).
    #[arg(long)]
    pub authid: Option<String>,
    /// Procedure for `--mode call`.
    #[arg(long, default_value = "crossbarfabriccenter.mrealm.list_mrealms")]
    pub procedure: String,
    /// Positional arguments for `--mode call`, as a JSON list.
    #[arg(long, default_value = "[]")]
    pub args: String,
    /// Calls (rpc, call) or publications (pubsub) to make.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Calls in flight across all callers.
    #[arg(long, default_value_t = 100)]
    pub inflight: usize,
    /// Caller sessions.
    #[arg(long, default_value_t = 1)]
    pub callers: usize,
    /// Subscriber sessions (pubsub).
    #[arg(long, default_value_t = 10)]
    pub subscribers: usize,
    /// Payload bytes per call or event.
    #[arg(long, default_value_t = 16)]
    pub payload_size: usize,
    /// Stop after this long even if not all calls are done.
    #[arg(long, default_value_t = 120)]
    pub max_seconds: u64,
    /// How long `--mode sessions` holds its sessions open.
    #[arg(long, default_value_t = 5)]
    pub hold_seconds: u64,
    /// A label for the output line.
    #[arg(long, default_value = "fabric-master")]
    pub label: String,
    /// Peer (gRPC) address for `--mode raft`.
    #[arg(long, default_value = "127.0.0.1:9401")]
    pub peer: String,
    /// Directory for `--mode fsync`.
    #[arg(long, default_value = ".")]
    pub dir: std::path::PathBuf,
}

/// What a run measured.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Report {
    pub label: String,
    pub mode: String,
    pub serializer: String,
    pub inflight: usize,
    pub ops: u64,
    pub errors: u64,
    pub seconds: f64,
    pub rate: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
}

impl BenchArgs {
    fn client_config(&self) -> anyhow::Result<ClientConfig> {
        let serializer = match self.serializer {
            Ser::Json => Serializer::Json,
            Ser::Msgpack => Serializer::MsgPack,
            Ser::Cbor => Serializer::Cbor,
        };
        let (key, file_authid) = match &self.key {
            Some(p) => {
                let (k, id) = crate::auth::keyfile::read_private_key(p)?;
                (Some(k), id)
            }
            None => (None, None),
        };
        Ok(ClientConfig {
            url: self.url.clone(),
            realm: self.realm.clone(),
            protocol: Protocol {
                serializer,
                batched: self.batched,
            },
            authid: if self.mode == Mode::Node {
                None
            } else {
                self.authid.clone().or(file_authid)
            },
            authrole: (self.mode == Mode::Node).then(|| "node".to_owned()),
            key,
        })
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn report(args: &BenchArgs, ops: u64, errors: u64, elapsed: Duration, mut lat: Vec<u64>) -> Report {
    lat.sort_unstable();
    let seconds = elapsed.as_secs_f64();
    Report {
        label: args.label.clone(),
        mode: format!("{:?}", args.mode).to_lowercase(),
        serializer: format!(
            "{:?}{}",
            args.serializer,
            if args.batched { ".batched" } else { "" }
        )
        .to_lowercase(),
        inflight: args.inflight,
        ops,
        errors,
        seconds,
        rate: ops as f64 / seconds,
        p50_us: percentile(&lat, 0.50),
        p90_us: percentile(&lat, 0.90),
        p99_us: percentile(&lat, 0.99),
        max_us: lat.last().copied().unwrap_or(0),
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let r = measure(&args).await?;
    println!(
        "{}: mode={} serializer={} inflight={} ops={} errors={} in {:.2}s -> {:.0}/s  latency p50={}us p90={}us p99={}us max={}us",
        r.label,
        r.mode,
        r.serializer,
        r.inflight,
        r.ops,
        r.errors,
        r.seconds,
        r.rate,
        r.p50_us,
        r.p90_us,
        r.p99_us,
        r.max_us
    );
    println!("JSON {}", serde_json::to_string(&r)?);
    Ok(())
}

pub async fn measure(args: &BenchArgs) -> anyhow::Result<Report> {
    match args.mode {
        Mode::Rpc | Mode::Call => rpc(args).await,
        Mode::Pubsub => pubsub(args).await,
        Mode::Sessions => sessions(args).await,
        Mode::Node => node(args).await,
        Mode::Raft => raft_writes(args).await,
        Mode::RaftRead => raft_reads(args).await,
        Mode::Fsync => fsync(args),
    }
}

async fn raft_writes(args: &BenchArgs) -> anyhow::Result<Report> {
    use crate::store::model::Organization;
    use crate::store::{AnyRecord, Command};
    peer_workers(args, |mut client| async move {
        let oid = uuid::Uuid::new_v4();
        let cmd = Command::Insert {
            record: AnyRecord::Organization(Organization {
                oid,
                label: None,
                description: None,
                tags: None,
                name: format!("bench-{}", oid.simple()),
                otype: Some(2),
                registered: 0,
            }),
        };
        let reply = client
            .propose(crate::rpc::pb::Proposal {
                command: serde_json::to_vec(&cmd).expect("commands serialize"),
                forwarded: false,
            })
            .await;
        reply.ok().is_some_and(|r| {
            serde_json::from_slice::<Result<serde_json::Value, serde_json::Value>>(
                &r.into_inner().result,
            )
            .is_ok_and(|r| r.is_ok())
        })
    })
    .await
}

async fn raft_reads(args: &BenchArgs) -> anyhow::Result<Report> {
    let query = serde_json::to_vec(&crate::replica::Query::Count {
        kind: crate::store::Kind::Organization,
    })?;
    peer_workers(args, move |mut client| {
        let query = query.clone();
        async move {
            let reply = client.query(crate::rpc::pb::QueryRequest { query }).await;
            reply.ok().is_some_and(|r| {
                serde_json::from_slice::<Result<serde_json::Value, String>>(&r.into_inner().result)
                    .is_ok_and(|r| r.is_ok())
            })
        }
    })
    .await
}

/// `--inflight` workers repeat `op` against the peer service at `--peer` until `--count`
/// operations are done; `op` says whether its operation succeeded.
async fn peer_workers<F, Fut>(args: &BenchArgs, op: F) -> anyhow::Result<Report>
where
    F: Fn(crate::rpc::pb::peer_client::PeerClient<tonic::transport::Channel>) -> Fut
        + Clone
        + Send
        + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let client = crate::rpc::client(&args.peer, None)?;
    let next = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let start = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..args.inflight.max(1) {
        let (client, next, op, count) = (client.clone(), next.clone(), op.clone(), args.count);
        workers.spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0u64;
            while next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < count
                && Instant::now() < deadline
            {
                let t = Instant::now();
                if op(client.clone()).await {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                }
            }
            (lat, errors)
        });
    }
    let mut lat = Vec::new();
    let mut errors = 0;
    while let Some(done) = workers.join_next().await {
        let (l, e) = done?;
        lat.extend(l);
        errors += e;
    }
    let ops = lat.len() as u64;
    Ok(report(args, ops, errors, start.elapsed(), lat))
}

fn fsync(args: &BenchArgs) -> anyhow::Result<Report> {
    use std::io::{Seek, SeekFrom, Write};
    let path = args.dir.join(".fabric-fsync-probe");
    let mut file = std::fs::File::create(&path)?;
    let block = vec![0x5au8; 4096];
    let start = Instant::now();
    let mut lat = Vec::new();
    for i in 0..args.count.min(10_000) {
        file.seek(SeekFrom::Start((i % 256) * 4096))?;
        file.write_all(&block)?;
        let t = Instant::now();
        file.sync_data()?;
        lat.push(t.elapsed().as_micros() as u64);
    }
    drop(file);
    std::fs::remove_file(&path)?;
    let ops = lat.len() as u64;
    Ok(report(args, ops, 0, start.elapsed(), lat))
}

async fn sessions(args: &BenchArgs) -> anyhow::Result<Report> {
    let cfg = args.client_config()?;
    let start = Instant::now();
    let mut open = Vec::with_capacity(args.count as usize);
    let mut lat = Vec::with_capacity(args.count as usize);
    let mut errors = 0;
    // Joins run `inflight` at a time, so a large count does not stampede the listener.
    let mut pending = tokio::task::JoinSet::new();
    let mut started = 0u64;
    while started < args.count || !pending.is_empty() {
        while started < args.count && pending.len() < args.inflight.max(1) {
            let cfg = cfg.clone();
            pending.spawn(async move {
                let t = Instant::now();
                (Client::connect(&cfg).await, t.elapsed().as_micros() as u64)
            });
            started += 1;
        }
        match pending.join_next().await {
            Some(Ok((Ok(c), us))) => {
                open.push(c);
                lat.push(us);
            }
            _ => errors += 1,
        }
    }
    let elapsed = start.elapsed();
    println!(
        "holding {} sessions for {} s",
        open.len(),
        args.hold_seconds
    );
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    Ok(report(args, open.len() as u64, errors, elapsed, lat))
}

async fn node(args: &BenchArgs) -> anyhow::Result<Report> {
    let mut cfg = args.client_config()?;
    cfg.realm = None;
    let session = Client::connect(&cfg).await.context("node session")?;
    let authid = session
        .welcome
        .get("authid")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let realm = session
        .welcome
        .get("realm")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let started = crate::clock::now_iso();
    let sid = session.session_id;
    let served = Arc::new(AtomicU64::new(0));
    let status = {
        let served = served.clone();
        let authid = authid.clone();
        Arc::new(move |_: Payload| {
            served.fetch_add(1, Ordering::Relaxed);
            Ok(Payload::args(vec![Value::Dict(crate::dict! {
                "title" => "simulated edge node",
                "started" => started.as_str(),
                "controller_pid" => std::process::id(),
                "running_workers" => 0u64,
                "workers_by_type" => Value::Dict(Dict::new()),
                "management_node_id" => authid.as_str(),
                "management_realm" => realm.as_str(),
                "management_session_id" => sid,
            })]))
        })
    };
    session
        .register(
            &format!("crossbarfabriccenter.node.{authid}.get_status"),
            Dict::new(),
            status,
        )
        .await
        .context("registering get_status")?;
    println!("node {authid} serving for {} s", args.hold_seconds);
    let start = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.hold_seconds)).await;
    session.close();
    Ok(report(
        args,
        served.load(Ordering::Relaxed),
        0,
        start.elapsed(),
        Vec::new(),
    ))
}

async fn rpc(args: &BenchArgs) -> anyhow::Result<Report> {
    let cfg = args.client_config()?;
    let (procedure, payload) = if args.mode == Mode::Rpc {
        let callee = Client::connect(&cfg).await.context("callee session")?;
        let procedure = format!("bench.echo.{:08x}", rand::random::<u32>());
        callee
            .register(&procedure, Dict::new(), Arc::new(Ok))
            .await
            .context("registering the echo procedure")?;
        // Keep the callee alive for the whole run.
        std::mem::forget(callee);
        (
            procedure,
            Payload::args(vec![Value::Bytes(vec![0x5a; args.payload_size])]),
        )
    } else {
        let list: serde_json::Value =
            serde_json::from_str(&args.args).context("--args must be a JSON list")?;
        let bytes = serde_json::to_vec(&list)?;
        let value = Serializer::Json.decode_value(&bytes)?;
        (
            args.procedure.clone(),
            Payload {
                args: Some(value),
                kwargs: None,
            },
        )
    };
    let mut callers = Vec::new();
    for _ in 0..args.callers.max(1) {
        callers.push(Client::connect(&cfg).await.context("caller session")?);
    }
    // One warm-up call shows the procedure works before timing starts.
    callers[0]
        .call(&procedure, payload.clone(), Dict::new())
        .await
        .context("warm-up call")?;
    let remaining = Arc::new(AtomicU64::new(args.count));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(args.max_seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..args.inflight.max(1) {
        let client = callers[i % callers.len()].clone();
        let (remaining, errors, procedure, payload) = (
            remaining.clone(),
            errors.clone(),
            procedure.clone(),
            payload.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while remaining
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
                && Instant::now() < deadline
            {
                let t = Instant::now();
                match client.call(&procedure, payload.clone(), Dict::new()).await {
                    Ok(_) => lat.push(t.elapsed().as_micros() as u64),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = start.elapsed();
    Ok(report(
        args,
        lat.len() as u64,
        errors.load(Ordering::Relaxed),
        elapsed,
        lat,
    ))
}

async fn pubsub(args: &BenchArgs) -> anyhow::Result<Report> {
    let cfg = args.client_config()?;
    let topic = format!("bench.topic.{:08x}", rand::random::<u32>());
    let delivered = Arc::new(AtomicU64::new(0));
    let origin = Instant::now();
    let latencies = Arc::new(parking_lot::Mutex::new(Vec::new()));
    let mut subscribers = Vec::new();
    for _ in 0..args.subscribers.max(1) {
        let s = Client::connect(&cfg).await.context("subscriber session")?;
        let (delivered, latencies) = (delivered.clone(), latencies.clone());
        let handler = Arc::new(move |_details: Dict, payload: Payload| {
            let n = delivered.fetch_add(1, Ordering::Relaxed);
            // Sample latency on every 16th event to keep the handler cheap.
            if n % 16 == 0
                && let Some(sent) = payload.arg_list().first().and_then(Value::as_u64)
            {
                let now = origin.elapsed().as_micros() as u64;
                latencies.lock().push(now.saturating_sub(sent));
            }
        });
        s.subscribe(&topic, Dict::new(), handler)
            .await
            .context("subscribing")?;
        subscribers.push(s);
    }
    let publisher = Client::connect(&cfg).await.context("publisher session")?;
    let expected = args.count * subscribers.len() as u64;
    let filler = Value::Bytes(vec![0x5a; args.payload_size]);
    let start = Instant::now();
    let deadline = start + Duration::from_secs(args.max_seconds);
    let window = args.inflight.max(1) as u64;
    for i in 0..args.count {
        let payload = Payload::args(vec![
            (origin.elapsed().as_micros() as u64).into(),
            filler.clone(),
        ]);
        // Every `window` publications wait for PUBLISHED, which bounds what is queued in between.
        let ack = i % window == window - 1;
        publisher.publish(&topic, payload, Dict::new(), ack).await?;
        if Instant::now() > deadline {
            break;
        }
    }
    while delivered.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let elapsed = start.elapsed();
    let got = delivered.load(Ordering::Relaxed);
    let lat = latencies.lock().clone();
    Ok(report(
        args,
        got,
        expected.saturating_sub(got),
        elapsed,
        lat,
    ))
}
