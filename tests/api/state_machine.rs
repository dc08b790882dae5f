//! The state machine the store enforces is the core crate's: for every (from, to) pair of
//! order statuses, the store's guarded update into `to` succeeds on an order in `from` exactly
//! when `from.can_become(to)`, and leaves the order as it was otherwise.

use minipay::app::Role;
use minipay::store::{Applied, CreateOutcome, NewOrder, Outbox, Store};
use minipay_jobs::{OrderStatus, PayParams, Payment, Prepaid};

use crate::helpers::{TestApp, on_both_backends};

fn new_order(out_trade_no: &str, now_ms: i64) -> NewOrder {
    NewOrder {
        out_trade_no: out_trade_no.to_owned(),
        session_id: None,
        openid: "oStateMachine".into(),
        sku: None,
        quantity: None,
        total_fee: 88,
        description: "state machine".into(),
        attach: String::new(),
        payer_ip: "127.0.0.1".into(),
        idempotency_key: None,
        unpaid_cap: None,
        params: "{}".into(),
        created_at: now_ms,
        expires_at: now_ms + 1_800_000,
    }
}

/// Puts the order in `status` behind the store's back, as the only way to reach every `from`.
/// Its refunds are made to add up to the total, so that `paid → refunded` is possible.
async fn force(store: &Store, out_trade_no: &str, status: OrderStatus) {
    let sql = "UPDATE orders SET status = $1, refund_reserved = total_fee, refunded_fee = total_fee \
               WHERE out_trade_no = $2";
    match store {
        Store::Sqlite(p) => {
            sqlx::query(sql)
                .bind(status.as_str())
                .bind(out_trade_no)
                .execute(&p.writer)
                .await
                .unwrap();
        }
        Store::Postgres(p) => {
            sqlx::query(sql)
                .bind(status.as_str())
                .bind(out_trade_no)
                .execute(p)
                .await
                .unwrap();
        }
    }
}

/// The store's update into `to`; whether it changed the order.
async fn become_(store: &Store, out_trade_no: &str, to: OrderStatus, now_ms: i64) -> bool {
    match to {
        // Only an insert makes a `pending` order: the store has no update into it.
        OrderStatus::Pending => false,
        OrderStatus::Ready => {
            let prepaid = Prepaid {
                prepay_id: "wx_state_machine".into(),
                pay_params: PayParams {
                    time_stamp: "1700000000".into(),
                    nonce_str: "n".into(),
                    package: "prepay_id=wx_state_machine".into(),
                    sign_type: "MD5".into(),
                    pay_sign: "S".into(),
                },
            };
            store
                .mark_ready(out_trade_no, &prepaid, now_ms, now_ms)
                .await
                .unwrap()
        }
        OrderStatus::Failed => store
            .mark_failed(out_trade_no, "CODE", "message", &Outbox::default(), now_ms)
            .await
            .unwrap(),
        OrderStatus::Closed => store
            .mark_closed(out_trade_no, "closed", &Outbox::default(), now_ms)
            .await
            .unwrap(),
        OrderStatus::Refunded => store
            .mark_refunded(out_trade_no, &Outbox::default(), now_ms)
            .await
            .unwrap(),
        OrderStatus::Paid => {
            let payment = Payment {
                out_trade_no: out_trade_no.to_owned(),
                transaction_id: format!("4200{out_trade_no}"),
                total_fee: 88,
                cash_fee: 88,
                time_end: "20260101000000".into(),
            };
            matches!(
                store
                    .apply_payment(&payment, "test", None, &Outbox::default(), now_ms)
                    .await
                    .unwrap(),
                Applied::Paid { .. }
            )
        }
    }
}

on_both_backends! {
    async fn exactly_the_transitions_the_core_crate_allows_succeed(backend) {
        // API only: no worker touches the orders while the test moves them.
        let Some(app) = TestApp::spawn_with(backend, Role::Serve, |_| {}).await else { return };
        let store = app.store();
        let now_ms = chrono::Utc::now().timestamp_millis();
        assert_eq!(OrderStatus::sources(OrderStatus::Pending).count(), 0, "nothing may become pending");
        let mut allowed = Vec::new();
        for from in OrderStatus::ALL {
            for to in OrderStatus::ALL {
                let otn = format!("SM{}{}", &from.as_str()[..3], &to.as_str()[..3]).to_uppercase();
                let created = store.create_order(&new_order(&otn, now_ms)).await.unwrap();
                assert!(matches!(created, CreateOutcome::Created(_)), "{otn}");
                force(store, &otn, from).await;
                let changed = become_(store, &otn, to, now_ms).await;
                assert_eq!(changed, from.can_become(to), "{from} -> {to}");
                let status = store.order(&otn).await.unwrap().unwrap().status;
                assert_eq!(status, if changed { to } else { from }, "{from} -> {to}");
                if changed {
                    allowed.push(format!("{from}->{to}"));
                }
            }
        }
        assert_eq!(allowed, ["pending->ready", "pending->paid", "pending->failed", "ready->paid", "ready->closed", "paid->refunded"]);
        app.stop().await;
    }
}
