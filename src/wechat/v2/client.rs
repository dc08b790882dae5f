//! The HTTP client for WeChat Pay v2: reply signatures verified, and fail-over to the next base
//! URL (api → api2) when a host cannot be reached, times out or answers 5xx.

use std::sync::Arc;
use std::time::Duration;

use minipay_jobs::Transport;

use super::reply::Answer;
use super::sign::nonce;
use super::xml::to_xml;
use super::{Fields, Merchant, UnifiedOrderParams};

/// Calls in flight at once unless [`PayClient::with_max_in_flight`] says otherwise (the
/// default of `MINIPAY_WECHAT_MAX_IN_FLIGHT`).
pub const DEFAULT_MAX_IN_FLIGHT: usize = 256;

/// The WeChat Pay v2 API (`unifiedorder`, `orderquery`, `closeorder`).
#[derive(Clone, Debug)]
pub struct PayClient {
    http: reqwest::Client,
    bases: Arc<[String]>,
    merchant: Arc<Merchant>,
    /// Calls in flight at once (`MINIPAY_WECHAT_MAX_IN_FLIGHT`): a job past the bound waits
    /// for a turn instead of opening one more connection, so the connections to WeChat are a
    /// bounded, reused pool and a burst of jobs costs no memory per extra connection.
    turns: Arc<tokio::sync::Semaphore>,
    /// Jobs admitted to call at once (as many as there are turns): a job waits for admission
    /// before it builds anything, so a backlog of jobs waits small (see [`PayClient::admit`]).
    admissions: Arc<tokio::sync::Semaphore>,
}

/// A job's admission to call WeChat (see [`PayClient::admit`]); dropping it lets the next in.
#[derive(Debug)]
pub struct Admission {
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl PayClient {
    /// `bases` are tried in order, e.g. `https://api.mch.weixin.qq.com` then
    /// `https://api2.mch.weixin.qq.com`.
    pub fn new(http: reqwest::Client, bases: Vec<String>, merchant: Merchant) -> Self {
        PayClient {
            turns: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            admissions: Arc::new(tokio::sync::Semaphore::new(DEFAULT_MAX_IN_FLIGHT)),
            http,
            bases: bases
                .into_iter()
                .map(|b| b.trim_end_matches('/').to_owned())
                .collect(),
            merchant: Arc::new(merchant),
        }
    }

    /// At most `n` calls in flight at once (at least one).
    #[must_use]
    pub fn with_max_in_flight(mut self, n: usize) -> Self {
        self.turns = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self.admissions = Arc::new(tokio::sync::Semaphore::new(n.max(1)));
        self
    }

    /// Waits until fewer jobs than there are turns hold an admission. A job takes one before
    /// its call's large state exists (request, connection, reply) and gives it back once
    /// WeChat answered: a thousand queued prepay jobs then hold a few hundred bytes each while
    /// they wait, not the kilobytes of a call in progress (BENCHMARKS.md, "Memory").
    pub async fn admit(&self) -> Admission {
        // The semaphore is never closed, so a permit always comes.
        Admission {
            _permit: self.admissions.clone().acquire_owned().await.ok(),
        }
    }

    pub fn merchant(&self) -> &Merchant {
        &self.merchant
    }

    pub fn base_urls(&self) -> &[String] {
        &self.bases
    }

    /// `unifiedorder` with the frozen parameters, a fresh nonce and sign.
    pub async fn unified_order(&self, params: &UnifiedOrderParams) -> Answer {
        let request = params.signed_request(&self.merchant.key, &nonce());
        self.post("/pay/unifiedorder", &request).await
    }

    /// `orderquery` by our order number.
    pub async fn order_query(&self, out_trade_no: &str) -> Answer {
        let request = self.merchant.signed(
            Fields::from_iter([("out_trade_no", out_trade_no)]),
            &nonce(),
        );
        self.post("/pay/orderquery", &request).await
    }

    /// `closeorder` by our order number.
    pub async fn close_order(&self, out_trade_no: &str) -> Answer {
        let request = self.merchant.signed(
            Fields::from_iter([("out_trade_no", out_trade_no)]),
            &nonce(),
        );
        self.post("/pay/closeorder", &request).await
    }

    /// POSTs a signed request, failing over across the base URLs (also used by the v2 refund
    /// calls).
    pub(crate) async fn post(&self, path: &str, request: &Fields) -> Answer {
        let body = to_xml(request.iter());
        let mut answer = Answer::Failed(Transport::Connect);
        for (i, base) in self.bases.iter().enumerate() {
            answer = self.post_once(&format!("{base}{path}"), body.clone()).await;
            // Only "no answer from this host" moves on to the next one; a refusal is an answer.
            let unanswered = matches!(
                answer,
                Answer::Failed(Transport::Connect | Transport::Timeout | Transport::ServerError(_))
            );
            if !unanswered || i + 1 == self.bases.len() {
                break;
            }
            tracing::warn!(%path, host = %base, answer = ?answer.reply().label(), "WeChat Pay host failed; trying the next one");
        }
        answer
    }

    /// POSTs a signed request like every other call (same hosts, same fail-over) but hands
    /// back the HTTP 200 response unread, for answers that are not signed XML replies:
    /// `downloadbill` streams its statement. `timeout` replaces the client's for this call.
    pub(crate) async fn post_unread(
        &self,
        path: &str,
        request: &Fields,
        timeout: Duration,
    ) -> Result<reqwest::Response, Answer> {
        let body = to_xml(request.iter());
        let mut failure = Answer::Failed(Transport::Connect);
        for base in self.bases.iter() {
            let _turn = self.turns.acquire().await;
            let sent = self
                .http
                .post(format!("{base}{path}"))
                .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .timeout(timeout)
                .body(body.clone())
                .send()
                .await;
            failure = match sent {
                Ok(response) if response.status().is_success() => return Ok(response),
                Ok(response) if response.status().is_server_error() => {
                    Answer::Failed(Transport::ServerError(response.status().as_u16()))
                }
                Ok(response) => return Err(Answer::Rejected(response.status().as_u16())),
                Err(e) => Answer::Failed(transport_failure(&e)),
            };
            // As in `post`: only "no answer from this host" moves on to the next one.
            if matches!(failure, Answer::Failed(Transport::Unreadable)) {
                break;
            }
            tracing::warn!(%path, host = %base, answer = ?failure.reply().label(), "WeChat Pay host failed");
        }
        Err(failure)
    }

    async fn post_once(&self, url: &str, body: String) -> Answer {
        // The semaphore is never closed, so a turn always comes.
        let _turn = self.turns.acquire().await;
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(body)
            .send()
            .await;
        let response = match sent {
            Ok(response) => response,
            Err(e) => return Answer::Failed(transport_failure(&e)),
        };
        let status = response.status();
        if status.is_server_error() {
            return Answer::Failed(Transport::ServerError(status.as_u16()));
        }
        if !status.is_success() {
            return Answer::Rejected(status.as_u16());
        }
        match response.bytes().await {
            Ok(body) => Answer::from_body(&body, &self.merchant),
            Err(e) => Answer::Failed(transport_failure(&e)),
        }
    }
}

fn transport_failure(e: &reqwest::Error) -> Transport {
    if e.is_timeout() {
        Transport::Timeout
    } else if e.is_connect() {
        Transport::Connect
    } else {
        // A reset or truncated body after the request went out: WeChat may have acted.
        Transport::Unreadable
    }
}
