//! One delivery attempt: POST an event's envelope, signed, to the merchant's endpoint and say
//! what came of it. Owns the HTTP client for merchant endpoints; decides nothing about retries
//! (that is `RetrySchedule` in the core crate) and writes nothing.
//!
//! A slow or hostile endpoint costs at most the timeout and a few KiB: redirects are not
//! followed (Standard Webhooks, "Delivery success and failure": a 3xx is a failure) and only the
//! first [`RESPONSE_EXCERPT_BYTES`] of the answer are read, for the operator's view.

use std::error::Error as _;
use std::time::{Duration, Instant};

use minipay_jobs::AttemptOutcome;
use reqwest::header::{CONTENT_TYPE, HeaderValue};

use super::envelope::Envelope;
use super::signature::WebhookSecrets;

/// `MINIPAY_WEBHOOK_TIMEOUT_SECS`' default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an answer is kept; the rest is never read.
pub const RESPONSE_EXCERPT_BYTES: usize = 1024;

/// Sent with every delivery, so that merchants can recognise (and allow) us.
pub const USER_AGENT: &str = concat!("minipay-webhooks/", env!("CARGO_PKG_VERSION"));

/// What one attempt came to, with what the operator sees of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub outcome: AttemptOutcome,
    /// From sending the request to the end of reading the excerpt; never much above the
    /// timeout.
    pub duration: Duration,
    /// The first bytes of the answer's body (lossy UTF-8); empty when there was no answer.
    pub response_excerpt: String,
}

/// Sends signed deliveries. Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Deliverer {
    http: reqwest::Client,
    secrets: WebhookSecrets,
    timeout: Duration,
}

impl Deliverer {
    /// A client whose every attempt ends within `timeout` (connecting, sending, answering and
    /// reading the excerpt), signing with each of `secrets`.
    pub fn new(secrets: WebhookSecrets, timeout: Duration) -> Result<Self, reqwest::Error> {
        // rustls needs a process-wide crypto provider; installing it twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .user_agent(USER_AGENT)
            .build()?;
        Ok(Deliverer {
            http,
            secrets,
            timeout,
        })
    }

    pub fn timeout(&self) -> Duration {
        self.timeout
    }

    /// POSTs `envelope` to `endpoint`, stamped `timestamp` (Unix seconds of this attempt) and
    /// signed with every secret. Never fails: every way it can go wrong is an outcome.
    pub async fn attempt(&self, endpoint: &str, envelope: &Envelope, timestamp: i64) -> Attempt {
        let started = Instant::now();
        let body = match envelope.to_body() {
            Ok(body) => body,
            Err(e) => return no_answer(format!("encoding the event: {e}"), started),
        };
        let signature = self.secrets.sign(envelope.id.as_str(), timestamp, &body);
        let sent = self
            .http
            .post(endpoint)
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header("webhook-id", envelope.id.as_str())
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return no_answer(self.describe(&e), started),
        };
        let status = response.status().as_u16();
        let outcome = if response.status().is_success() {
            AttemptOutcome::Delivered { status }
        } else {
            AttemptOutcome::Refused { status }
        };
        let response_excerpt = read_excerpt(response).await;
        Attempt {
            outcome,
            duration: started.elapsed(),
            response_excerpt,
        }
    }

    /// The error and its causes on one line, without the URL: a merchant's URL may carry a
    /// token, and it is configuration the operator already knows.
    fn describe(&self, error: &reqwest::Error) -> String {
        if error.is_timeout() {
            return format!("no answer within {:?}", self.timeout);
        }
        let mut text = if error.is_connect() {
            String::from("could not connect")
        } else if error.is_builder() {
            String::from("invalid endpoint URL")
        } else {
            String::from("request failed")
        };
        let mut cause = error.source();
        while let Some(e) = cause {
            text.push_str(": ");
            text.push_str(&e.to_string());
            cause = e.source();
        }
        text
    }
}

fn no_answer(error: String, started: Instant) -> Attempt {
    Attempt {
        outcome: AttemptOutcome::NoAnswer { error },
        duration: started.elapsed(),
        response_excerpt: String::new(),
    }
}

/// Reads chunks until the excerpt is full, then drops the response, which closes the
/// connection instead of draining a body of any size. A body that breaks off or stalls (the
/// client's timeout) ends the excerpt; the status already decided the outcome.
async fn read_excerpt(mut response: reqwest::Response) -> String {
    let mut excerpt = Vec::with_capacity(RESPONSE_EXCERPT_BYTES);
    while excerpt.len() < RESPONSE_EXCERPT_BYTES {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                let room = RESPONSE_EXCERPT_BYTES - excerpt.len();
                excerpt.extend_from_slice(&chunk[..chunk.len().min(room)]);
            }
            Ok(None) | Err(_) => break,
        }
    }
    String::from_utf8_lossy(&excerpt).into_owned()
}
