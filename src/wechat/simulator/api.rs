//! WeChat Pay's endpoints on the wire: `/pay/unifiedorder`, `/pay/orderquery` and
//! `/pay/closeorder` read, recorded, answered (see `orders`) and signed — with the injected
//! faults (5xx, hangs, SYSTEMERROR, bad signatures) deciding how each answer is delivered.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::Simulator;
use super::orders::{Answer, Api};
use super::state::{Call, Faults, Forced};
use super::wire::{return_fail, xml_response};
use crate::wechat::v2::sign::{SignType, detect_sign_type, nonce, sign};
use crate::wechat::v2::{ApiKey, Fields, xml};

pub(super) async fn unified_order(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::UnifiedOrder, &body).await
}

pub(super) async fn order_query(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::OrderQuery, &body).await
}

pub(super) async fn close_order(State(sim): State<Simulator>, body: Bytes) -> Response {
    sim.pay_call(Api::CloseOrder, &body).await
}

/// What a fault puts in place of the real answer.
enum Preempted {
    Http500,
    Answer(Answer),
}

/// How a call is delivered, decided by faults before or after handling.
enum Delivery {
    Normal,
    BadSignature,
    Hang,
}

impl Simulator {
    pub(super) async fn pay_call(&self, api: Api, body: &[u8]) -> Response {
        let faults = self.state().faults.clone();
        if faults.latency_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.latency_ms)).await;
        }
        let fields = match xml::parse(body, xml::DEFAULT_BODY_LIMIT) {
            Ok(fields) => fields,
            Err(e) => {
                self.record(api, None, BTreeMap::new(), format!("RETURN_FAIL: {e}"));
                return return_fail("XML格式错误");
            }
        };
        let out_trade_no = fields.non_empty("out_trade_no").map(str::to_owned);
        let business: BTreeMap<String, String> = fields
            .iter()
            .filter(|(name, _)| !matches!(*name, "nonce_str" | "sign"))
            .map(|(n, v)| (n.to_owned(), v.to_owned()))
            .collect();
        // The reply is signed the way the request was; MD5 when that is unreadable.
        let sign_type = detect_sign_type(&fields).unwrap_or(SignType::Md5);

        let forced = self.state().take_forced(out_trade_no.as_deref());
        let (preempted, delivery) = self.faults(forced, &faults, &fields, &business, sign_type);
        let answer = match preempted {
            Some(Preempted::Http500) => {
                self.record(api, out_trade_no, business, "HTTP_500".into());
                return (StatusCode::INTERNAL_SERVER_ERROR, "Internal Server Error")
                    .into_response();
            }
            Some(Preempted::Answer(answer)) => answer,
            None => self.handle(api, &fields, &business),
        };
        let outcome = match delivery {
            Delivery::Hang => format!("HANG after {}", answer.label()),
            _ => answer.label(),
        };
        self.record(api, out_trade_no, business, outcome);

        let key = match delivery {
            Delivery::BadSignature => ApiKey::new("not-the-merchant-key-not-the-key!"),
            _ => self.config().key.clone(),
        };
        let response = self.reply(answer, sign_type, &key);
        if let Delivery::Hang = delivery {
            tokio::time::sleep(Duration::from_millis(faults.hang_ms)).await;
            return (StatusCode::INTERNAL_SERVER_ERROR, "gateway timeout").into_response();
        }
        response
    }

    /// What the forced outcome (else the random faults) make of this call: something in
    /// place of the real answer, and how the answer is delivered.
    fn faults(
        &self,
        forced: Option<Forced>,
        faults: &Faults,
        fields: &Fields,
        business: &BTreeMap<String, String>,
        sign_type: SignType,
    ) -> (Option<Preempted>, Delivery) {
        let system_error =
            || Preempted::Answer(Answer::Fail("SYSTEMERROR".into(), "系统错误".into()));
        let mut delivery = if faults.bad_signature {
            Delivery::BadSignature
        } else {
            Delivery::Normal
        };
        let preempted = match forced {
            Some(Forced::Http500) => Some(Preempted::Http500),
            Some(Forced::SystemError) => Some(system_error()),
            Some(Forced::ErrCode {
                err_code,
                err_code_des,
            }) => Some(Preempted::Answer(Answer::Fail(err_code, err_code_des))),
            Some(Forced::ReturnFail { return_msg }) => {
                Some(Preempted::Answer(Answer::ReturnFail(return_msg)))
            }
            Some(Forced::Hang) => {
                delivery = Delivery::Hang;
                None
            }
            Some(Forced::BadSignature) => {
                delivery = Delivery::BadSignature;
                None
            }
            Some(Forced::PaidElsewhere) => {
                self.pay_elsewhere(fields, business, sign_type);
                None
            }
            None if rand::random::<f64>() < faults.http_500_share => Some(Preempted::Http500),
            None if rand::random::<f64>() < faults.systemerror_share => Some(system_error()),
            None => {
                if rand::random::<f64>() < faults.hang_share {
                    delivery = Delivery::Hang;
                }
                None
            }
        };
        (preempted, delivery)
    }

    pub(super) fn record(
        &self,
        api: Api,
        out_trade_no: Option<String>,
        business: BTreeMap<String, String>,
        outcome: String,
    ) {
        self.state().record(Call {
            api: api.name().to_owned(),
            out_trade_no,
            business,
            at_ms: chrono::Utc::now().timestamp_millis(),
            outcome,
            client_cert: api.client_cert(),
        });
    }

    fn reply(&self, answer: Answer, sign_type: SignType, key: &ApiKey) -> Response {
        let mut fields = match answer {
            Answer::ReturnFail(msg) => return return_fail(&msg),
            Answer::Fail(code, description) => Fields::from_iter([
                ("result_code", "FAIL"),
                ("err_code", code.as_str()),
                ("err_code_des", description.as_str()),
            ]),
            Answer::Success(extra) => {
                let mut fields = Fields::from_iter([("result_code", "SUCCESS")]);
                for (name, value) in extra.iter() {
                    fields.set(name, value);
                }
                fields
            }
        };
        fields.set("return_code", "SUCCESS");
        fields.set("return_msg", "OK");
        fields.set("appid", &self.config().appid);
        fields.set("mch_id", &self.config().mch_id);
        fields.set("nonce_str", nonce());
        let signature = sign(fields.iter(), key, sign_type);
        fields.set("sign", signature);
        xml_response(xml::to_xml(fields.iter()))
    }
}
