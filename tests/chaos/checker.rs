//! The checker's own tests: known linearizable and non-linearizable histories.

use std::time::Duration;

use crate::common::linearizability::{Operation, RegOp, Verdict, check};

fn w(client: usize, v: &str, invoke: u64, complete: Option<u64>) -> Operation {
    Operation {
        client,
        op: RegOp::Write(v.into()),
        invoke,
        complete,
    }
}

fn r(client: usize, v: Option<&str>, invoke: u64, complete: u64) -> Operation {
    Operation {
        client,
        op: RegOp::Read(v.map(str::to_owned)),
        invoke,
        complete: Some(complete),
    }
}

fn verdict(ops: &[Operation]) -> Verdict {
    check(None, ops, Duration::from_secs(5))
}

#[test]
fn sequential_and_overlapping_histories_are_linearizable() {
    assert_eq!(
        verdict(&[w(0, "a", 0, Some(10)), r(1, Some("a"), 20, 30)]),
        Verdict::Linearizable
    );
    // Concurrent write and read: the read may see the old or the new value.
    assert_eq!(
        verdict(&[
            w(0, "a", 0, Some(10)),
            w(0, "b", 20, Some(40)),
            r(1, Some("a"), 25, 30)
        ]),
        Verdict::Linearizable
    );
    assert_eq!(
        verdict(&[
            w(0, "a", 0, Some(10)),
            w(0, "b", 20, Some(40)),
            r(1, Some("b"), 25, 30)
        ]),
        Verdict::Linearizable
    );
    // A write with unknown outcome may take effect late, or never.
    assert_eq!(
        verdict(&[
            w(0, "a", 0, None),
            r(1, None, 5, 6),
            r(1, Some("a"), 100, 110)
        ]),
        Verdict::Linearizable
    );
    assert_eq!(
        verdict(&[w(0, "a", 0, None), r(1, None, 100, 110)]),
        Verdict::Linearizable
    );
}

#[test]
fn stale_reads_and_invented_values_are_not_linearizable() {
    // The stale read of issue 12: b acknowledged before the read began, the read saw a.
    assert!(matches!(
        verdict(&[
            w(0, "a", 0, Some(10)),
            w(1, "b", 20, Some(30)),
            r(2, Some("a"), 40, 50)
        ]),
        Verdict::NotLinearizable(_)
    ));
    // A value nobody wrote (or a refused write's, which is left out of the history).
    assert!(matches!(
        verdict(&[w(0, "a", 0, Some(10)), r(1, Some("z"), 20, 30)]),
        Verdict::NotLinearizable(_)
    ));
    // Two reads that disagree on the order of two writes.
    assert!(matches!(
        verdict(&[
            w(0, "a", 0, Some(100)),
            w(1, "b", 0, Some(100)),
            r(2, Some("a"), 110, 120),
            r(3, Some("b"), 130, 140),
            r(2, Some("a"), 150, 160),
        ]),
        Verdict::NotLinearizable(_)
    ));
    // An acknowledged write lost: read the initial value after it completed.
    assert!(matches!(
        verdict(&[w(0, "a", 0, Some(10)), r(1, None, 20, 30)]),
        Verdict::NotLinearizable(_)
    ));
}

#[test]
fn creates_and_deletes_are_checked_against_presence() {
    let op = |client: usize, op: RegOp, invoke: u64, complete: u64| Operation {
        client,
        op,
        invoke,
        complete: Some(complete),
    };
    let init = Some("a".to_string());
    // delete, read absent, create, read the new value: linearizable.
    let ok = [
        op(0, RegOp::Delete, 0, 10),
        op(1, RegOp::Read(None), 20, 30),
        op(0, RegOp::Create("b".into()), 40, 50),
        op(1, RegOp::Read(Some("b".into())), 60, 70),
    ];
    assert_eq!(
        check(init.clone(), &ok, Duration::from_secs(5)),
        Verdict::Linearizable
    );
    // A create that succeeded while the key existed (no delete before it): not linearizable.
    let double_create = [
        op(0, RegOp::Modify("b".into()), 0, 10),
        op(1, RegOp::Create("c".into()), 20, 30),
    ];
    assert!(matches!(
        check(init.clone(), &double_create, Duration::from_secs(5)),
        Verdict::NotLinearizable(_)
    ));
    // A modify acknowledged after a completed delete, with no create between: not linearizable.
    let modify_absent = [
        op(0, RegOp::Delete, 0, 10),
        op(1, RegOp::Modify("b".into()), 20, 30),
    ];
    assert!(matches!(
        check(init.clone(), &modify_absent, Duration::from_secs(5)),
        Verdict::NotLinearizable(_)
    ));
    // The old value read after the delete completed: a stale read.
    let stale = [
        op(0, RegOp::Delete, 0, 10),
        op(1, RegOp::Read(Some("a".into())), 20, 30),
    ];
    assert!(matches!(
        check(init, &stale, Duration::from_secs(5)),
        Verdict::NotLinearizable(_)
    ));
}

/// A trace's status under start (stopped → starting → running) and stop (running or
/// stopping-failed → stopping → stopped), each call two compare-and-sets.
fn trace_call(call: u64, start: bool, invoke: u64, complete: Option<u64>) -> [Operation; 2] {
    let (from, mid, to): (&[&str], &str, &str) = if start {
        (&["stopped"], "starting", "running")
    } else {
        (&["running", "stopping-failed"], "stopping", "stopped")
    };
    let step = |place: u8, from: Vec<String>, to: &str| Operation {
        client: call as usize,
        op: RegOp::Cas {
            from,
            to: to.into(),
            step: Some((call, place)),
        },
        invoke,
        complete,
    };
    [
        step(0, from.iter().map(|s| s.to_string()).collect(), mid),
        step(1, vec![mid.to_string()], to),
    ]
}

fn refused(client: usize, from: &[&str], invoke: u64, complete: u64) -> Operation {
    Operation {
        client,
        op: RegOp::CasRefused(from.iter().map(|s| s.to_string()).collect()),
        invoke,
        complete: Some(complete),
    }
}

fn status(ops: &[Operation]) -> Verdict {
    check(Some("stopped".into()), ops, Duration::from_secs(5))
}

#[test]
fn compare_and_set_histories_are_checked() {
    // start, read running, a start refused, stop, read stopped; a read of the middle step
    // while a call is in flight.
    let mut ok: Vec<Operation> = trace_call(1, true, 0, Some(10)).into();
    ok.push(r(9, Some("running"), 20, 30));
    ok.push(refused(2, &["stopped"], 40, 50));
    ok.extend(trace_call(3, false, 60, Some(100)));
    ok.push(r(9, Some("stopping"), 70, 80));
    ok.push(r(9, Some("stopped"), 110, 120));
    assert_eq!(status(&ok), Verdict::Linearizable);
    // A start whose answer was lost may have happened (or not).
    let mut lost: Vec<Operation> = trace_call(1, true, 0, None).into();
    lost.push(r(9, Some("running"), 20, 30));
    assert_eq!(status(&lost), Verdict::Linearizable);
    let mut lost: Vec<Operation> = trace_call(1, true, 0, None).into();
    lost.push(r(9, Some("stopped"), 20, 30));
    assert_eq!(status(&lost), Verdict::Linearizable);

    // Two acknowledged starts with no stop between them.
    let mut twice: Vec<Operation> = trace_call(1, true, 0, Some(10)).into();
    twice.extend(trace_call(2, true, 20, Some(30)));
    assert!(matches!(status(&twice), Verdict::NotLinearizable(_)));
    // A start refused while the trace was stopped and nothing else ran.
    assert!(matches!(
        status(&[refused(1, &["stopped"], 0, 10)]),
        Verdict::NotLinearizable(_)
    ));
    // The middle step seen after the call completed.
    let mut stuck: Vec<Operation> = trace_call(1, true, 0, Some(10)).into();
    stuck.push(r(9, Some("starting"), 20, 30));
    assert!(matches!(status(&stuck), Verdict::NotLinearizable(_)));
    // The second step seen before the first: running, then starting, within one call.
    let mut backwards: Vec<Operation> = trace_call(1, true, 0, Some(100)).into();
    backwards.push(r(9, Some("running"), 10, 20));
    backwards.push(r(9, Some("starting"), 30, 40));
    assert!(matches!(status(&backwards), Verdict::NotLinearizable(_)));
}
