//! Slow and stalled peer links on loopback: each of the runner's three replicas advertises a
//! proxy in front of its peer port, so every peer connection to it (appends, votes, forwarded
//! proposals and reads, `remote.*` routing, relayed events) crosses that proxy both ways. The
//! nemesis makes a proxy add latency to everything it carries (every byte held for the same
//! time, in order: latency, not a bandwidth cap), or stall it: it stops reading, as a link
//! that drops every packet does to TCP; what was sent flows again when it heals. The test's own
//! clients go to the replicas directly.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::time::Instant;

use crate::common::*;

/// What a proxy does to the bytes it carries, changed by the nemesis.
#[derive(Default)]
pub struct LinkControl {
    delay_ms: AtomicU64,
    stalled: AtomicBool,
}

/// The proxy in front of one replica's peer port.
pub struct Inbound {
    pub port: u16,
    control: Arc<LinkControl>,
    listener: tokio::task::JoinHandle<()>,
}

impl Inbound {
    /// Listens on a free loopback port and carries every connection to `target`.
    pub async fn start(target: u16) -> Inbound {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let control = Arc::new(LinkControl::default());
        let c = control.clone();
        let listener = tokio::spawn(async move {
            while let Ok((inbound, _)) = listener.accept().await {
                let c = c.clone();
                tokio::spawn(async move {
                    // A down replica refuses, and so does its proxy (the caller sees the
                    // connection close at once).
                    let Ok(outbound) = TcpStream::connect(("127.0.0.1", target)).await else {
                        return;
                    };
                    let _ = inbound.set_nodelay(true);
                    let _ = outbound.set_nodelay(true);
                    let (in_read, in_write) = inbound.into_split();
                    let (out_read, out_write) = outbound.into_split();
                    tokio::spawn(pump(in_read, out_write, c.clone()));
                    tokio::spawn(pump(out_read, in_write, c));
                });
            }
        });
        Inbound {
            port,
            control,
            listener,
        }
    }

    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn slow(&self, delay: Duration) {
        self.control
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    pub fn stall(&self) {
        self.control.stalled.store(true, Ordering::Relaxed);
    }

    pub fn heal(&self) {
        self.control.delay_ms.store(0, Ordering::Relaxed);
        self.control.stalled.store(false, Ordering::Relaxed);
    }
}

impl Drop for Inbound {
    fn drop(&mut self) {
        self.listener.abort();
    }
}

/// Carries one direction of a connection: each chunk read is written once its delay is over;
/// while stalled, nothing is read.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    control: Arc<LinkControl>,
) {
    // Bounded: a stalled or slow writer holds the reader back, as TCP's window would.
    let (queue, mut due) = tokio::sync::mpsc::channel::<(Instant, Vec<u8>)>(256);
    let writer = tokio::spawn(async move {
        while let Some((at, bytes)) = due.recv().await {
            tokio::time::sleep_until(at).await;
            if to.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = to.shutdown().await;
    });
    let mut buf = vec![0u8; 64 << 10];
    loop {
        while control.stalled.load(Ordering::Relaxed) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let delay = Duration::from_millis(control.delay_ms.load(Ordering::Relaxed));
        if queue
            .send((Instant::now() + delay, buf[..n].to_vec()))
            .await
            .is_err()
        {
            break;
        }
    }
    drop(queue);
    let _ = writer.await;
}

/// `common::three_with`, each replica advertising its proxy: the cluster's peer traffic to
/// replica N crosses `proxies[N - 1]`.
pub async fn three_behind_proxies(
    root: &std::path::Path,
    extra: &[String],
) -> (Vec<Replica>, Vec<Inbound>) {
    let mut replicas = Vec::new();
    let mut proxies = Vec::new();
    for id in 1..=3 {
        let mut r = Replica::new(id, root, Vec::new());
        let proxy = Inbound::start(r.peer_port).await;
        r.formation = match replicas.first() {
            None => vec!["--bootstrap".into()],
            Some(first) => vec!["--join".into(), Replica::peer(first)],
        };
        r.formation
            .extend(["--advertise".to_string(), proxy.addr()]);
        r.formation.extend(extra.iter().cloned());
        r.start();
        if id == 1 {
            wait_for(&r.peer(), "a leader", |s| s.leader == Some(1)).await;
        }
        replicas.push(r);
        proxies.push(proxy);
    }
    wait_for(&replicas[0].peer(), "three voters", |s| {
        s.voter_sets == vec![vec![1, 2, 3]]
    })
    .await;
    (replicas, proxies)
}
