//! The text log as operators read it (the binary's stderr): text from outside — a notify body,
//! a WeChat message — is escaped, so a crafted body cannot forge a line or send terminal
//! escapes to whoever tails the log.

use std::time::Duration;

use crate::helpers::{ADMIN_TOKEN, Database, on_both_backends};
use crate::process::{Proc, free_port, wait_until_up};

/// A line a forger would like to see in the log, preceded by a newline and followed by an ESC.
const FORGED: &str = "\n2026-11-30T10:00:00.000000Z  INFO notify{out_trade_no=\"MP1\"}: payment notify recorded notify_id=1\x1b[2J";

on_both_backends! {
    async fn a_crafted_notify_cannot_forge_log_lines(backend) {
        let Some(db) = Database::create(backend).await else { return };
        let logs = tempfile::tempdir().unwrap();
        let port = free_port();
        let env = vec![
            ("MINIPAY_DATABASE_URL", db.url.clone()),
            ("MINIPAY_LISTEN", format!("127.0.0.1:{port}")),
            ("MINIPAY_ADMIN_TOKEN", ADMIN_TOKEN.to_owned()),
            ("MINIPAY_LOG", "info".to_owned()),
            ("MINIPAY_LOG_FORMAT", "text".to_owned()),
            ("MINIPAY_SHUTDOWN_TIMEOUT_SECS", "5".to_owned()),
        ];
        let mut proc = Proc::start("minipay", &["all"], &env, logs.path());
        let base = format!("http://127.0.0.1:{port}");
        wait_until_up(&format!("{base}/readyz"), &mut proc).await;
        let bodies = [
            // The refusal quotes an entity name, an element name, a root name.
            format!("<xml><return_code>&evil{FORGED};</return_code></xml>"),
            format!("<xml><a>1</a><a{}>2</a></xml>", "\x1b[31m"),
            format!("<root{}/>", "\x1b[31m"),
            // A well-formed notify whose fields carry the forged line (refused: no signature).
            format!("<xml><return_code>SUCCESS</return_code><out_trade_no>MP1{FORGED}</out_trade_no><result_code>X{FORGED}</result_code></xml>"),
        ];
        let http = crate::helpers::http();
        for body in &bodies {
            let reply = http.post(format!("{base}/v1/wechat/notify")).body(body.clone()).send().await.unwrap();
            assert!(reply.text().await.unwrap().contains("FAIL"));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        proc.signal("TERM");
        assert!(proc.wait_for_exit(Duration::from_secs(20)).is_some_and(|s| s.success()));
        let log = proc.output();
        let refusals = log.lines().filter(|l| l.contains("notify refused")).count();
        assert_eq!(refusals, bodies.len(), "{log}");
        assert!(!log.contains('\x1b'), "a raw escape byte:\n{log:?}");
        for line in log.lines() {
            // Each line is an event of ours: a timestamp, a level, then the event.
            assert!(!line.starts_with("2026-11-30T10:00:00"), "a forged line: {line:?}");
            assert!(!line.contains("payment notify recorded") || line.contains("notify refused"), "a forged line: {line:?}");
        }
        db.drop_now().await;
    }
}
