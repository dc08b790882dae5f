//! A bounded load generator: closed loops with a fixed count or duration, and an open loop at a
//! fixed rate. Latencies are kept whole and sorted for exact percentiles.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Latency samples.
#[derive(Debug, Clone, Default)]
pub struct Samples(Vec<Duration>);

impl Samples {
    pub fn new(mut v: Vec<Duration>) -> Samples {
        v.sort_unstable();
        Samples(v)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The `q` quantile (0..=1), nearest rank.
    pub fn quantile(&self, q: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((q * self.0.len() as f64).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1]
    }

    pub fn ms(&self, q: f64) -> f64 {
        self.quantile(q).as_secs_f64() * 1000.0
    }
}

/// What a run of requests gave.
#[derive(Debug, Clone)]
pub struct Run {
    pub ok: usize,
    pub errors: usize,
    pub elapsed: Duration,
    pub latencies: Samples,
}

impl Run {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// `concurrency` workers call `job(i)` for i in 0..count (or until `duration` ends); each call's
/// latency is recorded when it returns `Ok`.
pub async fn closed_loop<F, Fut>(
    concurrency: usize,
    count: Option<usize>,
    duration: Option<Duration>,
    job: F,
) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send,
{
    let job = Arc::new(job);
    let next = Arc::new(AtomicUsize::new(0));
    let errors = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let until = duration.map(|d| started + d);
    let mut tasks = Vec::new();
    // Clients join over the first 500 ms (as real users arrive), not in one burst.
    let ramp = Duration::from_millis(500);
    for client in 0..concurrency {
        let (job, next, errors) = (job.clone(), next.clone(), errors.clone());
        let join_at = started + ramp.mul_f64(client as f64 / concurrency as f64);
        tasks.push(tokio::spawn(async move {
            tokio::time::sleep_until(join_at.into()).await;
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| i >= c) || until.is_some_and(|u| Instant::now() >= u) {
                    return mine;
                }
                let t = Instant::now();
                match job(i).await {
                    Ok(()) => mine.push(t.elapsed()),
                    Err(_) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.unwrap_or_default());
    }
    Run {
        ok: all.len(),
        errors: errors.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
        latencies: Samples::new(all),
    }
}

/// Starts `job(i)` at `rate` per second for `duration`, whatever the earlier calls are doing
/// (latency is measured from the scheduled start, so queueing counts).
pub async fn open_loop<F, Fut>(rate: f64, duration: Duration, job: F) -> Run
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let job = Arc::new(job);
    let total = (rate * duration.as_secs_f64()) as usize;
    let started = Instant::now();
    let mut handles = Vec::with_capacity(total);
    for i in 0..total {
        let at = started + Duration::from_secs_f64(i as f64 / rate);
        tokio::time::sleep_until(at.into()).await;
        let job = job.clone();
        handles.push(tokio::spawn(async move {
            let result = job(i).await;
            (result.is_ok(), at.elapsed())
        }));
    }
    let mut latencies = Vec::new();
    let mut errors = 0;
    for h in handles {
        match h.await {
            Ok((true, latency)) => latencies.push(latency),
            _ => errors += 1,
        }
    }
    Run {
        ok: latencies.len(),
        errors,
        elapsed: started.elapsed(),
        latencies: Samples::new(latencies),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let s = Samples::new((1..=100).map(Duration::from_millis).collect());
        assert_eq!(s.quantile(0.5), Duration::from_millis(50));
        assert_eq!(s.quantile(0.95), Duration::from_millis(95));
        assert_eq!(s.quantile(0.99), Duration::from_millis(99));
        assert_eq!(s.quantile(1.0), Duration::from_millis(100));
        assert_eq!(Samples::default().quantile(0.5), Duration::ZERO);
    }
}
