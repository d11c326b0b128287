//! A linearizability checker for registers (one per key) that may also be absent (created,
//! modified only while present, deleted), in the manner of Wing & Gong with
//! Lowe's memoization (as porcupine and Knossos do): a depth-first search for an order of the
//! operations that respects real time (an operation that completed before another began comes
//! first) and the register's semantics (a read sees the last write before it).
//!
//! A write whose outcome is unknown (a timeout, a lost connection) may have taken effect at any
//! time after it began, or never: it is optional and open-ended. A write that failed with a
//! definite refusal is left out of the history: if a read sees its value, no order explains
//! it. Reads that failed tell nothing and are left out.

use std::collections::HashSet;
use std::time::{Duration, Instant};

#[derive(Clone, Debug, PartialEq)]
pub enum RegOp {
    /// Sets the value, whatever was there.
    Write(String),
    /// Sets the value of a key that exists (an update: refused on an absent key).
    Modify(String),
    /// Creates the key with a value (refused when it exists).
    Create(String),
    /// Removes the key (refused when absent).
    Delete,
    /// What the read returned (`None`: no value yet).
    Read(Option<String>),
    /// A compare-and-set that took effect: the value was one of `from` and became `to`.
    /// `step` ties together the steps of one call that moves the value more than once (a
    /// trace start goes stopped → starting → running): (the call's id, the step's place); a
    /// step is placed only after the call's step before it.
    Cas {
        from: Vec<String>,
        to: String,
        step: Option<(u64, u8)>,
    },
    /// A compare-and-set refused: the value was none of these (an absent key is none).
    CasRefused(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Operation {
    pub client: usize,
    pub op: RegOp,
    /// When the client sent it and when the answer came (ns since the run began); `None`:
    /// the outcome is unknown (writes only).
    pub invoke: u64,
    pub complete: Option<u64>,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Linearizable,
    /// With the operations that could not be placed, for the report.
    NotLinearizable(String),
    /// The search ran out of its time budget.
    Unknown,
}

/// Checks one register's history, starting from `initial`.
pub fn check(initial: Option<String>, ops: &[Operation], budget: Duration) -> Verdict {
    let mut ops: Vec<&Operation> = ops.iter().collect();
    ops.sort_by_key(|o| o.invoke);
    let n = ops.len();
    let required: Vec<bool> = ops.iter().map(|o| o.complete.is_some()).collect();
    let ends: Vec<u64> = ops.iter().map(|o| o.complete.unwrap_or(u64::MAX)).collect();
    // The step each step of a multi-step call must follow.
    let step_of = |o: &Operation| match o.op {
        RegOp::Cas { step, .. } => step,
        _ => None,
    };
    let follows: Vec<Option<usize>> = ops
        .iter()
        .map(|o| {
            let (call, place) = step_of(o)?;
            let before = place.checked_sub(1)?;
            ops.iter().position(|p| step_of(p) == Some((call, before)))
        })
        .collect();
    let deadline = Instant::now() + budget;
    let words = n.div_ceil(64).max(1);
    let mut done = vec![0u64; words];
    let mut seen: HashSet<(Vec<u64>, Option<String>)> = HashSet::new();
    // The search: a stack of (placed operation, the state before it).
    let mut stack: Vec<(usize, Option<String>)> = Vec::new();
    let mut state = initial;
    let mut next_candidate = 0usize;
    let mut deepest: Vec<usize> = Vec::new();
    let is_done = |done: &[u64], i: usize| done[i / 64] & (1 << (i % 64)) != 0;
    loop {
        if Instant::now() > deadline {
            return Verdict::Unknown;
        }
        if (0..n).all(|i| !required[i] || is_done(&done, i)) {
            return Verdict::Linearizable;
        }
        // The earliest completion among what is left: nothing that began after it may go next.
        let horizon = (0..n)
            .filter(|&i| !is_done(&done, i))
            .map(|i| ends[i])
            .min()
            .unwrap_or(u64::MAX);
        let mut placed = false;
        let mut i = next_candidate;
        while i < n && ops[i].invoke <= horizon {
            if !is_done(&done, i) && follows[i].is_none_or(|j| is_done(&done, j)) {
                let after = match &ops[i].op {
                    RegOp::Write(v) => Some(Some(v.clone())),
                    RegOp::Modify(v) => state.is_some().then(|| Some(v.clone())),
                    RegOp::Create(v) => state.is_none().then(|| Some(v.clone())),
                    RegOp::Delete => state.is_some().then_some(None),
                    RegOp::Read(v) => (*v == state).then(|| state.clone()),
                    RegOp::Cas { from, to, .. } => state
                        .as_ref()
                        .is_some_and(|v| from.contains(v))
                        .then(|| Some(to.clone())),
                    RegOp::CasRefused(from) => {
                        (!state.as_ref().is_some_and(|v| from.contains(v))).then(|| state.clone())
                    }
                };
                if let Some(new_state) = after {
                    let mut next_done = done.clone();
                    next_done[i / 64] |= 1 << (i % 64);
                    if seen.insert((next_done.clone(), new_state.clone())) {
                        stack.push((i, state.clone()));
                        done = next_done;
                        state = new_state;
                        next_candidate = 0;
                        placed = true;
                        if stack.len() > deepest.len() {
                            deepest = stack.iter().map(|(i, _)| *i).collect();
                        }
                        break;
                    }
                }
            }
            i += 1;
        }
        if placed {
            continue;
        }
        // Nothing fits here: undo the last placement and try its next sibling.
        let Some((last, before)) = stack.pop() else {
            let unplaced: Vec<String> = (0..n)
                .filter(|i| required[*i] && !deepest.contains(i))
                .take(6)
                .map(|i| format!("{:?}", ops[i]))
                .collect();
            return Verdict::NotLinearizable(format!(
                "{} of {n} operations placed at best; the first left over: {}",
                deepest.len(),
                unplaced.join("; ")
            ));
        };
        done[last / 64] &= !(1 << (last % 64));
        state = before;
        next_candidate = last + 1;
    }
}
