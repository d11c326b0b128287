//! A master run inside the test process through `server::run(settings, listeners,
//! shutdown)`: it serves real sockets on loopback, answers management calls, and on shutdown
//! closes its sessions with `wamp.close.system_shutdown` and returns.
//!
//! Background tasks (realm sync, presence lease, relay) keep the replica, and so the redb
//! file, until the runtime ends: a second master on the same data dir needs a new runtime.

use std::time::Duration;

use fabric_master::auth::keyfile;
use fabric_master::client::{Client, ClientConfig};
use fabric_master::config::FileConfig;
use fabric_master::server::{self, Listeners, Settings};
use fabric_master::wamp::{Dict, Payload, Protocol, Serializer, Value};
use tokio::net::TcpListener;

/// Binds both ports on loopback (port 0) and starts a master on a fresh data dir.
async fn start_master(
    data_dir: &std::path::Path,
) -> (
    u16,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<()>>,
) {
    let mut settings = Settings::from_file(FileConfig::default());
    settings.data_dir = data_dir.to_path_buf();
    settings.drain = fabric_master::server::DrainSettings {
        delay: std::time::Duration::ZERO,
        window: std::time::Duration::ZERO,
    };
    let listeners = Listeners {
        ws: TcpListener::bind("127.0.0.1:0").await.unwrap(),
        peer: TcpListener::bind("127.0.0.1:0").await.unwrap(),
    };
    let port = listeners.ws.local_addr().unwrap().port();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let served = tokio::spawn(server::run(settings, listeners, async {
        let _ = stopped.await;
    }));
    (port, stop, served)
}

/// Joins the global realm as the superuser once the master accepts sessions (bounded).
async fn join_superuser(
    port: u16,
    data_dir: &std::path::Path,
    served: &mut tokio::task::JoinHandle<anyhow::Result<()>>,
) -> Client {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let priv_path = data_dir.join("superuser.priv");
        if let Ok((key, _)) = keyfile::read_private_key(&priv_path) {
            let cfg = ClientConfig {
                url: format!("ws://127.0.0.1:{port}/ws"),
                realm: None,
                protocol: Protocol {
                    serializer: Serializer::Cbor,
                    batched: false,
                },
                authid: None,
                authrole: None,
                key: Some(key),
            };
            if let Ok(client) = Client::connect(&cfg).await {
                return client;
            }
        }
        if served.is_finished() {
            panic!("the master stopped: {:?}", served.await);
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the in-process master did not accept the superuser within 20 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_management_calls_and_shuts_down_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (port, stop, mut served) = start_master(dir.path()).await;
    let su = join_superuser(port, dir.path(), &mut served).await;

    // A write and a linearizable read through the whole stack: router, API, replica, Raft.
    let name = "inproc1";
    let created = su
        .call(
            "crossbarfabriccenter.mrealm.create_mrealm",
            Payload::args(vec![Value::Dict(Dict::from_iter([(
                "name".to_string(),
                Value::from(name),
            )]))]),
            Dict::new(),
        )
        .await
        .expect("create_mrealm");
    let listed = su
        .call(
            "crossbarfabriccenter.mrealm.list_mrealms",
            Payload::args(vec![Value::Bool(true)]),
            Dict::new(),
        )
        .await
        .expect("list_mrealms");
    assert!(created.args.is_some());
    assert_eq!(
        listed.args,
        Some(Value::List(vec![Value::List(vec![Value::from(name)])]))
    );

    // Bad input is answered with the error URI, not a dropped session.
    let refused = su
        .call(
            "crossbarfabriccenter.mrealm.get_mrealm",
            Payload::args(vec![Value::from("not-a-uuid")]),
            Dict::new(),
        )
        .await
        .expect_err("a malformed oid is refused");
    assert!(
        refused.to_string().contains("wamp.error.invalid_argument"),
        "{refused}"
    );

    stop.send(()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), served)
        .await
        .expect("run returns within 10 s of shutdown")
        .expect("the server task did not panic");
    result.expect("run ends without an error");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while su.close_reason().is_none() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        su.close_reason().as_deref(),
        Some("wamp.close.system_shutdown")
    );
}
