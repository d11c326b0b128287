//! Unit tests of the tracing API's pure parts.

use super::shape::*;
use super::*;

fn trace(eligible: Option<&[&str]>, exclude: Option<&[&str]>) -> Trace {
    let roles = |l: Option<&[&str]>| l.map(|l| l.iter().map(|r| r.to_string()).collect());
    Trace {
        mrealm_oid: Uuid::nil(),
        trace_id: "t1".into(),
        traced_workers: vec![],
        trace_options: None,
        eligible_reader_roles: roles(eligible),
        exclude_reader_roles: roles(exclude),
        status: STOPPED.into(),
        changed: None,
        changed_by: None,
    }
}

fn inv(args: Vec<Value>) -> Invocation {
    Invocation {
        procedure: "p".into(),
        payload: Payload {
            args: Some(Value::List(args)),
            kwargs: None,
        },
        details: Dict::new(),
    }
}

#[test]
fn reader_roles() {
    let open = trace(None, None);
    assert!(readable(&open, Some("public")) && readable(&open, None));
    let owners = trace(Some(&["owner"]), None);
    assert!(readable(&owners, Some("owner")));
    assert!(!readable(&owners, Some("guest")));
    assert!(!readable(&owners, None));
    let no_guests = trace(None, Some(&["guest"]));
    assert!(readable(&no_guests, Some("owner")));
    assert!(!readable(&no_guests, Some("guest")));
}

#[test]
fn traced_workers_are_pairs_of_ids() {
    let pair = |n: &str, w: &str| Value::List(vec![n.into(), w.into()]);
    let got = traced_workers_arg(&inv(vec![
        "t".into(),
        Value::List(vec![
            pair("node1", "rtr1"),
            pair("node1", "rtr1"),
            pair("n", "w"),
        ]),
    ]))
    .unwrap();
    assert_eq!(
        got,
        vec![("node1".into(), "rtr1".into()), ("n".into(), "w".into())]
    );
    for bad in [
        Value::from("node1"),
        Value::List(vec![Value::from("node1")]),
        Value::List(vec![pair("node1", "a.b")]),
        Value::List(vec![pair("", "rtr1")]),
        Value::List(vec![Value::List(vec!["n".into(), Value::Int(1)])]),
    ] {
        let e = traced_workers_arg(&inv(vec!["t".into(), bad.clone()])).unwrap_err();
        assert_eq!(e.uri, crate::wamp::errors::INVALID_ARGUMENT, "{bad:?}");
    }
}

#[test]
fn role_lists() {
    let roles = |v: Value| roles_arg(&inv(vec![v]), 0, "roles");
    assert_eq!(roles(Value::Null).unwrap(), None);
    assert_eq!(roles(Value::List(vec![])).unwrap(), None);
    assert_eq!(
        roles(Value::List(vec!["owner".into(), "owner".into()])).unwrap(),
        Some(vec!["owner".to_string()])
    );
    assert!(roles("owner".into()).is_err());
    assert!(roles(Value::List(vec![Value::Int(1)])).is_err());
    assert!(roles(Value::List(vec!["".into()])).is_err());
}

#[test]
fn trace_ids_and_limits() {
    assert!(valid_trace_id("trace-1.a"));
    assert!(!valid_trace_id(""));
    assert!(!valid_trace_id("a/b"));
    assert!(!valid_trace_id("a\nb"));
    assert_eq!(limit_arg(&inv(vec!["t".into()])).unwrap(), None);
    assert_eq!(
        limit_arg(&inv(vec!["t".into(), Value::Int(5)])).unwrap(),
        Some(5)
    );
    assert!(limit_arg(&inv(vec!["t".into(), Value::Int(0)])).is_err());
    assert!(limit_arg(&inv(vec!["t".into(), "5".into()])).is_err());
}

#[test]
fn failures_carry_the_node_status_and_error() {
    let e = CallError::new("crossbar.error.no_such_worker", "no worker w");
    let f = failed("n", "online", "w", Some(&e));
    assert_eq!(
        to_json(&f),
        serde_json::json!({"node_id": "n", "node_status": "online", "worker_id": "w",
            "error": "crossbar.error.no_such_worker: no worker w"})
    );
    let f = failed("n", "offline", "w", None);
    assert!(to_json(&f).get("error").is_none());
}
