//! WeChat Pay API v2: signatures, XML, request rules, `wx.requestPayment` parameters, the
//! HTTP client and notify verification — and [`V2`], which puts them behind the gateway seam
//! (`wechat::Gateway`) in the core crate's protocol-neutral terms. The newer operations are
//! here too, some not yet behind the seam: daily bill statements (`bill`, behind it as
//! `download_bill`), the refund request and
//! query (`refund`, `refund_client`), the refund notify (`refund_notify`), and the merchant API
//! certificate that `/secapi/` calls present (`tls`).

pub mod bill;
pub mod client;
pub mod fields;
pub mod notify;
pub mod params;
pub mod pay_params;
pub mod refund;
pub mod refund_client;
pub mod refund_notify;
pub mod reply;
pub mod sign;
pub mod tls;
pub mod xml;

use chrono::{DateTime, NaiveDate, Utc};
use minipay_jobs::bill::{BillDownloaded, BillUnavailable, WechatEntry};
use minipay_jobs::{
    NotifyAck, OrderFields, ParamError, PostedNotify, Prepaid, PrepayInput, PrepayOutcome,
    QueryOutcome, Reply, UnreadableParams,
};

pub use client::PayClient;
pub use fields::Fields;
pub use params::{Merchant, UnifiedOrderParams};
pub use sign::{ApiKey, SignType};

use crate::clock::Clock;

/// WeChat Pay's production hosts, primary then the cross-city backup (docs/wechat-pay-v2.md §2, §10).
pub const PAY_HOSTS: [&str; 2] = [
    "https://api.mch.weixin.qq.com",
    "https://api2.mch.weixin.qq.com",
];

/// WeChat Pay v2 as the seam sees it: the merchant's client, and where its notifies go.
#[derive(Clone, Debug)]
pub struct V2 {
    client: PayClient,
    /// Where WeChat posts payment results for orders created by this process.
    notify_url: String,
    /// `None`: no merchant API certificate, so no refunds.
    refunds: Option<refund_client::Refunds>,
}

impl V2 {
    pub fn new(client: PayClient, notify_url: String) -> Self {
        V2 {
            client,
            notify_url,
            refunds: None,
        }
    }

    /// With refunds: `client` presents the merchant API certificate.
    pub fn with_refunds(mut self, client: refund_client::RefundClient, notify_url: String) -> Self {
        self.refunds = Some(refund_client::Refunds { client, notify_url });
        self
    }

    pub fn refunds(&self) -> Option<&refund_client::Refunds> {
        self.refunds.as_ref()
    }

    pub fn client(&self) -> &PayClient {
        &self.client
    }

    pub fn merchant(&self) -> &Merchant {
        self.client.merchant()
    }

    /// The merchant-supplied fields of an order, by WeChat's rules.
    pub fn check_order(&self, order: &OrderFields<'_>) -> Result<(), ParamError> {
        params::check_openid(order.openid)?;
        params::check_text("description", order.description, true)?;
        params::check_text("attach", order.attach, false)?;
        params::check_total_fee(order.total_fee)?;
        if let Some(number) = order.out_trade_no {
            params::check_out_trade_no(number)?;
        }
        Ok(())
    }

    /// `total_fee` by WeChat's rules (at least one fen, within WeChat's Int).
    pub fn check_total_fee(&self, fen: i64) -> Result<(), ParamError> {
        params::check_total_fee(fen)
    }

    /// The `unifiedorder` parameters of `order`, checked as WeChat checks them and frozen as
    /// JSON: every attempt sends them unchanged (docs/wechat-pay-v2.md §3.4).
    pub fn freeze_prepay(&self, order: &PrepayInput) -> Result<String, ParamError> {
        let at = |ms: i64| DateTime::<Utc>::from_timestamp_millis(ms).unwrap_or_default();
        let (now, expires) = (at(order.created_at_ms), at(order.expires_at_ms));
        let merchant = self.merchant();
        let params = UnifiedOrderParams {
            appid: merchant.appid.clone(),
            mch_id: merchant.mch_id.clone(),
            sign_type: merchant.sign_type,
            body: order.description.clone(),
            attach: order.attach.clone(),
            out_trade_no: order.out_trade_no.clone(),
            total_fee: order.total_fee,
            spbill_create_ip: order.payer_ip.clone(),
            notify_url: self.notify_url.clone(),
            trade_type: "JSAPI".into(),
            openid: order.openid.clone(),
            time_start: params::beijing_time(now),
            time_expire: params::beijing_time(expires),
        };
        params.validate(now)?;
        serde_json::to_string(&params).map_err(|e| ParamError::new("params", e.to_string()))
    }

    /// `unifiedorder` with the frozen parameters (a fresh nonce and sign); on success the pay
    /// params are signed at `clock`'s now.
    pub async fn prepay(
        &self,
        frozen: &str,
        clock: &Clock,
    ) -> Result<PrepayOutcome, UnreadableParams> {
        let params: UnifiedOrderParams =
            serde_json::from_str(frozen).map_err(|e| UnreadableParams(e.to_string()))?;
        let answer = self.client.unified_order(&params).await;
        let reply = answer.reply();
        let prepaid = match (&reply, answer.field("prepay_id")) {
            (Reply::Success, Some(prepay_id)) => Some(Prepaid {
                prepay_id: prepay_id.to_owned(),
                pay_params: pay_params::sign_pay_params(
                    &params.appid,
                    prepay_id,
                    params.sign_type,
                    &self.merchant().key,
                    clock.unix(),
                    sign::nonce(),
                ),
            }),
            _ => None,
        };
        Ok(PrepayOutcome { reply, prepaid })
    }

    /// `orderquery` by our order number.
    pub async fn query_order(&self, out_trade_no: &str) -> QueryOutcome {
        let answer = self.client.order_query(out_trade_no).await;
        QueryOutcome {
            reply: answer.reply(),
            trade_state: answer.field("trade_state").map(str::to_owned),
            payment: answer
                .trusted_fields()
                .and_then(|fields| reply::payment_from_fields(fields).ok()),
        }
    }

    /// `closeorder` by our order number.
    pub async fn close_order(&self, out_trade_no: &str) -> Reply {
        self.client.close_order(out_trade_no).await.reply()
    }

    /// `downloadbill` of one day (`bill_type=ALL`, gzip), streamed into `on_entry`.
    pub async fn download_bill(
        &self,
        day: NaiveDate,
        mut on_entry: impl FnMut(WechatEntry) + Send,
    ) -> Result<BillDownloaded, BillUnavailable> {
        let query = bill::BillQuery::new(day);
        match bill::download_bill(&self.client, &query, |row| on_entry(row.entry())).await {
            Ok(statement) => Ok(BillDownloaded {
                lines: statement.summary.count,
            }),
            Err(e) => Err(BillUnavailable {
                failure: e.failure(),
                detail: e.to_string(),
            }),
        }
    }

    /// Reads a notify body: a refund notify, or a payment notify verified.
    pub fn read_notify(&self, body: &[u8]) -> PostedNotify {
        notify::read(body, self.merchant())
    }

    /// The XML answer to a notify.
    pub fn notify_reply(&self, ack: &NotifyAck) -> String {
        notify::reply(ack)
    }
}
