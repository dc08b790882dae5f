//! The PostgreSQL workers' wake-up stream, made to outlive a database restart.
//!
//! apalis' `Pubsub` ends for good once its LISTEN connection cannot be re-established (sqlx
//! tries once), and a finished stream reads as "always ready" to apalis' poll strategy: after a
//! PostgreSQL restart the worker spun a core and never fetched again (found by the fault soak).
//! This stream starts a new listener after a pause instead; the workers' safety poll covers
//! the gap.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use apalis_postgres::{PgPool, Pubsub};
use futures::{Stream, StreamExt};

/// Pause before listening again after the listener connection failed.
const RELISTEN_AFTER: Duration = Duration::from_secs(1);

/// Yields once per job inserted into `queue`, for as long as the process runs.
pub struct LastingPubsub {
    pool: PgPool,
    queue: String,
    listener: Option<Pubsub>,
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl LastingPubsub {
    pub fn new(pool: PgPool, queue: String) -> Self {
        let listener = Some(Pubsub::new(pool.clone(), queue.clone()));
        Self {
            pool,
            queue,
            listener,
            pause: None,
        }
    }
}

impl Stream for LastingPubsub {
    type Item = ();

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<()>> {
        let this = self.get_mut();
        loop {
            if let Some(pause) = &mut this.pause {
                ready!(pause.as_mut().poll(cx));
                this.pause = None;
                this.listener = Some(Pubsub::new(this.pool.clone(), this.queue.clone()));
            }
            let Some(listener) = &mut this.listener else {
                unreachable!("a listener or a pause is always set")
            };
            match ready!(listener.poll_next_unpin(cx)) {
                Some(Ok(_job_id)) => return Poll::Ready(Some(())),
                ended_or_failed => {
                    let error = ended_or_failed.and_then(Result::err).map(|e| e.to_string());
                    tracing::warn!(
                        queue = %this.queue,
                        error,
                        "job notification listener lost; listening again shortly"
                    );
                    this.listener = None;
                    this.pause = Some(Box::pin(tokio::time::sleep(RELISTEN_AFTER)));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::postgres::PgPoolOptions;

    /// A pool whose every connection attempt fails at once (nothing listens on port 1).
    fn unreachable_pool() -> PgPool {
        PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(200))
            .connect_lazy("postgres://postgres@127.0.0.1:1/none")
            .expect("valid URL")
    }

    #[tokio::test]
    async fn apalis_pubsub_ends_when_it_cannot_listen() {
        // The behaviour this module exists for: if apalis ever fixes it, this fails and the
        // wrapper can go.
        let mut pubsub = Pubsub::new(unreachable_pool(), "q".into());
        let first = tokio::time::timeout(Duration::from_secs(5), pubsub.next()).await;
        assert!(matches!(first, Ok(Some(Err(_)))), "got {first:?}");
        assert!(pubsub.next().await.is_none());
    }

    #[tokio::test]
    async fn the_lasting_stream_neither_ends_nor_spins_while_the_database_is_down() {
        let mut stream = LastingPubsub::new(unreachable_pool(), "q".into());
        let polls = std::sync::atomic::AtomicUsize::new(0);
        let counted = futures::stream::poll_fn(|cx| {
            polls.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            stream.poll_next_unpin(cx)
        });
        futures::pin_mut!(counted);
        let outcome = tokio::time::timeout(Duration::from_millis(3500), counted.next()).await;
        assert!(
            outcome.is_err(),
            "the stream must stay pending, got {outcome:?}"
        );
        // Woken by its connect attempts and pauses (about one per second), not in a loop.
        let polls = polls.load(std::sync::atomic::Ordering::Relaxed);
        assert!(polls < 50, "polled {polls} times in 3.5 s");
    }
}
