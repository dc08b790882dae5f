//! Crash safety of merchant events with the real binary: the process is killed (SIGKILL) after
//! the payment committed and while its event's delivery is in flight; after a restart the event
//! is delivered, with the same id.

use std::time::Duration;

use serde_json::{Value, json};

use crate::events::{Answer, CURRENT, Receiver};
use crate::helpers::{ADMIN_TOKEN, Database, eventually, on_both_backends};
use crate::process::{Proc, free_port, wait_until_up};

fn env(database_url: &str, port: u16, webhook: &str) -> Vec<(&'static str, String)> {
    vec![
        ("MINIPAY_DATABASE_URL", database_url.to_owned()),
        ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
        ("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
        ("MINIPAY_LOG", "warn".to_owned()),
        ("MINIPAY_HEARTBEAT_SECS", "1".to_owned()),
        ("MINIPAY_WEBHOOK_URL", webhook.to_owned()),
        ("MINIPAY_WEBHOOK_SECRET", CURRENT.to_owned()),
        ("MINIPAY_WEBHOOK_TIMEOUT_SECS", "30".to_owned()),
    ]
}

async fn admin_get(base: &str, path: &str) -> Value {
    crate::helpers::http()
        .get(format!("{base}{path}"))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

on_both_backends! {
    async fn an_event_in_flight_at_sigkill_is_delivered_after_restart(backend) {
        let Some(db) = Database::create(backend).await else { return };
        // The first delivery hangs (the process dies during it); later ones succeed.
        let receiver = Receiver::start(|n| if n == 0 { Answer::Hang } else { Answer::Status(200) }).await;
        let logs = tempfile::tempdir().unwrap();
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut first = Proc::start("first", &["all"], &env(&db.url, port, &receiver.url), logs.path());
        wait_until_up(&format!("{base}/readyz"), &mut first).await;

        let http = crate::helpers::http();
        let created: Value = http
            .post(format!("{base}/v1/admin/orders"))
            .bearer_auth(ADMIN_TOKEN)
            .json(&json!({"openid": "o-crash", "description": "crash test", "total_fee": 1}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let out_trade_no = created["out_trade_no"].as_str().unwrap().to_owned();
        let path = format!("/v1/admin/orders/{out_trade_no}");
        eventually("ready", || async { admin_get(&base, &path).await["status"] == "ready" }).await;
        let paid = http
            .post(format!("{base}/simulator/sim/pay"))
            .json(&json!({"out_trade_no": out_trade_no}))
            .send()
            .await
            .unwrap();
        assert!(paid.status().is_success(), "{:?}", paid.text().await);
        let got = receiver.wait_for(1).await;
        first.signal("KILL");
        first.wait_for_exit(Duration::from_secs(10)).expect("killed");
        assert_eq!(admin_get_down(&base).await, None, "the process is gone");

        let mut second = Proc::start("second", &["all"], &env(&db.url, port, &receiver.url), logs.path());
        wait_until_up(&format!("{base}/readyz"), &mut second).await;
        let again = receiver.wait_for(2).await;
        assert_eq!(again[1].header("webhook-id"), got[0].header("webhook-id"));
        assert!(again[1].verifies_with(CURRENT));
        assert_eq!(again[1].envelope().data["out_trade_no"], out_trade_no.as_str());
        let query = format!("/v1/admin/events?out_trade_no={out_trade_no}");
        eventually("delivered after restart", || async {
            admin_get(&base, &query).await["events"][0]["state"] == "delivered"
        })
        .await;
        assert_eq!(admin_get(&base, &query).await["events"].as_array().unwrap().len(), 1);
        second.signal("TERM");
        second.wait_for_exit(Duration::from_secs(15));
        db.drop_now().await;
    }
}

/// `Some(status)` if something still answers on the port.
async fn admin_get_down(base: &str) -> Option<u16> {
    crate::helpers::http()
        .get(format!("{base}/healthz"))
        .send()
        .await
        .ok()
        .map(|r| r.status().as_u16())
}
