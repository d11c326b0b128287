//! A client's first messages, as the router's session sees them: HELLO (cryptosign, anonymous,
//! anything), AUTHENTICATE with any signature, and whatever follows on an anonymous session
//! (calls, registrations, publications, subscriptions). The input is a msgpack batched frame;
//! the session must never panic, whatever order or content.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, LazyLock};

use fabric_master::auth::{AnonymousRealm, StaticAuthenticator};
use fabric_master::router::{Router, RouterOptions, Session};
use fabric_master::transport::{Flow, SessionHandler};
use fabric_master::wamp::Protocol;
use libfuzzer_sys::fuzz_target;

static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime")
});

static ROUTER: LazyLock<Arc<Router>> = LazyLock::new(|| {
    let superuser = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]).verifying_key();
    let realms = [fabric_master::config::global_realm()];
    let anonymous = realms
        .iter()
        .map(|r| AnonymousRealm {
            realm: r.name.clone(),
            role: r.anonymous_role.clone(),
        })
        .collect();
    let authenticator = Arc::new(StaticAuthenticator::new(vec![superuser], anonymous));
    let router = RUNTIME.block_on(async {
        Router::new(
            authenticator,
            RouterOptions {
                node_name: "fuzz".into(),
                outbound: fabric_master::transport::Budget::unlimited(1024),
                default_call_timeout_ms: Some(10),
                session_limits: fabric_master::router::SessionLimits {
                    pending_calls: 4,
                    registrations: 4,
                    subscriptions: 4,
                },
            },
            None,
        )
    });
    for r in &realms {
        router.add_realm(r.spec());
    }
    router
});

fuzz_target!(|data: &[u8]| {
    let protocol = Protocol::parse("wamp.2.msgpack.batched").expect("known");
    let Ok(messages) = protocol.decode_frame(data) else {
        return;
    };
    let router = ROUTER.clone();
    RUNTIME.block_on(async move {
        let peer: SocketAddr = "127.0.0.1:1".parse().expect("an address");
        let (mut session, _inbox, _kill) =
            Session::open(router, peer, protocol, Default::default());
        for msg in messages {
            if let Flow::Close = session.on_message(msg).await {
                break;
            }
        }
        session.on_close();
    });
});
