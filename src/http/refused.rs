//! Refused notifies, recorded in the background, many per transaction, so that a flood of
//! forgeries costs no database write per request. Bounded: when a flood outruns the
//! database, the overflow is counted (`minipay_notifies_unrecorded_total`) and logged, never
//! queued without limit.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::store::{RefusedNotify, Store};

/// The writer's queue; clones share it.
#[derive(Clone)]
pub struct RefusedNotifies {
    tx: mpsc::Sender<RefusedNotify>,
}

const BACKLOG: usize = 10_000;
const BATCH: usize = 500;

impl RefusedNotifies {
    /// Starts the writer. When `stop` fires it stops taking notifies, writes what is queued,
    /// and ends.
    pub fn start(
        store: Store,
        stop: CancellationToken,
    ) -> (RefusedNotifies, tokio::task::JoinHandle<()>) {
        let (tx, mut rx) = mpsc::channel::<RefusedNotify>(BACKLOG);
        let writer = tokio::spawn(async move {
            let mut batch = Vec::with_capacity(BATCH);
            loop {
                let received = tokio::select! {
                    n = rx.recv_many(&mut batch, BATCH) => n,
                    () = stop.cancelled() => {
                        rx.close();
                        rx.recv_many(&mut batch, BATCH).await
                    }
                };
                if received == 0 {
                    return;
                }
                write(&store, &batch).await;
                batch.clear();
            }
        });
        (RefusedNotifies { tx }, writer)
    }

    pub fn record(&self, notify: RefusedNotify) {
        if self.tx.try_send(notify).is_err() {
            metrics::counter!("minipay_notifies_unrecorded_total").increment(1);
        }
    }
}

async fn write(store: &Store, batch: &[RefusedNotify]) {
    for attempt in 1..=5u64 {
        match store.record_refused_notifies(batch).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, count = batch.len(), attempt, "could not record refused notifies");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    metrics::counter!("minipay_notifies_unrecorded_total").increment(batch.len() as u64);
}
