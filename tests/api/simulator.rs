//! The simulator is as strict as WeChat, and the client speaks to it over real loopback HTTP,
//! failing over between base URLs the way it would between api and api2.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::post;
use chrono::Utc;
use minipay::wechat::simulator::{Faults, ForceRule, Forced, PayRequest, TradeState};
use minipay::wechat::v2::PayClient;
use minipay::wechat::v2::params::beijing_time;
use minipay::wechat::v2::reply::Answer;
use minipay::wechat::v2::sign::{nonce, sign};
use minipay::wechat::v2::{ApiKey, Fields, SignType, UnifiedOrderParams, xml};
use minipay::wechat::{LoginClient, LoginError};
use minipay_jobs::{Reply, Transport};
use secrecy::SecretString;

use crate::helpers::{dead_url, demo_merchant, http, serve, simulator, wechat_http};

fn params(out_trade_no: &str, sign_type: SignType) -> UnifiedOrderParams {
    let merchant = demo_merchant(sign_type);
    let now = Utc::now();
    UnifiedOrderParams {
        appid: merchant.appid,
        mch_id: merchant.mch_id,
        sign_type,
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
    }
}

fn client(bases: Vec<String>, sign_type: SignType) -> PayClient {
    PayClient::new(wechat_http(), bases, demo_merchant(sign_type))
}

/// POSTs raw fields (signed with `key` unless `sign` is already present) to the simulator.
async fn post_raw(url: &str, path: &str, mut fields: Fields, key: Option<&ApiKey>) -> Fields {
    if let Some(key) = key {
        let sign_type = match fields.get("sign_type") {
            Some("HMAC-SHA256") => SignType::HmacSha256,
            _ => SignType::Md5,
        };
        let signature = sign(fields.iter(), key, sign_type);
        fields.set("sign", signature);
    }
    post_body(url, path, xml::to_xml(fields.iter())).await
}

async fn post_body(url: &str, path: &str, body: String) -> Fields {
    let reply = http()
        .post(format!("{url}{path}"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 200);
    xml::parse(&reply.bytes().await.unwrap(), xml::DEFAULT_BODY_LIMIT).unwrap()
}

fn full_request(out_trade_no: &str) -> Fields {
    let mut fields = params(out_trade_no, SignType::Md5).business_fields();
    let m = demo_merchant(SignType::Md5);
    fields.set("appid", m.appid);
    fields.set("mch_id", m.mch_id);
    fields.set("nonce_str", nonce());
    fields
}

#[tokio::test]
async fn unified_order_round_trip_in_both_sign_types() {
    let (sim, url) = simulator().await;
    for (otn, sign_type) in [
        ("MPTEST0001", SignType::Md5),
        ("MPTEST0002", SignType::HmacSha256),
    ] {
        let client = client(vec![url.clone()], sign_type);
        let frozen = params(otn, sign_type);
        let answer = client.unified_order(&frozen).await;
        assert_eq!(answer.reply(), Reply::Success, "{answer:?}");
        let prepay_id = answer.field("prepay_id").unwrap().to_owned();
        assert!(prepay_id.starts_with("wx"));

        // re-entry with the same parameters (new nonce, new sign): the same prepay_id
        let again = client.unified_order(&frozen).await;
        assert_eq!(again.field("prepay_id"), Some(prepay_id.as_str()));

        // changed amount under the same number: 201 商户订单号重复
        let mut changed = frozen.clone();
        changed.total_fee = 89;
        let refused = client.unified_order(&changed).await;
        assert_eq!(
            refused.reply(),
            Reply::BusinessFail {
                err_code: "INVALID_REQUEST".into(),
                err_code_des: "201 商户订单号重复".into()
            }
        );
        let calls = sim.order(otn).unwrap().calls;
        assert_eq!(calls.len(), 3);
        assert_eq!(
            calls[0].business, calls[1].business,
            "same business parameters"
        );
    }
}

#[tokio::test]
async fn malformed_or_wrongly_signed_requests_are_refused_like_wechat() {
    let (sim, url) = simulator().await;
    let key = sim.config().key.clone();

    let without = |name: &str| {
        let mut f = full_request("MPSTRICT01");
        f.remove(name);
        f
    };
    let set = |name: &str, value: &str| {
        let mut f = full_request("MPSTRICT01");
        f.set(name, value);
        f
    };
    let return_fail = |f: &Fields| {
        assert_eq!(f.get("return_code"), Some("FAIL"), "{f:?}");
        assert!(!f.contains("sign"), "FAIL replies are unsigned");
        f.get("return_msg").unwrap().to_owned()
    };
    let err_code = |f: &Fields| {
        assert_eq!(f.get("return_code"), Some("SUCCESS"), "{f:?}");
        assert_eq!(f.get("result_code"), Some("FAIL"), "{f:?}");
        f.get("err_code").unwrap().to_owned()
    };
    let path = "/pay/unifiedorder";

    // signature: wrong key, missing sign, sign_type left out of the string
    let reply = post_raw(
        &url,
        path,
        full_request("MPSTRICT01"),
        Some(&ApiKey::new("x".repeat(32))),
    )
    .await;
    assert_eq!(return_fail(&reply), "签名错误");
    let reply = post_raw(&url, path, full_request("MPSTRICT01"), None).await;
    assert_eq!(return_fail(&reply), "签名错误");
    let mut hmac = full_request("MPSTRICT01");
    let unsigned_type = sign(hmac.iter(), &key, SignType::HmacSha256);
    hmac.set("sign_type", "HMAC-SHA256");
    hmac.set("sign", unsigned_type);
    let reply = post_raw(&url, path, hmac, None).await;
    assert_eq!(return_fail(&reply), "签名错误");

    // identity
    let reply = post_raw(&url, path, set("mch_id", "1900000109"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "mch_id参数格式错误");
    let reply = post_raw(&url, path, set("appid", "wx1111111111111111"), Some(&key)).await;
    assert_eq!(err_code(&reply), "APPID_MCHID_NOT_MATCH");

    // required fields and formats
    for field in [
        "body",
        "out_trade_no",
        "total_fee",
        "spbill_create_ip",
        "notify_url",
        "trade_type",
    ] {
        let reply = post_raw(&url, path, without(field), Some(&key)).await;
        assert_eq!(err_code(&reply), "LACK_PARAMS", "{field}");
    }
    let reply = post_raw(&url, path, without("nonce_str"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "nonce_str参数长度有误");
    let reply = post_raw(&url, path, without("openid"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "JSAPI支付必须传openid");
    let reply = post_raw(&url, path, set("body", &"长".repeat(43)), Some(&key)).await;
    assert_eq!(return_fail(&reply), "body参数长度有误");
    let reply = post_raw(&url, path, set("body", "咖啡☕️🎉"), Some(&key)).await;
    assert_eq!(err_code(&reply), "NOT_UTF8");
    let reply = post_raw(&url, path, set("out_trade_no", "MP 0001"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "out_trade_no参数格式错误");
    let reply = post_raw(&url, path, set("total_fee", "0.88"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "total_fee参数格式错误");
    let reply = post_raw(&url, path, set("total_fee", "0"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "total_fee参数格式错误");
    let reply = post_raw(&url, path, set("spbill_create_ip", "localhost"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "spbill_create_ip参数格式错误");
    let reply = post_raw(
        &url,
        path,
        set("notify_url", "https://example.com/n?x=1"),
        Some(&key),
    )
    .await;
    assert_eq!(return_fail(&reply), "notify_url参数格式错误");
    let soon = beijing_time(Utc::now() + chrono::Duration::minutes(4));
    let reply = post_raw(&url, path, set("time_expire", &soon), Some(&key)).await;
    assert_eq!(
        return_fail(&reply),
        "time_expire时间过短，刷卡至少1分钟，其他5分钟"
    );
    let reply = post_raw(&url, path, set("trade_type", "NATIVE"), Some(&key)).await;
    assert_eq!(return_fail(&reply), "trade_type参数格式错误");
    let reply = post_body(
        &url,
        path,
        "<!DOCTYPE x [<!ENTITY e \"e\">]><xml><a>&e;</a></xml>".into(),
    )
    .await;
    assert_eq!(return_fail(&reply), "XML格式错误");

    // none of those created an order; a correct request does
    assert!(sim.order("MPSTRICT01").is_none());
    let reply = post_raw(&url, path, full_request("MPSTRICT01"), Some(&key)).await;
    assert_eq!(reply.get("result_code"), Some("SUCCESS"), "{reply:?}");
    assert!(sim.order("MPSTRICT01").is_some());
}

#[tokio::test]
async fn order_query_and_close_follow_wechat_rules() {
    let (sim, url) = simulator().await;
    let client = client(vec![url.clone()], SignType::Md5);
    let unknown = client.order_query("MPNOSUCH01").await;
    assert_eq!(
        unknown.reply(),
        Reply::BusinessFail {
            err_code: "ORDERNOTEXIST".into(),
            err_code_des: "order not exist".into()
        }
    );

    assert_eq!(
        client
            .unified_order(&params("MPQUERY001", SignType::Md5))
            .await
            .reply(),
        Reply::Success
    );
    let query = client.order_query("MPQUERY001").await;
    // the reply carries an empty device_info, which must not be signed: it still verifies
    assert_eq!(query.reply(), Reply::Success, "{query:?}");
    assert_eq!(query.field("trade_state"), Some("NOTPAY"));

    // closeorder within 5 minutes of creation is refused and counted as a violation
    let early = client.close_order("MPQUERY001").await;
    assert!(
        matches!(early.reply(), Reply::BusinessFail { .. }),
        "{early:?}"
    );
    assert_eq!(sim.close_violations().len(), 1);

    sim.clock().advance(Duration::from_secs(6 * 60));
    assert_eq!(
        client.close_order("MPQUERY001").await.reply(),
        Reply::Success
    );
    assert_eq!(
        client.order_query("MPQUERY001").await.field("trade_state"),
        Some("CLOSED")
    );
    let reopened = client
        .unified_order(&params("MPQUERY001", SignType::Md5))
        .await;
    assert!(matches!(
        reopened.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "ORDERCLOSED"
    ));

    // a paid order: SUCCESS with the payment fields, closeorder says ORDERPAID
    assert_eq!(
        client
            .unified_order(&params("MPQUERY002", SignType::Md5))
            .await
            .reply(),
        Reply::Success
    );
    let paid = sim
        .pay(PayRequest {
            out_trade_no: "MPQUERY002".into(),
            deliver: false,
            coupon_fee: Some(8),
        })
        .unwrap();
    let query = client.order_query("MPQUERY002").await;
    assert_eq!(query.field("trade_state"), Some("SUCCESS"));
    assert_eq!(
        query.field("transaction_id"),
        Some(paid.transaction_id.as_str())
    );
    assert_eq!(query.field("cash_fee"), Some("80"));
    assert_eq!(query.field("coupon_fee_0"), Some("8"));
    sim.clock().advance(Duration::from_secs(6 * 60));
    assert!(matches!(
        client.close_order("MPQUERY002").await.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "ORDERPAID"
    ));
    assert!(matches!(
        client
            .unified_order(&params("MPQUERY002", SignType::Md5))
            .await
            .reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "ORDERPAID"
    ));
}

#[tokio::test]
async fn faults_reach_the_client_as_the_decision_tables_expect() {
    let (sim, url) = simulator().await;
    let client = client(vec![url.clone()], SignType::Md5);
    // frozen, as the service freezes them: time_start and time_expire must not move
    let (p1, p2) = (
        params("MPFAULT001", SignType::Md5),
        params("MPFAULT002", SignType::Md5),
    );
    let force = |otn: &str, outcome: Forced| {
        sim.force(ForceRule {
            out_trade_no: otn.into(),
            outcome,
            times: 1,
        })
    };

    force("MPFAULT001", Forced::Http500);
    assert_eq!(
        client.unified_order(&p1).await.reply(),
        Reply::Unknown(Transport::ServerError(500))
    );
    force("MPFAULT001", Forced::SystemError);
    assert!(matches!(
        client.unified_order(&p1).await.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "SYSTEMERROR"
    ));
    force("MPFAULT001", Forced::BadSignature);
    assert_eq!(client.unified_order(&p1).await.reply(), Reply::Untrusted);
    force("MPFAULT001", Forced::Hang);
    let started = std::time::Instant::now();
    assert_eq!(
        client.unified_order(&p1).await.reply(),
        Reply::Unknown(Transport::Timeout)
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    force(
        "MPFAULT001",
        Forced::ErrCode {
            err_code: "NOAUTH".into(),
            err_code_des: "商户无此接口权限".into(),
        },
    );
    assert!(matches!(
        client.unified_order(&p1).await.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "NOAUTH"
    ));
    // the hung call was handled before its reply was lost: the order exists, same prepay_id
    let answer = client.unified_order(&p1).await;
    assert_eq!(answer.reply(), Reply::Success);
    assert_eq!(
        answer.field("prepay_id"),
        Some(sim.order("MPFAULT001").unwrap().prepay_id.as_str())
    );

    // PaidElsewhere: ORDERPAID now, and orderquery agrees
    force("MPFAULT002", Forced::PaidElsewhere);
    assert!(matches!(
        client.unified_order(&p2).await.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "ORDERPAID"
    ));
    assert_eq!(
        client.order_query("MPFAULT002").await.field("trade_state"),
        Some("SUCCESS")
    );

    // global faults: every reply badly signed
    sim.set_faults(Faults {
        bad_signature: true,
        ..Faults::default()
    });
    assert_eq!(
        client.order_query("MPFAULT002").await.reply(),
        Reply::Untrusted
    );
    sim.set_faults(Faults::default());
    let calls = sim.order("MPFAULT001").unwrap().calls;
    let outcomes: Vec<&str> = calls.iter().map(|c| c.outcome.as_str()).collect();
    assert_eq!(
        outcomes,
        [
            "HTTP_500",
            "SYSTEMERROR",
            "SUCCESS",
            "HANG after SUCCESS",
            "NOAUTH",
            "SUCCESS"
        ]
    );
    assert!(calls.windows(2).all(|w| w[0].business == w[1].business));
}

#[tokio::test]
async fn the_client_fails_over_to_the_next_base_url() {
    let (sim, url) = simulator().await;
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let always_503 = serve(Router::new().route(
        "/pay/unifiedorder",
        post(move || {
            counted.fetch_add(1, Ordering::SeqCst);
            async { (axum::http::StatusCode::SERVICE_UNAVAILABLE, "down") }
        }),
    ))
    .await;
    let hanging = serve(Router::new().route(
        "/pay/unifiedorder",
        post(|| async {
            tokio::time::sleep(Duration::from_secs(30)).await;
            "never"
        }),
    ))
    .await;

    for (i, first) in [dead_url().await, always_503.clone(), hanging]
        .into_iter()
        .enumerate()
    {
        let otn = format!("MPFAILOVER{i}");
        let answer = client(vec![first, url.clone()], SignType::Md5)
            .unified_order(&params(&otn, SignType::Md5))
            .await;
        assert_eq!(answer.reply(), Reply::Success, "primary #{i}: {answer:?}");
        assert_eq!(sim.order(&otn).unwrap().calls.len(), 1);
    }
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    // an answer is not failed over: a FAIL from the first host is final
    let (_, other_url) = simulator().await;
    let client = client(vec![url.clone(), other_url], SignType::Md5);
    let mut wrong = params("MPFAILOVER0", SignType::Md5);
    wrong.total_fee = 1;
    assert!(matches!(
        client.unified_order(&wrong).await.reply(),
        Reply::BusinessFail {
            err_code,
            ..
        } if err_code == "INVALID_REQUEST"
    ));

    // both hosts down: the last failure is reported
    let down = PayClient::new(
        http(),
        vec![dead_url().await, always_503],
        demo_merchant(SignType::Md5),
    );
    assert_eq!(
        down.unified_order(&params("MPFAILOVER9", SignType::Md5))
            .await
            .reply(),
        Reply::Unknown(Transport::ServerError(503))
    );
}

#[tokio::test]
async fn login_codes_are_exchanged_once_and_failures_are_typed() {
    let (sim, url) = simulator().await;
    let demo = sim.config().clone();
    let login = LoginClient::new(
        http(),
        vec![dead_url().await, url.clone()],
        demo.appid.clone(),
        SecretString::from(demo.app_secret.clone()),
    );
    let session = login.code_to_session("alice#1").await.unwrap();
    assert!(session.openid.starts_with('o') && session.openid.len() == 28);
    let again = login.code_to_session("alice#2").await.unwrap();
    assert_eq!(again.openid, session.openid, "the same user");
    let bob = login.code_to_session("bob#1").await.unwrap();
    assert_ne!(bob.openid, session.openid);

    assert!(matches!(
        login.code_to_session("alice#1").await,
        Err(LoginError::Rejected { errcode: 40163, .. })
    ));
    assert!(matches!(
        login.code_to_session("invalid-1").await,
        Err(LoginError::Rejected { errcode: 40029, .. })
    ));
    assert!(matches!(
        login.code_to_session("busy-1").await,
        Err(LoginError::Unavailable(_))
    ));

    let wrong_secret = LoginClient::new(
        http(),
        vec![url],
        demo.appid,
        SecretString::from("nope".to_owned()),
    );
    assert!(matches!(
        wrong_secret.code_to_session("carol").await,
        Err(LoginError::Rejected { errcode: 40125, .. })
    ));
}

#[tokio::test]
async fn notifies_are_resent_until_acknowledged() {
    let (sim, url) = simulator().await;
    sim.set_faults(Faults {
        notify_time_scale: 0.001,
        ..Faults::default()
    });
    let received = Arc::new(AtomicUsize::new(0));
    let counter = received.clone();
    let merchant = serve(Router::new().route(
        "/v1/wechat/notify",
        post(move |body: axum::body::Bytes| {
            let n = counter.fetch_add(1, Ordering::SeqCst);
            async move {
                let fields = xml::parse(&body, xml::DEFAULT_BODY_LIMIT).unwrap();
                assert!(minipay::wechat::v2::sign::verify(&fields, &demo_merchant(SignType::Md5).key).is_ok());
                if n < 2 {
                    "<xml><return_code><![CDATA[FAIL]]></return_code></xml>"
                } else {
                    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
                }
            }
        }),
    ))
    .await;
    let mut p = params("MPNOTIFY01", SignType::HmacSha256);
    p.notify_url = format!("{merchant}/v1/wechat/notify");
    let client = client(vec![url], SignType::HmacSha256);
    assert_eq!(client.unified_order(&p).await.reply(), Reply::Success);
    let paid = sim
        .pay(PayRequest {
            out_trade_no: "MPNOTIFY01".into(),
            deliver: true,
            coupon_fee: None,
        })
        .unwrap();
    // an HMAC order's notify has no sign_type and a 64-digit sign
    let notify = xml::parse(paid.notify_xml.as_bytes(), xml::DEFAULT_BODY_LIMIT).unwrap();
    assert!(!notify.contains("sign_type"));
    assert_eq!(notify.get("sign").unwrap().len(), 64);

    for _ in 0..200 {
        if sim
            .order("MPNOTIFY01")
            .unwrap()
            .deliveries
            .iter()
            .any(|d| d.acknowledged)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let deliveries = sim.order("MPNOTIFY01").unwrap().deliveries;
    assert_eq!(deliveries.len(), 3, "{deliveries:?}");
    assert_eq!(deliveries.iter().filter(|d| d.acknowledged).count(), 1);
    assert_eq!(received.load(Ordering::SeqCst), 3);
    assert_eq!(
        sim.order("MPNOTIFY01").unwrap().trade_state,
        TradeState::Success
    );
    let answer = Answer::Failed(Transport::Connect);
    assert_eq!(answer.reply().label(), "CONNECT");
}
