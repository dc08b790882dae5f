//! Refused notifies, recorded off the request path and bounded three ways, so a flood of
//! forgeries costs neither a database write per request nor disk space per request: each keeps
//! a summary (its body's SHA-256, length and first [`KEPT_BYTES`]), a batch is folded into one
//! group per verdict, client and minute (a count), and nothing is stored while the disk under
//! a SQLite database has less free space than configured (only counted). Old groups are
//! deleted by the workers' sweep.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use minipay_jobs::NotifyVerdict;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::store::{RefusedGroup, Store, refusal_window};

/// Bytes kept of a refused body, and of the reason it was refused.
pub const KEPT_BYTES: usize = 256;
/// Bytes kept of the out_trade_no a refused body names (WeChat's are at most 32).
const KEPT_ORDER_BYTES: usize = 64;

const BACKLOG: usize = 10_000;
const BATCH: usize = 500;

/// One refused notify, summarised.
#[derive(Debug, Clone)]
pub struct RefusedNotify {
    pub received_at: i64,
    pub peer: String,
    pub verdict: NotifyVerdict,
    pub detail: String,
    pub out_trade_no: Option<String>,
    pub body_sha256: String,
    pub body_prefix: String,
    pub body_len: i64,
}

impl RefusedNotify {
    pub fn new(
        received_at: i64,
        peer: IpAddr,
        verdict: NotifyVerdict,
        detail: &str,
        out_trade_no: Option<&str>,
        body: &[u8],
    ) -> RefusedNotify {
        let head = &body[..body.len().min(KEPT_BYTES)];
        RefusedNotify {
            received_at,
            peer: peer.to_string(),
            verdict,
            detail: truncated(detail, KEPT_BYTES),
            out_trade_no: out_trade_no.map(|n| truncated(n, KEPT_ORDER_BYTES)),
            body_sha256: hex::encode(Sha256::digest(body)),
            body_prefix: truncated(&String::from_utf8_lossy(head), KEPT_BYTES),
            body_len: i64::try_from(body.len()).unwrap_or(i64::MAX),
        }
    }
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn truncated(text: &str, max: usize) -> String {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// Where a SQLite database lives, and the free space below which refused notifies are only
/// counted.
#[derive(Debug, Clone)]
pub struct FreeSpaceFloor {
    pub dir: PathBuf,
    pub min_bytes: u64,
}

impl FreeSpaceFloor {
    /// The configured floor, for a SQLite database (PostgreSQL's disk is the server's).
    pub fn of(config: &Config) -> Option<FreeSpaceFloor> {
        let path = config.database.sqlite_path()?;
        let min_bytes = config.http.refused_notify_min_free;
        (min_bytes > 0).then(|| FreeSpaceFloor {
            dir: path.parent().map(Path::to_path_buf).unwrap_or_default(),
            min_bytes,
        })
    }

    fn reached(&self) -> bool {
        // An unreadable figure is not a reason to drop evidence.
        fs4::available_space(&self.dir).is_ok_and(|free| free < self.min_bytes)
    }
}

/// Records refused notifies in the background, many per transaction. Bounded: when a flood
/// outruns the database, the overflow is counted (`minipay_notifies_unrecorded_total`), never
/// queued without limit.
#[derive(Clone)]
pub struct RefusedNotifies {
    tx: mpsc::Sender<RefusedNotify>,
}

impl RefusedNotifies {
    /// Starts the writer. When `stop` fires it stops taking notifies, writes what is queued,
    /// and ends.
    pub fn start(
        store: Store,
        floor: Option<FreeSpaceFloor>,
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
                if floor.as_ref().is_some_and(FreeSpaceFloor::reached) {
                    tracing::warn!(
                        count = batch.len(),
                        "free disk space is below MINIPAY_REFUSED_NOTIFY_MIN_FREE_MB; refused notifies counted, not stored"
                    );
                    unrecorded(batch.len());
                } else {
                    write(&store, &aggregate(&batch)).await;
                }
                batch.clear();
            }
        });
        (RefusedNotifies { tx }, writer)
    }

    pub fn record(&self, notify: RefusedNotify) {
        if self.tx.try_send(notify).is_err() {
            unrecorded(1);
        }
    }
}

fn unrecorded(count: usize) {
    metrics::counter!("minipay_notifies_unrecorded_total").increment(count as u64);
}

/// One group per verdict, client and minute; each keeps the first notify's sample.
fn aggregate(batch: &[RefusedNotify]) -> Vec<RefusedGroup> {
    let mut groups: Vec<RefusedGroup> = Vec::new();
    let mut index: HashMap<(NotifyVerdict, &str, i64), usize> = HashMap::new();
    for n in batch {
        let window_start = refusal_window(n.received_at);
        let key = (n.verdict, n.peer.as_str(), window_start);
        match index.get(&key) {
            Some(&i) => {
                let group = &mut groups[i];
                group.count += 1;
                group.first_at = group.first_at.min(n.received_at);
                group.last_at = group.last_at.max(n.received_at);
            }
            None => {
                index.insert(key, groups.len());
                groups.push(RefusedGroup {
                    window_start,
                    first_at: n.received_at,
                    last_at: n.received_at,
                    peer: n.peer.clone(),
                    verdict: n.verdict,
                    count: 1,
                    detail: n.detail.clone(),
                    out_trade_no: n.out_trade_no.clone(),
                    body_sha256: n.body_sha256.clone(),
                    body_prefix: n.body_prefix.clone(),
                    body_len: n.body_len,
                });
            }
        }
    }
    groups
}

async fn write(store: &Store, groups: &[RefusedGroup]) {
    for attempt in 1..=5u64 {
        match store.record_refused_notifies(groups).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(error = %e, groups = groups.len(), attempt, "could not record refused notifies");
                tokio::time::sleep(Duration::from_millis(200 * attempt)).await;
            }
        }
    }
    unrecorded(groups.iter().map(|g| g.count as usize).sum());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(at: i64, peer: &str, verdict: NotifyVerdict, body: &[u8]) -> RefusedNotify {
        RefusedNotify::new(at, peer.parse().unwrap(), verdict, "why", None, body)
    }

    #[test]
    fn a_flood_folds_into_one_group_per_verdict_client_and_minute() {
        let t = 1_700_000_080_000; // 40 s into a minute
        let batch = vec![
            refused(t, "10.0.0.1", NotifyVerdict::BadSignature, b"first"),
            refused(
                t + 1_000,
                "10.0.0.1",
                NotifyVerdict::BadSignature,
                b"second",
            ),
            refused(
                t + 2_000,
                "10.0.0.2",
                NotifyVerdict::BadSignature,
                b"other client",
            ),
            refused(
                t + 3_000,
                "10.0.0.1",
                NotifyVerdict::Malformed,
                b"other verdict",
            ),
            refused(
                t + 30_000,
                "10.0.0.1",
                NotifyVerdict::BadSignature,
                b"next minute",
            ),
        ];
        let groups = aggregate(&batch);
        let counts: Vec<(&str, &str, i64)> = groups
            .iter()
            .map(|g| (g.peer.as_str(), g.verdict.as_str(), g.count))
            .collect();
        assert_eq!(
            counts,
            [
                ("10.0.0.1", "bad_signature", 2),
                ("10.0.0.2", "bad_signature", 1),
                ("10.0.0.1", "malformed", 1),
                ("10.0.0.1", "bad_signature", 1),
            ]
        );
        assert_eq!(groups[0].body_prefix, "first");
        assert_eq!((groups[0].first_at, groups[0].last_at), (t, t + 1_000));
    }

    #[test]
    fn only_a_bounded_summary_of_the_body_is_kept() {
        let body = "界".repeat(10_000); // 3 bytes a character: no cut may split one
        let n = refused(0, "::1", NotifyVerdict::Malformed, body.as_bytes());
        assert!(n.body_prefix.len() <= KEPT_BYTES && body.starts_with(&n.body_prefix));
        assert_eq!(n.body_len, 30_000);
        assert_eq!(n.body_sha256, hex::encode(Sha256::digest(body.as_bytes())));
        let invalid = vec![0xff; 1_000]; // each byte becomes a 3-byte replacement character
        assert!(
            refused(0, "::1", NotifyVerdict::NotUtf8, &invalid)
                .body_prefix
                .len()
                <= KEPT_BYTES
        );
    }
}
