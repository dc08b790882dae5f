//! The v2 refund protocol against the simulator over real mutual TLS on loopback: requests,
//! refund queries and encrypted refund notifies, WeChat's refund rules, each injected fault as
//! the decision tables read it, and the merchant certificate's loading rules.

use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;
use chrono::Utc;
use minipay::wechat::simulator::{
    ConsoleRefund, Faults, ForceRule, Forced, NO_CLIENT_CERT, PayRequest, SimConfig, SimTls,
    Simulator, TlsPems, TradeState,
};
use minipay::wechat::v2::client::PayClient;
use minipay::wechat::v2::params::beijing_time;
use minipay::wechat::v2::refund::{RefundParams, RefundQueryKey, RefundQueryReply};
use minipay::wechat::v2::refund_client::RefundClient;
use minipay::wechat::v2::refund_notify::{RefundInfo, read_refund_notify};
use minipay::wechat::v2::reply::Answer;
use minipay::wechat::v2::tls::{
    CLIENT_CERT, CLIENT_KEY, CLIENT_P12, CLIENT_P12_PASSWORD, ClientIdentity, TlsProblem,
    WECHAT_CA_FILE, https_client, read_ca_file,
};
use minipay::wechat::v2::{SignType, UnifiedOrderParams};
use minipay_jobs::{RefundDecision, RefundQueryDecision, RefundResult, RefundStatus, Reply};
use tokio::sync::mpsc;

use crate::helpers::{demo_merchant, http, serve};

const MCH_ID: &str = "10000100";

/// A simulator listening on plain HTTP and on TLS, and clients for both.
struct Rig {
    sim: Simulator,
    http_url: String,
    https_url: String,
    pems: TlsPems,
    refunds: RefundClient,
    notify_url: String,
    notifies: mpsc::UnboundedReceiver<RefundInfo>,
}

/// Receives refund notifies, opens them and answers SUCCESS.
async fn notify_receiver() -> (String, mpsc::UnboundedReceiver<RefundInfo>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let router = Router::new()
        .route(
            "/refund-notify",
            post(
                |State(tx): State<mpsc::UnboundedSender<RefundInfo>>, body: Bytes| async move {
                    match read_refund_notify(&body, &demo_merchant(SignType::Md5)) {
                        Ok(info) => {
                            let _ = tx.send(info);
                            "<xml><return_code><![CDATA[SUCCESS]]></return_code></xml>"
                        }
                        Err(_) => "<xml><return_code><![CDATA[FAIL]]></return_code></xml>",
                    }
                },
            ),
        )
        .with_state(tx);
    (format!("{}/refund-notify", serve(router).await), rx)
}

fn identity(pems: &TlsPems) -> ClientIdentity {
    ClientIdentity::from_pem(
        pems.client_cert_pem.as_bytes(),
        pems.client_key_pem.as_bytes(),
        MCH_ID,
    )
    .unwrap()
}

fn refund_client(base: &str, ca: &SimTls, identity: Option<&ClientIdentity>) -> RefundClient {
    let http = https_client(
        &ca.ca_certificates(),
        identity,
        Duration::from_millis(500),
        Duration::from_secs(2),
    )
    .unwrap();
    RefundClient::new(PayClient::new(
        http,
        vec![base.to_owned()],
        demo_merchant(SignType::Md5),
    ))
}

async fn rig() -> Rig {
    let sim = Simulator::new(SimConfig::demo());
    sim.set_faults(Faults {
        notify_time_scale: 0.001,
        refund_result_ms: 200,
        ..Faults::default()
    });
    let http_url = serve(sim.router()).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let https_url = format!(
        "https://127.0.0.1:{}",
        listener.local_addr().unwrap().port()
    );
    let serving = sim.clone();
    tokio::spawn(async move { serving.serve_tls(listener).await });
    // The PEMs as `GET /sim/tls` hands them out (simulator mode reads them the same way).
    let pems: TlsPems = http()
        .get(format!("{http_url}/sim/tls"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let refunds = refund_client(&https_url, sim.tls().unwrap(), Some(&identity(&pems)));
    let (notify_url, notifies) = notify_receiver().await;
    Rig {
        sim,
        http_url,
        https_url,
        pems,
        refunds,
        notify_url,
        notifies,
    }
}

impl Rig {
    /// A paid order of 88 fen.
    async fn paid_order(&self, out_trade_no: &str) {
        let now = Utc::now();
        let merchant = demo_merchant(SignType::Md5);
        let order = UnifiedOrderParams {
            appid: merchant.appid.clone(),
            mch_id: merchant.mch_id.clone(),
            sign_type: SignType::Md5,
            body: "短信套餐 100 条".into(),
            attach: String::new(),
            out_trade_no: out_trade_no.into(),
            total_fee: 88,
            spbill_create_ip: "203.0.113.7".into(),
            notify_url: "http://127.0.0.1:9/v1/wechat/notify".into(),
            trade_type: "JSAPI".into(),
            openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
            time_start: beijing_time(now),
            time_expire: beijing_time(now + chrono::Duration::minutes(30)),
        };
        let pay = PayClient::new(http(), vec![self.http_url.clone()], merchant);
        assert_eq!(pay.unified_order(&order).await.reply(), Reply::Success);
        self.sim
            .pay(PayRequest {
                out_trade_no: out_trade_no.into(),
                deliver: false,
                coupon_fee: None,
            })
            .unwrap();
    }

    fn params(&self, out_trade_no: &str, out_refund_no: &str, refund_fee: i64) -> RefundParams {
        let merchant = demo_merchant(SignType::Md5);
        let params = RefundParams {
            appid: merchant.appid,
            mch_id: merchant.mch_id,
            sign_type: SignType::Md5,
            out_trade_no: out_trade_no.into(),
            out_refund_no: out_refund_no.into(),
            total_fee: 88,
            refund_fee,
            refund_desc: "商品已售完".into(),
            notify_url: self.notify_url.clone(),
        };
        if refund_fee <= 88 {
            params.validate().unwrap();
        }
        params
    }

    async fn decide(&self, params: &RefundParams) -> RefundDecision {
        self.refunds.request_refund(params).await.decision
    }

    async fn next_notify(&mut self) -> RefundInfo {
        tokio::time::timeout(Duration::from_secs(5), self.notifies.recv())
            .await
            .expect("a refund notify within 5 s")
            .unwrap()
    }

    /// Queries until the refund is no longer processing.
    async fn final_result(&self, out_refund_no: &str) -> RefundResult {
        for _ in 0..100 {
            match self
                .refunds
                .check_refund(out_refund_no, RefundStatus::Processing)
                .await
                .decision
            {
                RefundQueryDecision::Result(RefundResult::Processing) => {}
                RefundQueryDecision::Result(result) => return result,
                other => panic!("refundquery: {other:?}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("{out_refund_no} still processing")
    }
}

fn fail_code(decision: &RefundDecision) -> &str {
    match decision {
        RefundDecision::Fail(f) | RefundDecision::Alarm(f) | RefundDecision::Hold(f) => &f.code,
        other => panic!("not a refusal: {other:?}"),
    }
}

#[tokio::test]
async fn a_refund_is_accepted_then_succeeds_by_query_and_by_notify() {
    let mut rig = rig().await;
    rig.paid_order("MPREFUND001").await;
    let params = rig.params("MPREFUND001", "R001", 30);
    let attempt = rig.refunds.request_refund(&params).await;
    assert_eq!(
        attempt.decision,
        RefundDecision::Accepted,
        "{:?}",
        attempt.answer
    );
    let accepted = attempt.accepted.unwrap();
    assert!(accepted.refund_id.starts_with("503"));
    assert_eq!(accepted.refund_fee, 30);

    // accepted is not done: PROCESSING until the result comes
    let check = rig
        .refunds
        .check_refund("R001", RefundStatus::Processing)
        .await;
    assert_eq!(
        check.decision,
        RefundQueryDecision::Result(RefundResult::Processing)
    );

    let notified = rig.next_notify().await;
    assert_eq!(notified.out_refund_no, "R001");
    assert_eq!(notified.out_trade_no, "MPREFUND001");
    assert_eq!(notified.refund_id, accepted.refund_id);
    assert_eq!((notified.refund_fee, notified.total_fee), (30, 88));
    assert_eq!(notified.refund_status, RefundResult::Succeeded);
    assert!(notified.success_time.is_some());
    assert!(!notified.from_merchant_console());

    let check = rig
        .refunds
        .check_refund("R001", RefundStatus::Processing)
        .await;
    assert_eq!(
        check.decision,
        RefundQueryDecision::Result(RefundResult::Succeeded)
    );
    assert!(check.record.unwrap().success_time.is_some());

    // refundquery finds it by each of WeChat's keys
    for key in [
        RefundQueryKey::RefundId(accepted.refund_id.clone()),
        RefundQueryKey::TransactionId(accepted.transaction_id.clone()),
        RefundQueryKey::OutTradeNo("MPREFUND001".into()),
    ] {
        let answer = rig.refunds.refund_query(&key).await;
        let reply = RefundQueryReply::from_fields(answer.trusted_fields().unwrap()).unwrap();
        assert_eq!(
            reply.find("R001").map(|r| r.refund_fee),
            Some(30),
            "{key:?}"
        );
    }

    let view = rig.sim.refund("R001").unwrap();
    assert_eq!(view.refund_status, "SUCCESS");
    assert!(view.deliveries.iter().any(|d| d.acknowledged));
    let refund_calls: Vec<_> = rig
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.api == "refund")
        .collect();
    assert_eq!(refund_calls.len(), 1);
    assert_eq!(refund_calls[0].client_cert, Some(true));
    assert_eq!(
        refund_calls[0]
            .business
            .get("refund_fee")
            .map(String::as_str),
        Some("30")
    );
    assert_eq!(
        rig.sim.order("MPREFUND001").unwrap().trade_state,
        TradeState::Refund
    );
}

#[tokio::test]
async fn without_a_client_certificate_wechats_front_end_answers_400() {
    let rig = rig().await;
    rig.paid_order("MPREFUND002").await;
    let params = rig.params("MPREFUND002", "R002", 10);

    let anonymous = refund_client(&rig.https_url, rig.sim.tls().unwrap(), None);
    let answer = anonymous.refund(&params).await;
    assert!(matches!(answer, Answer::Rejected(400)), "{answer:?}");
    assert!(matches!(
        anonymous.request_refund(&params).await.decision,
        RefundDecision::Alarm(f) if f.code == "HTTP_REJECTED"
    ));
    // Plain HTTP to the refund path gets the same page.
    let page = http()
        .post(format!("{}/secapi/pay/refund", rig.http_url))
        .body("<xml></xml>")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 400);
    assert!(page.text().await.unwrap().contains(NO_CLIENT_CERT));

    assert!(rig.sim.refunds().is_empty());
    let calls = rig.sim.calls();
    let refund_calls: Vec<_> = calls.iter().filter(|c| c.api == "refund").collect();
    assert_eq!(refund_calls.len(), 3);
    assert!(refund_calls.iter().all(|c| c.client_cert == Some(false)));
    // Refund queries need no certificate.
    let query = anonymous
        .refund_query(&RefundQueryKey::OutRefundNo("R002".into()))
        .await;
    assert!(matches!(
        query.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "REFUNDNOTEXIST"
    ));
}

#[tokio::test]
async fn a_certificate_from_another_ca_is_refused_in_the_handshake() {
    let rig = rig().await;
    rig.paid_order("MPREFUND003").await;
    let stranger = SimTls::generate(MCH_ID).unwrap();
    let foreign = identity(stranger.pems());
    let client = refund_client(&rig.https_url, rig.sim.tls().unwrap(), Some(&foreign));
    let answer = client.refund(&rig.params("MPREFUND003", "R003", 10)).await;
    assert!(matches!(answer, Answer::Failed(_)), "{answer:?}");
    assert!(rig.sim.calls().iter().all(|c| c.api != "refund"));
    assert!(rig.sim.refunds().is_empty());

    // ...and a client that does not trust the simulator's CA never gets to send.
    let untrusting = https_client(
        &stranger.ca_certificates(),
        Some(&identity(&rig.pems)),
        Duration::from_millis(500),
        Duration::from_secs(2),
    )
    .unwrap();
    assert!(
        untrusting
            .post(format!("{}/secapi/pay/refund", rig.https_url))
            .send()
            .await
            .is_err()
    );
}

#[tokio::test]
async fn two_refunds_of_one_order_must_be_a_minute_apart() {
    let rig = rig().await;
    rig.paid_order("MPREFUND004").await;
    assert_eq!(
        rig.decide(&rig.params("MPREFUND004", "R004a", 30)).await,
        RefundDecision::Accepted
    );
    let second = rig.params("MPREFUND004", "R004b", 20);
    assert!(matches!(
        rig.decide(&second).await,
        RefundDecision::Retry { not_before_secs: 60, reason } if reason.starts_with("FREQUENCY_LIMITED")
    ));
    rig.sim.clock().advance(Duration::from_secs(61));
    assert_eq!(rig.decide(&second).await, RefundDecision::Accepted);
    assert_eq!(rig.sim.refunds().len(), 2);
}

#[tokio::test]
async fn the_same_out_refund_no_and_amount_is_the_same_refund() {
    let rig = rig().await;
    rig.paid_order("MPREFUND005").await;
    let params = rig.params("MPREFUND005", "R005", 30);
    let first = rig.refunds.request_refund(&params).await.accepted.unwrap();
    // A re-send (new nonce and sign), even within the minute, is the same refund.
    let again = rig.refunds.request_refund(&params).await;
    assert_eq!(again.decision, RefundDecision::Accepted);
    assert_eq!(again.accepted.unwrap().refund_id, first.refund_id);
    let calls: Vec<_> = rig
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.api == "refund")
        .collect();
    assert_eq!(calls[0].business, calls[1].business, "same business fields");
    assert_ne!(rig.sim.calls().len(), 0);

    // Same out_refund_no, other amount: refused, never a second refund.
    let changed = rig.params("MPREFUND005", "R005", 31);
    assert_eq!(
        fail_code(&rig.decide(&changed).await),
        "REFUND_FEE_MISMATCH"
    );
    assert_eq!(rig.sim.refunds().len(), 1);
}

#[tokio::test]
async fn refunds_never_add_up_to_more_than_the_order() {
    let rig = rig().await;
    rig.paid_order("MPREFUND006").await;
    assert_eq!(
        rig.decide(&rig.params("MPREFUND006", "R006a", 80)).await,
        RefundDecision::Accepted
    );
    rig.sim.clock().advance(Duration::from_secs(61));
    let too_much = rig.params("MPREFUND006", "R006b", 9);
    assert_eq!(fail_code(&rig.decide(&too_much).await), "INVALID_REQUEST");
    assert_eq!(
        rig.decide(&rig.params("MPREFUND006", "R006c", 8)).await,
        RefundDecision::Accepted
    );
    rig.sim.clock().advance(Duration::from_secs(61));
    assert_eq!(
        fail_code(&rig.decide(&rig.params("MPREFUND006", "R006d", 1)).await),
        "ERROR"
    );
    // More than the order's total in one request: a protocol-level refusal.
    let over = rig.params("MPREFUND006", "R006e", 89);
    assert_eq!(fail_code(&rig.decide(&over).await), "RETURN_FAIL");
    // A total that is not the order's.
    let mut wrong_total = rig.params("MPREFUND006", "R006f", 1);
    wrong_total.total_fee = 87;
    assert_eq!(fail_code(&rig.decide(&wrong_total).await), "PARAM_ERROR");
    // An order WeChat never saw paid.
    let unknown = rig.params("MPNOSUCH007", "R007", 1);
    assert_eq!(fail_code(&rig.decide(&unknown).await), "ORDERNOTEXIST");

    let listed = rig
        .refunds
        .refund_query(&RefundQueryKey::OutTradeNo("MPREFUND006".into()))
        .await;
    let reply = RefundQueryReply::from_fields(listed.trusted_fields().unwrap()).unwrap();
    let listed: Vec<_> = reply
        .refunds
        .iter()
        .map(|r| (r.out_refund_no.as_str(), r.refund_fee))
        .collect();
    assert_eq!(listed, [("R006a", 80), ("R006c", 8)]);
}

#[tokio::test]
async fn forced_faults_reach_the_client_as_the_decision_table_expects() {
    let rig = rig().await;
    rig.paid_order("MPREFUND008").await;
    let force = |outcome: Forced, times: u32| {
        rig.sim.force(ForceRule {
            out_trade_no: "MPREFUND008".into(),
            outcome,
            times,
        })
    };
    let params = rig.params("MPREFUND008", "R008", 50);

    // SYSTEMERROR twice, then HTTP 500, then a hang whose reply is lost.
    force(Forced::SystemError, 2);
    force(Forced::Http500, 1);
    force(Forced::Hang, 1);
    for _ in 0..2 {
        assert!(matches!(
            rig.decide(&params).await,
            RefundDecision::Retry { not_before_secs: 0, reason } if reason.starts_with("SYSTEMERROR")
        ));
    }
    assert!(matches!(
        rig.decide(&params).await,
        RefundDecision::Retry {
            not_before_secs: 0,
            ..
        }
    ));
    assert!(matches!(
        rig.decide(&params).await,
        RefundDecision::QueryFirst { .. }
    ));
    // The hung call was handled: the query finds the refund, and the re-send is the same one.
    assert!(matches!(
        rig.refunds
            .check_refund("R008", RefundStatus::Pending)
            .await
            .decision,
        RefundQueryDecision::Result(_)
    ));
    assert_eq!(rig.decide(&params).await, RefundDecision::Accepted);
    assert_eq!(rig.final_result("R008").await, RefundResult::Succeeded);
    assert_eq!(rig.sim.refunds().len(), 1, "WeChat refunded once");
    let sent: Vec<_> = rig
        .sim
        .calls()
        .into_iter()
        .filter(|c| c.api == "refund")
        .map(|c| c.business)
        .collect();
    assert_eq!(sent.len(), 5);
    assert!(
        sent.windows(2).all(|w| w[0] == w[1]),
        "every attempt the same"
    );

    // A reply signed with another key cannot be believed: query first.
    rig.sim.clock().advance(Duration::from_secs(61));
    force(Forced::BadSignature, 1);
    assert!(matches!(
        rig.decide(&rig.params("MPREFUND008", "R008b", 1)).await,
        RefundDecision::QueryFirst { .. }
    ));
    rig.sim.clock().advance(Duration::from_secs(61));
    force(
        Forced::ErrCode {
            err_code: "FREQUENCY_LIMITED".into(),
            err_code_des: "频率限制".into(),
        },
        1,
    );
    assert!(matches!(
        rig.decide(&rig.params("MPREFUND008", "R008c", 1)).await,
        RefundDecision::Retry {
            not_before_secs: 60,
            ..
        }
    ));
    force(
        Forced::ErrCode {
            err_code: "USER_ACCOUNT_ABNORMAL".into(),
            err_code_des: "退款请求失败".into(),
        },
        1,
    );
    assert_eq!(
        fail_code(&rig.decide(&rig.params("MPREFUND008", "R008c", 1)).await),
        "USER_ACCOUNT_ABNORMAL"
    );
}

#[tokio::test]
async fn notenough_holds_until_the_balance_returns() {
    let rig = rig().await;
    rig.paid_order("MPREFUND009").await;
    let params = rig.params("MPREFUND009", "R009", 88);
    rig.sim.set_faults(Faults {
        refund_notenough: true,
        notify_time_scale: 0.001,
        refund_result_ms: 200,
        ..Faults::default()
    });
    for _ in 0..2 {
        assert!(matches!(
            rig.decide(&params).await,
            RefundDecision::Hold(f) if f.code == "NOTENOUGH"
        ));
    }
    assert!(rig.sim.refunds().is_empty());
    rig.sim.set_faults(Faults {
        notify_time_scale: 0.001,
        refund_result_ms: 200,
        ..Faults::default()
    });
    assert_eq!(rig.decide(&params).await, RefundDecision::Accepted);
    assert_eq!(rig.final_result("R009").await, RefundResult::Succeeded);
}

#[tokio::test]
async fn forced_results_and_dropped_notifies() {
    let mut rig = rig().await;
    rig.paid_order("MPREFUND010").await;
    // CHANGE: the money could not go back; the notify and the query both say so.
    rig.sim
        .force_refund_outcome("MPREFUND010", RefundResult::Abnormal, 1);
    assert_eq!(
        rig.decide(&rig.params("MPREFUND010", "R010a", 10)).await,
        RefundDecision::Accepted
    );
    assert_eq!(
        rig.next_notify().await.refund_status,
        RefundResult::Abnormal
    );
    assert_eq!(rig.final_result("R010a").await, RefundResult::Abnormal);

    // REFUNDCLOSE, through the control endpoint.
    let closed = http()
        .post(format!("{}/sim/refunds/outcome", rig.http_url))
        .json(&serde_json::json!({"out_trade_no": "MPREFUND010", "refund_status": "REFUNDCLOSE"}))
        .send()
        .await
        .unwrap();
    assert_eq!(closed.status(), 204);
    rig.sim.clock().advance(Duration::from_secs(61));
    assert_eq!(
        rig.decide(&rig.params("MPREFUND010", "R010b", 10)).await,
        RefundDecision::Accepted
    );
    assert_eq!(rig.next_notify().await.refund_status, RefundResult::Closed);
    assert_eq!(rig.final_result("R010b").await, RefundResult::Closed);

    // Every notify dropped: the result is only found by refundquery.
    rig.sim.set_faults(Faults {
        drop_refund_notifies: true,
        notify_time_scale: 0.001,
        refund_result_ms: 100,
        ..Faults::default()
    });
    rig.sim.clock().advance(Duration::from_secs(61));
    assert_eq!(
        rig.decide(&rig.params("MPREFUND010", "R010c", 10)).await,
        RefundDecision::Accepted
    );
    assert_eq!(rig.final_result("R010c").await, RefundResult::Succeeded);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(rig.notifies.try_recv().is_err(), "no notify was sent");
    assert!(rig.sim.refund("R010c").unwrap().deliveries.is_empty());

    // A refund WeChat never received: safe to send while ours is pending.
    assert_eq!(
        rig.refunds
            .check_refund("R010z", RefundStatus::Pending)
            .await
            .decision,
        RefundQueryDecision::Resend
    );
}

#[tokio::test]
async fn a_console_refund_is_notified_with_an_unknown_out_refund_no() {
    let mut rig = rig().await;
    rig.paid_order("MPREFUND011").await;
    let view = rig
        .sim
        .console_refund(ConsoleRefund {
            out_trade_no: "MPREFUND011".into(),
            refund_fee: 20,
            out_refund_no: None,
            notify_url: Some(rig.notify_url.clone()),
        })
        .unwrap();
    assert_eq!(view.refund_request_source, "VENDOR_PLATFORM");
    let notified = rig.next_notify().await;
    assert!(notified.from_merchant_console());
    assert_eq!(notified.out_refund_no, view.out_refund_no);
    assert_eq!(notified.refund_fee, 20);
    // The console refund counts against the order's total.
    assert_eq!(
        fail_code(&rig.decide(&rig.params("MPREFUND011", "R011", 80)).await),
        "INVALID_REQUEST"
    );
}

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/refund-tls")
        .join(name)
}

#[test]
fn a_legacy_encrypted_p12_loads_with_the_mch_id_as_password() {
    let p12 = std::fs::read(fixture("apiclient_cert.p12")).unwrap();
    let identity = ClientIdentity::from_p12(&p12, None, MCH_ID).unwrap();
    assert_eq!(identity.subject_cn(), MCH_ID);
    assert_eq!(identity.chain().len(), 2, "the certificate and its CA");
    let same = ClientIdentity::from_p12_file(&fixture("apiclient_cert.p12"), Some(MCH_ID), MCH_ID)
        .unwrap();
    assert_eq!(same.chain(), identity.chain());
    assert!(
        !format!("{identity:?}").contains("BEGIN"),
        "the key stays out of Debug"
    );
    // The p12's identity makes a TLS client.
    assert!(
        https_client(
            &[],
            Some(&identity),
            Duration::from_secs(1),
            Duration::from_secs(1)
        )
        .is_ok()
    );

    let wrong = ClientIdentity::from_p12(&p12, Some("not-the-password"), MCH_ID).unwrap_err();
    assert_eq!(wrong.setting, CLIENT_P12_PASSWORD);
    assert!(matches!(wrong.problem, TlsProblem::Pkcs12(_)));
    // Another mch_id is another default password.
    let other = ClientIdentity::from_p12(&p12, None, "10000200").unwrap_err();
    assert_eq!(other.setting, CLIENT_P12);
    // The right password but another merchant's certificate.
    let foreign = ClientIdentity::from_p12(&p12, Some(MCH_ID), "10000200").unwrap_err();
    assert_eq!(foreign.setting, CLIENT_P12);
    assert!(matches!(foreign.problem, TlsProblem::WrongSubject { .. }));
}

#[test]
fn pem_certificates_are_refused_naming_the_setting_to_fix() {
    let load = |cert: &str, key: &str| {
        ClientIdentity::from_pem_files(&fixture(cert), &fixture(key), MCH_ID)
    };
    let good = load("apiclient_cert.pem", "apiclient_key.pem").unwrap();
    assert_eq!(good.subject_cn(), MCH_ID);
    assert!(good.expires_at() > Utc::now().timestamp());

    let mismatch = load("apiclient_cert.pem", "other_key.pem").unwrap_err();
    assert_eq!(
        (mismatch.setting, &mismatch.problem),
        (CLIENT_KEY, &TlsProblem::KeyMismatch)
    );
    assert!(mismatch.to_string().starts_with("MINIPAY_CLIENT_KEY: "));

    let wrong_cn = load("wrong_cn_cert.pem", "wrong_cn_key.pem").unwrap_err();
    assert_eq!(wrong_cn.setting, CLIENT_CERT);
    assert_eq!(
        wrong_cn.problem,
        TlsProblem::WrongSubject {
            found: Some("99999999".into()),
            mch_id: MCH_ID.into()
        }
    );

    let missing = load("no-such-cert.pem", "apiclient_key.pem").unwrap_err();
    assert_eq!(missing.setting, CLIENT_CERT);
    assert!(matches!(missing.problem, TlsProblem::Unreadable { .. }));
    let swapped = load("apiclient_key.pem", "apiclient_cert.pem").unwrap_err();
    assert_eq!(
        (swapped.setting, &swapped.problem),
        (CLIENT_CERT, &TlsProblem::NoCertificate)
    );

    assert_eq!(read_ca_file(&fixture("ca_cert.pem")).unwrap().len(), 1);
    let not_ca = read_ca_file(&fixture("apiclient_key.pem")).unwrap_err();
    assert_eq!(
        (not_ca.setting, &not_ca.problem),
        (WECHAT_CA_FILE, &TlsProblem::NoCertificate)
    );
}
