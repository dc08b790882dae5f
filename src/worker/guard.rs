//! A deadline and a panic guard inside each handler, plus its duration metric. apalis' own
//! `.timeout()` and `.catch_panic()` layers leave the row `Running` (docs/apalis.md §2.4); here a
//! timeout is an ordinary error (apalis runs the job again) and a panic is an `AbortError` (not
//! run again; the order is left for the reconciler and an operator).

use std::future::Future;
use std::time::{Duration, Instant};

use apalis::prelude::{AbortError, BoxDynError};
use futures::FutureExt;

pub async fn guarded<F>(queue: &'static str, limit: Duration, job: F) -> Result<(), BoxDynError>
where
    F: Future<Output = Result<(), BoxDynError>>,
{
    let started = Instant::now();
    let result =
        match tokio::time::timeout(limit, std::panic::AssertUnwindSafe(job).catch_unwind()).await {
            Err(_elapsed) => Err(format!("job did not finish within {limit:?}").into()),
            Ok(Err(_panic)) => Err(AbortError::new("job panicked").into()),
            Ok(Ok(result)) => result,
        };
    let outcome = if result.is_ok() { "ok" } else { "error" };
    metrics::histogram!("minipay_job_duration_seconds", "queue" => queue, "result" => outcome)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        tracing::warn!(queue, error = ?e.to_string(), "job failed");
    }
    result
}
