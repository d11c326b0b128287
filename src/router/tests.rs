//! Unit tests of the dealer and the broker: internal sessions on one realm, no sockets.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::internal::{Caller, Event, Handler, InternalSession};
use super::realm::Realm;
use super::role::{Permission, Role};
use crate::wamp::{CallError, Message, Payload, Value, errors, random_id};

fn realm() -> Arc<Realm> {
    let everything = Role {
        name: "user".into(),
        permissions: vec![Permission::all("")],
    };
    Realm::new("test.realm".into(), vec![everything], vec![], None, None)
}

/// A handler that answers with the sum of its integer arguments.
fn adder() -> Handler {
    Arc::new(|inv| {
        Box::pin(async move {
            let sum: i64 = inv.args().iter().filter_map(Value::as_i64).sum();
            Ok(Payload::args(vec![Value::Int(sum)]))
        })
    })
}

async fn callee(realm: &Arc<Realm>, procedure: &str, handler: Handler) -> (InternalSession, u64) {
    let mut s = InternalSession::join(realm.clone(), "callee", "user");
    let registration = s.register(procedure, false, handler).await.unwrap();
    (s, registration)
}

/// A calling session, served so its answers reach it.
fn caller(realm: &Arc<Realm>, authid: &str) -> Caller {
    let session = InternalSession::join(realm.clone(), authid, "user");
    let caller = session.caller();
    tokio::spawn(session.serve());
    caller
}

const SHORT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn a_call_reaches_the_callee_and_its_result_the_caller() {
    let realm = realm();
    let (s, _) = callee(&realm, "com.example.add", adder()).await;
    tokio::spawn(s.serve());
    let caller = caller(&realm, "caller");
    let out = caller
        .call(
            "com.example.add",
            Payload::args(vec![Value::Int(2), Value::Int(3)]),
            SHORT,
        )
        .await
        .unwrap();
    assert_eq!(out.args, Some(Value::List(vec![Value::Int(5)])));
}

#[tokio::test]
async fn the_callee_sees_who_calls_when_it_asked_for_disclosure() {
    let realm = realm();
    let (tx, mut rx) = mpsc::unbounded_channel();
    let handler: Handler = Arc::new(move |inv| {
        let _ = tx.send(inv.caller_authid().map(str::to_owned));
        Box::pin(async { Ok(Payload::default()) })
    });
    let (s, _) = callee(&realm, "com.example.who", handler).await;
    tokio::spawn(s.serve());
    let caller = caller(&realm, "alice");
    caller
        .call("com.example.who", Payload::default(), SHORT)
        .await
        .unwrap();
    assert_eq!(rx.recv().await.unwrap().as_deref(), Some("alice"));
}

#[tokio::test]
async fn unknown_procedures_and_second_registrations_are_refused() {
    let realm = realm();
    let (s, _) = callee(&realm, "com.example.add", adder()).await;
    tokio::spawn(s.serve());
    let caller = caller(&realm, "caller");
    let e = caller
        .call("com.example.nope", Payload::default(), SHORT)
        .await
        .unwrap_err();
    assert_eq!(e.uri, errors::NO_SUCH_PROCEDURE);

    let mut other = InternalSession::join(realm.clone(), "other", "user");
    let e = other
        .register("com.example.add", false, adder())
        .await
        .unwrap_err();
    assert_eq!(e.uri, errors::PROCEDURE_ALREADY_EXISTS);
}

#[tokio::test]
async fn a_callee_that_does_not_answer_times_the_call_out() {
    let realm = realm();
    let slow: Handler = Arc::new(|_| {
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Payload::default())
        })
    });
    let (s, _) = callee(&realm, "com.example.slow", slow).await;
    tokio::spawn(s.serve());
    let caller = caller(&realm, "caller");
    let e: CallError = caller
        .call(
            "com.example.slow",
            Payload::default(),
            Duration::from_millis(50),
        )
        .await
        .unwrap_err();
    assert_eq!(e.uri, errors::TIMEOUT);
}

#[tokio::test]
async fn an_unregistered_procedure_is_gone() {
    let realm = realm();
    let (s, registration) = callee(&realm, "com.example.add", adder()).await;
    let callee_id = s.id();
    tokio::spawn(s.serve());
    realm
        .handle(
            callee_id,
            Message::Unregister {
                request: random_id(),
                registration,
            },
        )
        .unwrap();
    let caller = caller(&realm, "caller");
    let e = caller
        .call("com.example.add", Payload::default(), SHORT)
        .await
        .unwrap_err();
    assert_eq!(e.uri, errors::NO_SUCH_PROCEDURE);
    // The name is free again.
    let mut again = InternalSession::join(realm.clone(), "again", "user");
    again
        .register("com.example.add", false, adder())
        .await
        .unwrap();
}

/// A subscriber whose events arrive on a channel, in order.
async fn subscriber(
    realm: &Arc<Realm>,
    topics: &[(&str, bool)],
) -> (u64, Vec<u64>, mpsc::UnboundedReceiver<Event>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut s = InternalSession::join(realm.clone(), "subscriber", "user");
    let mut ids = Vec::new();
    for (topic, prefix) in topics {
        let tx = tx.clone();
        ids.push(
            s.subscribe(topic, *prefix, Arc::new(move |e| drop(tx.send(e))))
                .await
                .unwrap(),
        );
    }
    let id = s.id();
    tokio::spawn(s.serve());
    (id, ids, rx)
}

async fn next(rx: &mut mpsc::UnboundedReceiver<Event>) -> Event {
    tokio::time::timeout(SHORT, rx.recv())
        .await
        .expect("an event within 5 s")
        .expect("the subscriber is alive")
}

#[tokio::test]
async fn publications_reach_exact_and_prefix_subscribers_in_order() {
    let realm = realm();
    let (_, _, mut rx) = subscriber(&realm, &[("com.example.t", false), ("com.other", true)]).await;
    realm.publish_internal("com.example.t", vec![Value::Int(1)]);
    realm.publish_internal("com.example.unrelated", vec![Value::Int(2)]);
    realm.publish_internal("com.other.deep.topic", vec![Value::Int(3)]);
    let first = next(&mut rx).await;
    assert_eq!(
        (first.topic.as_str(), first.args()),
        ("com.example.t", &[Value::Int(1)][..])
    );
    // The unrelated publication never arrives: the next event is the prefix match.
    let second = next(&mut rx).await;
    assert_eq!(second.topic, "com.other.deep.topic");
    assert_eq!(second.args(), &[Value::Int(3)]);
}

#[tokio::test]
async fn an_unsubscribed_topic_is_no_longer_delivered() {
    let realm = realm();
    let (sid, ids, mut rx) = subscriber(
        &realm,
        &[("com.example.t", false), ("com.example.marker", false)],
    )
    .await;
    realm
        .handle(
            sid,
            Message::Unsubscribe {
                request: random_id(),
                subscription: ids[0],
            },
        )
        .unwrap();
    realm.publish_internal("com.example.t", vec![]);
    realm.publish_internal("com.example.marker", vec![]);
    // Events of one session arrive in order: the marker proves the first was not sent.
    assert_eq!(next(&mut rx).await.topic, "com.example.marker");
}

#[tokio::test]
async fn a_second_call_under_a_request_id_in_flight_is_refused() {
    let realm = realm();
    let (tx, mut invoked) = mpsc::unbounded_channel();
    let slow: Handler = Arc::new(move |_| {
        let _ = tx.send(());
        Box::pin(async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Ok(Payload::default())
        })
    });
    let (s, _) = callee(&realm, "com.example.slow", slow).await;
    tokio::spawn(s.serve());
    // A raw caller: its answers arrive on its own inbox.
    let (tx, mut inbox) = crate::transport::outbox(crate::transport::Budget::unlimited(16));
    let info = super::session_info::SessionInfo {
        id: random_id(),
        realm: "test.realm".into(),
        authid: "raw".into(),
        authrole: "user".into(),
        authmethod: "anonymous".into(),
        authprovider: "static".into(),
        authextra: Default::default(),
        peer: "test".into(),
        protocol: "internal".into(),
        callee_call_canceling: false,
        callee_progressive_results: false,
        joined: String::new(),
    };
    let sid = info.id;
    let role = realm.role("user").expect("the test realm's role");
    realm.attach(info, role, None, tx, Arc::new(tokio::sync::Notify::new()));
    let call = |request| Message::Call {
        request,
        options: Default::default(),
        procedure: "com.example.slow".into(),
        payload: Payload::default(),
    };
    realm.handle(sid, call(7)).unwrap();
    realm.handle(sid, call(7)).unwrap();
    let answer = tokio::time::timeout(SHORT, inbox.recv())
        .await
        .unwrap()
        .unwrap();
    let crate::transport::Outgoing::Message(out) = answer else {
        panic!("closed")
    };
    match &out.message {
        Message::Error { request, error, .. } => {
            assert_eq!((*request, error.as_str()), (7, errors::PROTOCOL_VIOLATION));
        }
        other => panic!("expected an ERROR, got {other:?}"),
    }
    // Only the first call reached the callee.
    invoked.recv().await.unwrap();
    assert!(invoked.try_recv().is_err());
}
