//! A connection's outgoing queue, bounded in messages and in bytes. A session that does not
//! read (a subscriber or callee that stalls) fills only its own budget; then it is dropped,
//! and nobody who sends to it ever waits. When the whole replica holds more than its total
//! budget, the sessions with the largest queues are dropped first.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::sync::mpsc;

use super::Outgoing;

/// Bytes queued for all connections of this replica (`/metrics`).
static QUEUED_TOTAL: AtomicUsize = AtomicUsize::new(0);

pub fn queued_total() -> usize {
    QUEUED_TOTAL.load(Ordering::Relaxed)
}

/// How much may wait for one connection, and for all of them together.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub messages: usize,
    pub bytes: usize,
    /// All connections of the replica together.
    pub total_bytes: usize,
    /// All connections of one realm together (swept by the router, `router::realm_budget`).
    pub realm_bytes: usize,
}

impl Budget {
    /// Internal sessions: read by the master itself, bounded only in messages.
    pub fn unlimited(messages: usize) -> Budget {
        Budget {
            messages,
            bytes: usize::MAX,
            total_bytes: usize::MAX,
            realm_bytes: usize::MAX,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SendError {
    #[error("the session reads too slowly: {queued} bytes already queued for it")]
    OverBudget { queued: usize },
    #[error("the session reads too slowly: its queue holds the most messages allowed")]
    Full,
    #[error("the connection is closed")]
    Closed,
}

/// The sending side; cheap to clone.
#[derive(Clone, Debug)]
pub struct Outbox {
    tx: mpsc::Sender<Outgoing>,
    queued: Arc<AtomicUsize>,
    budget: Budget,
}

/// The connection's side: takes messages and, once written, gives their bytes back.
pub struct Inbox {
    rx: mpsc::Receiver<Outgoing>,
    queued: Arc<AtomicUsize>,
}

pub fn outbox(budget: Budget) -> (Outbox, Inbox) {
    let (tx, rx) = mpsc::channel(budget.messages.max(1));
    let queued = Arc::new(AtomicUsize::new(0));
    (
        Outbox {
            tx,
            queued: queued.clone(),
            budget,
        },
        Inbox { rx, queued },
    )
}

impl Outbox {
    pub fn try_send(&self, item: Outgoing) -> Result<(), SendError> {
        let size = item.size();
        let queued = self.queued.fetch_add(size, Ordering::Relaxed) + size;
        let total = QUEUED_TOTAL.fetch_add(size, Ordering::Relaxed) + size;
        // Under replica-wide pressure, a queue of more than a sixteenth of its own budget
        // counts as slow: the big queues go first, the sessions that keep up stay.
        let over = queued > self.budget.bytes
            || (total > self.budget.total_bytes && queued > self.budget.bytes / 16);
        let refused = if over && size > 0 {
            Err(SendError::OverBudget { queued })
        } else {
            self.tx.try_send(item).map_err(|e| match e {
                mpsc::error::TrySendError::Full(_) => SendError::Full,
                mpsc::error::TrySendError::Closed(_) => SendError::Closed,
            })
        };
        if refused.is_err() {
            self.queued.fetch_sub(size, Ordering::Relaxed);
            QUEUED_TOTAL.fetch_sub(size, Ordering::Relaxed);
        }
        refused
    }

    /// Bytes queued and not yet written.
    pub fn queued_bytes(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }
}

impl Inbox {
    /// One message, its bytes given back at once (internal sessions, which hold nothing
    /// after taking it).
    pub async fn recv(&mut self) -> Option<Outgoing> {
        let item = self.rx.recv().await?;
        self.done(item.size());
        Some(item)
    }

    /// Up to `limit` messages; the caller gives their bytes back with [`Inbox::done`] once
    /// written.
    pub async fn recv_many(&mut self, buf: &mut Vec<Outgoing>, limit: usize) -> usize {
        self.rx.recv_many(buf, limit).await
    }

    /// The bytes of messages taken from the queue (written, or dropped with the connection).
    pub fn done(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::Relaxed);
        QUEUED_TOTAL.fetch_sub(bytes, Ordering::Relaxed);
    }

    pub fn close(&mut self) {
        self.rx.close();
    }
}

impl Drop for Inbox {
    /// What was never written leaves the replica total with the connection.
    fn drop(&mut self) {
        // Closed first: a send that races this fails and takes its own bytes back.
        self.rx.close();
        let still = self.queued.swap(0, Ordering::Relaxed);
        QUEUED_TOTAL.fetch_sub(still, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::Outbound;
    use crate::wamp::{Message, Payload, Value};

    fn event(bytes: usize) -> Outgoing {
        Outgoing::Message(Outbound::new(Message::Event {
            subscription: 1,
            publication: 2,
            details: Default::default(),
            payload: Payload::args(vec![Value::Str("x".repeat(bytes))]),
        }))
    }

    #[test]
    fn a_session_that_does_not_read_is_refused_once_its_bytes_are_queued() {
        let (tx, mut rx) = outbox(Budget {
            messages: 1000,
            bytes: 10_000,
            total_bytes: usize::MAX,
            realm_bytes: usize::MAX,
        });
        let mut sent = 0;
        while tx.try_send(event(1000)).is_ok() {
            sent += 1;
            assert!(sent < 100, "the budget never ran out");
        }
        assert!(matches!(
            tx.try_send(event(1000)),
            Err(SendError::OverBudget { .. })
        ));
        assert!(tx.queued_bytes() <= 10_000);
        assert!((8..=10).contains(&sent), "{sent}");
        // Small control messages still fit while there is room; a written message frees it.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut taken = Vec::new();
        rt.block_on(rx.recv_many(&mut taken, 1));
        rx.done(taken.iter().map(Outgoing::size).sum());
        assert!(tx.try_send(event(1000)).is_ok());
    }

    #[test]
    fn taking_one_message_gives_its_bytes_back() {
        let (tx, mut rx) = outbox(Budget::unlimited(8));
        tx.try_send(event(1000)).unwrap();
        assert!(tx.queued_bytes() > 1000);
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        rt.block_on(rx.recv()).unwrap();
        assert_eq!(tx.queued_bytes(), 0);
    }

    #[test]
    fn the_message_count_still_bounds_the_queue() {
        let (tx, _rx) = outbox(Budget::unlimited(2));
        assert!(tx.try_send(event(1)).is_ok());
        assert!(tx.try_send(event(1)).is_ok());
        assert_eq!(tx.try_send(event(1)), Err(SendError::Full));
    }
}
