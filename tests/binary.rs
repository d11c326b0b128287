//! The real `fabric-master` binary over real sockets, driven by the project's own client.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ed25519_dalek::SigningKey;
use fabric_master::client::{Client, ClientConfig, ClientError};
use fabric_master::wamp::{Dict, Payload, Protocol, Serializer, Value};

struct Master {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
    key: SigningKey,
}

impl Drop for Master {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts the binary on a free port and waits for `/readyz`. The port is picked by binding `:0`
/// and releasing it, so another process (another test's master binding its peer port to `:0`)
/// can take it first: a master that exits with the port taken is started again on a new one.
fn start(extra: &[&str]) -> Master {
    start_logging_to(extra, None)
}

/// `start` with the master's stderr sent to `log` (its own log file when `None`).
fn start_logging_to(extra: &[&str], log: Option<&str>) -> Master {
    for _ in 0..5 {
        if let Some(master) = try_start(extra, log) {
            return master;
        }
    }
    panic!(
        "master exited before it was ready, 5 times (its port taken, or its log elsewhere says why)"
    );
}

fn try_start(extra: &[&str], log_to: Option<&str>) -> Option<Master> {
    let dir = tempfile::tempdir().unwrap();
    let key = SigningKey::from_bytes(&rand::random());
    fabric_master::auth::keyfile::write_key_pair(dir.path(), "su", &key, "superuser").unwrap();
    let port = free_port();
    let log_path = dir.path().join("master.log");
    let log = match log_to {
        Some(path) => std::fs::OpenOptions::new().write(true).open(path).unwrap(),
        None => std::fs::File::create(&log_path).unwrap(),
    };
    let child = Command::new(env!("CARGO_BIN_EXE_fabric-master"))
        // Stop at once: these tests do not exercise the drain (tests/python/test_cluster.py does).
        .env("FABRIC_DRAIN_DELAY_MS", "0")
        .env("FABRIC_DRAIN_WINDOW_MS", "0")
        .args([
            "start",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--peer-listen",
            "127.0.0.1:0",
            "--data-dir",
        ])
        .arg(dir.path().join("data"))
        .arg("--superuser")
        .arg(dir.path().join("su.pub"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let mut master = Master {
        child,
        port,
        _dir: dir,
        key,
    };
    // Generous: six masters start at once on a shared two-core CI machine.
    let deadline = Instant::now() + Duration::from_secs(30);
    while http_get(port, "/readyz").is_none_or(|r| !r.starts_with("HTTP/1.1 200")) {
        let log = || std::fs::read_to_string(&log_path).unwrap_or_default();
        if let Some(status) = master.child.try_wait().unwrap() {
            let log = log();
            // (With its log elsewhere, its reason cannot be read here: try again too.)
            if log.contains("in use") || log_to.is_some() {
                return None;
            }
            panic!("master exited with {status} before it was ready:\n{log}");
        }
        assert!(
            Instant::now() < deadline,
            "master did not become ready in 30 s:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    Some(master)
}

fn http_get(port: u16, path: &str) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

fn config(m: &Master, serializer: Serializer, key: Option<SigningKey>) -> ClientConfig {
    ClientConfig {
        url: format!("ws://127.0.0.1:{}/ws", m.port),
        realm: None,
        protocol: Protocol {
            serializer,
            batched: false,
        },
        authid: None,
        authrole: None,
        key,
    }
}

#[test]
fn http_routes_answer() {
    let m = start(&[]);
    assert!(
        http_get(m.port, "/healthz")
            .unwrap()
            .starts_with("HTTP/1.1 200")
    );
    assert!(
        http_get(m.port, "/nope")
            .unwrap()
            .starts_with("HTTP/1.1 404")
    );
    assert!(http_get(m.port, "/ws").unwrap().starts_with("HTTP/1.1 426"));
    assert!(
        http_get(m.port, "/metrics")
            .unwrap()
            .contains("fabric_sessions 0")
    );
}

/// A log that cannot be written (stderr on a full disk: `/dev/full` fails every write) loses
/// lines, counted on `/metrics`, and the master serves on. It used to exit with a panic at its
/// first log line: tracing-subscriber reported the failed write with `eprint!`, which panics
/// when stderr fails.
#[tokio::test]
async fn a_full_disk_under_the_log_loses_lines_not_the_master() {
    let m = start_logging_to(&[], Some("/dev/full"));
    let su = Client::connect(&config(&m, Serializer::Json, Some(m.key.clone())))
        .await
        .expect("the superuser joins");
    let answer = su
        .call(
            "crossbarfabriccenter.domain.get_status",
            Payload::default(),
            Dict::new(),
        )
        .await
        .expect("a management call answered");
    assert!(!answer.arg_list().is_empty());
    let metrics = http_get(m.port, "/metrics").unwrap();
    let lost: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("fabric_log_lines_lost_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("fabric_log_lines_lost_total on /metrics");
    assert!(lost >= 1.0, "the lost lines are counted: {lost}");
    su.close();
}

#[tokio::test]
async fn superuser_rpc_in_every_serializer() {
    let m = start(&[]);
    for ser in [Serializer::Cbor, Serializer::MsgPack, Serializer::Json] {
        let callee = Client::connect(&config(&m, ser, Some(m.key.clone())))
            .await
            .unwrap();
        assert_eq!(callee.welcome["authid"], Value::from("superuser"));
        assert_eq!(callee.welcome["authrole"], Value::from("user"));
        assert_eq!(
            callee.welcome["realm"],
            Value::from("com.crossbario.fabric")
        );
        assert!(
            callee.welcome["authextra"].is_truthy(),
            "edge nodes need a non-empty authextra"
        );
        let proc_ = format!("com.test.add.{ser:?}");
        callee
            .register(
                &proc_,
                Dict::new(),
                std::sync::Arc::new(|p: Payload| {
                    let sum: i64 = p
                        .arg_list()
                        .iter()
                        .filter_map(|v| {
                            if let Value::Int(i) = v {
                                Some(*i)
                            } else {
                                None
                            }
                        })
                        .sum();
                    Ok(Payload::args(vec![
                        Value::Int(sum),
                        Value::Bytes(vec![0, 1, 2]),
                    ]))
                }),
            )
            .await
            .unwrap();
        let caller = Client::connect(&config(&m, ser, Some(m.key.clone())))
            .await
            .unwrap();
        let out = caller
            .call(
                &proc_,
                Payload::args(vec![Value::Int(2), Value::Int(40)]),
                Dict::new(),
            )
            .await
            .unwrap();
        assert_eq!(
            out.arg_list(),
            &[Value::Int(42), Value::Bytes(vec![0, 1, 2])]
        );
        let count = caller
            .call("wamp.session.count", Payload::default(), Dict::new())
            .await
            .unwrap();
        assert!(count.arg_list()[0].as_u64().unwrap() >= 2);
        let err = caller
            .call("com.test.missing", Payload::default(), Dict::new())
            .await
            .unwrap_err();
        assert!(
            matches!(err, ClientError::Wamp { ref error, .. } if error == "wamp.error.no_such_procedure"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn unknown_key_and_anonymous_limits() {
    let m = start(&[]);
    let stranger = SigningKey::from_bytes(&[9u8; 32]);
    match Client::connect(&config(&m, Serializer::Cbor, Some(stranger))).await {
        Err(ClientError::Aborted { reason, .. }) => {
            assert!(reason.starts_with("fabric.auth-failed."), "{reason}")
        }
        Err(e) => panic!("expected ABORT, got {e}"),
        Ok(_) => panic!("an unknown key was welcomed"),
    }
    let anon = Client::connect(&config(&m, Serializer::Json, None))
        .await
        .unwrap();
    assert_eq!(anon.welcome["authrole"], Value::from("public"));
    let err = anon
        .call("wamp.session.count", Payload::default(), Dict::new())
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Wamp { ref error, .. } if error == "wamp.error.not_authorized"),
        "{err}"
    );
    let err = anon
        .register(
            "crossbarfabriccenter.public.x",
            Dict::new(),
            std::sync::Arc::new(Ok),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(err, ClientError::Wamp { ref error, .. } if error == "wamp.error.not_authorized"),
        "{err}"
    );
}

#[tokio::test]
async fn oversized_message_closes_with_1009_and_service_goes_on() {
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::{
        Message as Ws, client::IntoClientRequest, http::HeaderValue,
    };
    let m = start(&["--max-message-size", "65536"]);
    let mut req = format!("ws://127.0.0.1:{}/ws", m.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("wamp.2.json"),
    );
    let (mut ws, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "wamp.2.json");
    ws.send(Ws::text("x".repeat(100_000))).await.unwrap();
    let close = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            if let Ok(Ws::Close(frame)) = msg {
                return frame.map(|f| u16::from(f.code));
            }
        }
        None
    })
    .await
    .unwrap();
    assert_eq!(close, Some(1009));
    let client = Client::connect(&config(&m, Serializer::Cbor, Some(m.key.clone())))
        .await
        .unwrap();
    client
        .call("wamp.session.count", Payload::default(), Dict::new())
        .await
        .unwrap();
}

#[tokio::test]
async fn hello_deadline_closes_idle_connections() {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::{
        Message as Ws, client::IntoClientRequest, http::HeaderValue,
    };
    let m = start(&["--hello-timeout-ms", "300"]);
    let mut req = format!("ws://127.0.0.1:{}/ws", m.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("wamp.2.cbor"),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(msg) = ws.next().await {
            match msg {
                Ok(Ws::Close(_)) | Err(_) => return true,
                _ => {}
            }
        }
        true
    })
    .await;
    assert_eq!(
        closed,
        Ok(true),
        "the server must close a connection that never says HELLO"
    );
}

#[tokio::test]
async fn sigterm_says_goodbye_to_sessions_and_exits() {
    let mut m = start(&[]);
    let client = Client::connect(&config(&m, Serializer::Cbor, Some(m.key.clone())))
        .await
        .unwrap();
    let pid = m.child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            if let Some(s) = m.child.try_wait().unwrap() {
                return Some(s);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    let status = status.expect("the master exits within 5 s of SIGTERM");
    assert!(status.success(), "clean exit on SIGTERM, got {status:?}");
    let call = client.call("wamp.session.count", Payload::default(), Dict::new());
    let err = tokio::time::timeout(Duration::from_secs(5), call)
        .await
        .expect("a call on a closed session fails at once")
        .unwrap_err();
    assert!(matches!(err, ClientError::Closed), "{err}");
    assert_eq!(
        client.close_reason().as_deref(),
        Some("wamp.close.system_shutdown")
    );
}
