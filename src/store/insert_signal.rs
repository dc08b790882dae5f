//! Wakes idle workers the moment a job row is inserted, instead of waiting for apalis' 30 s
//! heartbeat (docs/apalis.md §3). On SQLite it is fired by the update hook, which only sees
//! inserts made through this process's pool; on PostgreSQL by the process's job listener
//! (`worker::pg_wake`), once per queue. The workers' interval strategy covers the rest.

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::Stream;
use futures::channel::mpsc;

/// Fans one "a job was inserted" signal out to every subscribed worker.
#[derive(Clone, Default, Debug)]
pub struct InsertSignal {
    subscribers: Arc<Mutex<Vec<mpsc::Sender<()>>>>,
}

impl InsertSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// Called from the update hook, inside SQLite: never blocks. A full channel already
    /// holds a wake-up, so the signal coalesces.
    pub fn fire(&self) {
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.retain_mut(|tx| match tx.try_send(()) {
                Ok(()) => true,
                Err(e) => e.is_full(),
            });
        }
    }

    /// A stream that yields after each insert (coalesced), for one worker's poll strategy.
    pub fn subscribe(&self) -> JobWake {
        let (tx, rx) = mpsc::channel(1);
        if let Ok(mut subscribers) = self.subscribers.lock() {
            subscribers.push(tx);
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
