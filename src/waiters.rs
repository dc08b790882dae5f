//! Long-poll wake-ups: a request waiting on an order registers here and is woken when the order
//! changes — directly by the code that changed it (same process), or by PostgreSQL NOTIFY
//! (other processes).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;

use crate::store::Store;

/// The wake-up of one order and how many requests wait on it.
type Entry = (Arc<Notify>, usize);

/// Who is waiting on which order.
#[derive(Clone, Default, Debug)]
pub struct Waiters {
    orders: Arc<Mutex<HashMap<String, Entry>>>,
}

/// A registration; dropping it unregisters.
pub struct Watch {
    waiters: Waiters,
    out_trade_no: String,
    notify: Arc<Notify>,
}

impl Watch {
    /// The wake-up to await; create it (and `enable` it) before re-reading the order so that
    /// a change between the read and the wait is not missed.
    pub fn notify(&self) -> &Notify {
        &self.notify
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        if let Ok(mut orders) = self.waiters.orders.lock()
            && let Some(entry) = orders.get_mut(&self.out_trade_no)
        {
            entry.1 -= 1;
            if entry.1 == 0 {
                orders.remove(&self.out_trade_no);
            }
        }
    }
}

impl Waiters {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers interest in `out_trade_no`.
    pub fn watch(&self, out_trade_no: &str) -> Watch {
        let notify = match self.orders.lock() {
            Ok(mut orders) => {
                let entry = orders
                    .entry(out_trade_no.to_owned())
                    .or_insert_with(|| (Arc::new(Notify::new()), 0));
                entry.1 += 1;
                entry.0.clone()
            }
            Err(_) => Arc::new(Notify::new()),
        };
        Watch {
            waiters: self.clone(),
            out_trade_no: out_trade_no.to_owned(),
            notify,
        }
    }

    /// Wakes everyone waiting on `out_trade_no`.
    pub fn wake(&self, out_trade_no: &str) {
        if let Ok(orders) = self.orders.lock()
            && let Some((notify, _)) = orders.get(out_trade_no)
        {
            notify.notify_waiters();
        }
    }

    /// How many orders have waiters (for tests and metrics).
    pub fn watched(&self) -> usize {
        self.orders.lock().map(|o| o.len()).unwrap_or(0)
    }

    /// On PostgreSQL, forwards `NOTIFY minipay_order` from every process to local waiters
    /// until `stop` fires. Reconnects after errors; long-polls re-read the database on a
    /// timer too, so a notification lost during a reconnect only delays a wake-up.
    pub fn spawn_listener(&self, store: &Store, stop: tokio_util::sync::CancellationToken) {
        let Store::Postgres(pool) = store else {
            return;
        };
        let (pool, waiters) = (pool.clone(), self.clone());
        tokio::spawn(async move {
            loop {
                let listened = async {
                    let mut listener = sqlx::postgres::PgListener::connect_with(&pool).await?;
                    listener.listen(crate::store::ORDER_CHANNEL).await?;
                    loop {
                        let notification = listener.recv().await?;
                        waiters.wake(notification.payload());
                    }
                    #[allow(unreachable_code)]
                    Ok::<(), sqlx::Error>(())
                };
                tokio::select! {
                    () = stop.cancelled() => return,
                    result = listened => {
                        if let Err(e) = result {
                            tracing::warn!(error = %e, "order change listener failed; reconnecting");
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
    }
}
