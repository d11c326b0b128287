//! Unit tests of the event and argument mapping.

use super::mapping::*;
use super::*;

#[test]
fn node_events_map_to_remote_topics() {
    let args = vec![Value::from("x")];
    let (t, a) = remote_topic("crossbarfabriccenter.node.node1.on_router_started", &args)
        .expect("node-level");
    assert_eq!(t, "crossbarfabriccenter.remote.node.on_router_started");
    assert_eq!(a, vec![Value::from("node1"), Value::from("x")]);
    let (t, a) = remote_topic(
        "crossbarfabriccenter.node.node1.worker.rtr1.on_router_transport_started",
        &args,
    )
    .expect("worker-level");
    assert_eq!(
        t,
        "crossbarfabriccenter.remote.router.on_router_transport_started"
    );
    assert_eq!(a[..2], [Value::from("node1"), Value::from("rtr1")]);
    let (t, a) = remote_topic(
        "crossbarfabriccenter.node.node1.worker.rtr1.realm.rlm2.root.wamp-session-on_leave",
        &args,
    )
    .expect("realm meta");
    assert_eq!(
        t,
        "crossbarfabriccenter.remote.realm.meta.wamp.session.on_leave"
    );
    assert_eq!(a.len(), 4);
    let (t, _) = remote_topic("crossbarfabriccenter.node.node1.worker.rtr1.on_log", &args)
        .expect("log lines");
    assert_eq!(t, "crossbarfabriccenter.remote.worker.on_worker_log");
    let (t, _) = remote_topic(
        "crossbarfabriccenter.node.node1.worker.rtr1.on_realm_started",
        &args,
    )
    .expect("realm started");
    assert_eq!(
        t,
        "crossbarfabriccenter.remote.router.on_router_realm_started"
    );
}

#[test]
fn ids_outside_the_pattern_and_unknown_events_are_not_republished() {
    assert!(remote_topic("crossbarfabriccenter.node.Node1.on_router_started", &[]).is_none());
    assert!(remote_topic("crossbarfabriccenter.node.node1.on_whatever", &[]).is_none());
    assert!(remote_topic("crossbarfabriccenter.node.on_heartbeat", &[]).is_none());
}
