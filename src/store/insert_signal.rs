//! Wakes idle workers the moment a job row is inserted, instead of waiting for apalis' 30 s
//! heartbeat (docs/apalis.md §3). On SQLite the group commit fires it once a batch that queued
//! jobs has committed, for those jobs' queues only (a worker's fetch is a statement on the one
//! writer, so waking the other queues' workers would cost the writer for nothing); on
//! PostgreSQL the process's job listener (`worker::pg_wake`) fires it, once per queue. The
//! workers' interval strategy covers the rest.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc;

/// Fans "a job was inserted into a queue" out to that queue's subscribed workers.
#[derive(Clone, Default, Debug)]
pub struct InsertSignal {
    subscribers: Arc<Mutex<Vec<Subscriber>>>,
}

#[derive(Debug)]
struct Subscriber {
    queue: Box<str>,
    tx: mpsc::Sender<()>,
}

impl InsertSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes every subscriber.
    pub fn fire(&self) {
        self.wake(|_| true);
    }

    /// Wakes the subscribers of `queue`. Never blocks: a full channel already holds a wake-up,
    /// so the signal coalesces.
    pub fn fire_queue(&self, queue: &str) {
        self.wake(|s| &*s.queue == queue);
    }

    fn wake(&self, woken: impl Fn(&Subscriber) -> bool) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.retain_mut(|s| {
                !woken(s)
                    || match s.tx.try_send(()) {
                        Ok(()) => true,
                        Err(e) => e.is_full(),
                    }
            });
        }
    }

    /// A stream that yields after each insert into `queue` (coalesced), for that queue's
    /// worker.
    pub fn subscribe_to(&self, queue: &str) -> JobWake {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(Subscriber {
                queue: queue.into(),
                tx,
            });
        }
        JobWake(Arc::new(Mutex::new(rx)))
    }
}

/// One worker's wake-up stream. Wrapped in a mutex because apalis wants a `Sync` stream.
#[derive(Clone)]
pub struct JobWake(Arc<Mutex<mpsc::Receiver<()>>>);

impl Stream for JobWake {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        match self.0.lock() {
            Ok(mut rx) => Pin::new(&mut *rx).poll_next(cx),
            Err(_) => Poll::Ready(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use futures::{FutureExt, StreamExt};

    use super::*;

    /// Whether `wake` holds a wake-up now (taking it).
    fn woken(wake: &mut JobWake) -> bool {
        wake.next().now_or_never().flatten().is_some()
    }

    #[test]
    fn an_insert_wakes_its_own_queues_workers_only() {
        let signal = InsertSignal::new();
        let (mut prepay, mut refund) = (
            signal.subscribe_to("prepay_order"),
            signal.subscribe_to("refund_order"),
        );
        signal.fire_queue("prepay_order");
        assert!(woken(&mut prepay));
        assert!(
            !woken(&mut refund),
            "another queue's worker would fetch for nothing"
        );
        signal.fire();
        assert!(woken(&mut prepay) && woken(&mut refund));
    }
}
