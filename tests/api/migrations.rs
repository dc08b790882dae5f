//! Upgrading a database that holds data: migrations keep every order, leave the constraints
//! the code relies on, and drop what must not stay (plain session_keys).

use minipay::store::{InsertSignal, Store};
use sqlx::Connection;

use crate::helpers::{Backend, Database, on_both_backends};

/// Applies our migrations numbered below `before` only.
async fn migrate_until(backend: Backend, url: &str, before: i64) {
    let dir = match backend {
        Backend::Sqlite => "migrations/sqlite",
        Backend::Postgres => "migrations/postgres",
    };
    let migrator = sqlx::migrate::Migrator::new(std::path::Path::new(dir))
        .await
        .unwrap();
    match backend {
        Backend::Sqlite => {
            let options: sqlx::sqlite::SqliteConnectOptions = url.parse().unwrap();
            let mut conn = sqlx::SqliteConnection::connect_with(&options.create_if_missing(true))
                .await
                .unwrap();
            migrator.run_to(before - 1, &mut conn).await.unwrap();
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            migrator.run_to(before - 1, &mut conn).await.unwrap();
        }
    }
}

/// Runs statements on a fresh connection to either backend.
async fn execute(backend: Backend, url: &str, statements: &[String]) {
    match backend {
        Backend::Sqlite => {
            let mut conn = sqlx::SqliteConnection::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
        Backend::Postgres => {
            let mut conn = sqlx::PgConnection::connect(url).await.unwrap();
            for s in statements {
                sqlx::query(sqlx::AssertSqlSafe(s.as_str()))
                    .execute(&mut conn)
                    .await
                    .unwrap();
            }
        }
    }
}

const NOTIFY: &str =
    "INSERT INTO notifies (received_at, verdict, detail, out_trade_no, raw) VALUES ";

const ORDER: &str = "INSERT INTO orders (out_trade_no, session_id, openid, total_fee, description, payer_ip, \
     idempotency_key, params, status, created_at, updated_at, expires_at) VALUES ";

on_both_backends! {
    async fn an_upgrade_keeps_orders_and_drops_plain_sessions_and_whole_forgeries(backend) {
        let Some(db) = Database::create(backend).await else { return };
        migrate_until(backend, &db.url, 3).await;
        // Before: one user, two sessions, the same key twice (a duplicate order).
        execute(backend, &db.url, &[
            "INSERT INTO sessions (id, token_hash, openid, session_key, created_at, expires_at) VALUES (1, 'h1', 'oU', 'k', 0, 1), (2, 'h2', 'oU', 'k', 0, 1)".to_owned(),
            format!("{ORDER} ('MPOLD', 1, 'oU', 88, 'd', '127.0.0.1', 'tap', '{{}}', 'pending', 1, 1, 9)"),
            format!("{ORDER} ('MPNEW', 2, 'oU', 88, 'd', '127.0.0.1', 'tap', '{{}}', 'pending', 2, 2, 9)"),
            // Refused notifies stored whole (three forgeries), and a verified one.
            format!("{NOTIFY} (60000, 'bad_signature', 'x', NULL, '{}'), (60001, 'bad_signature', 'x', NULL, 'b'), (60002, 'malformed', 'x', NULL, 'c')", "a".repeat(8192)),
            "INSERT INTO notifies (received_at, verdict, detail, out_trade_no, transaction_id, raw) VALUES (60003, 'accepted', '', 'MPOLD', '4200', '<xml/>')".to_owned(),
        ]).await;
        let store = Store::connect(&db.url, 2, &InsertSignal::new()).await.unwrap();
        store.migrate().await.unwrap();
        assert_eq!(store.order("MPOLD").await.unwrap().unwrap().idempotency_key.as_deref(), Some("tap"));
        assert_eq!(store.order("MPNEW").await.unwrap().unwrap().idempotency_key, None, "kept, without the key");
        // Sessions holding a plain session_key are gone; their orders stay, still the user's.
        let sessions: i64 = match &store {
            Store::Sqlite(p) => sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(&p.reader).await.unwrap(),
            Store::Postgres(p) => sqlx::query_scalar("SELECT COUNT(*) FROM sessions").fetch_one(p).await.unwrap(),
        };
        assert_eq!(sessions, 0);
        // Refused notifies became summaries; the verified one stays whole.
        let refused: Vec<(String, i64, i64)> = match &store {
            Store::Sqlite(p) => sqlx::query_as("SELECT verdict, count, LENGTH(body_prefix) FROM refused_notifies ORDER BY verdict").fetch_all(&p.reader).await.unwrap(),
            Store::Postgres(p) => sqlx::query_as("SELECT verdict, count, CAST(LENGTH(body_prefix) AS BIGINT) FROM refused_notifies ORDER BY verdict").fetch_all(p).await.unwrap(),
        };
        assert_eq!(refused, [("bad_signature".to_owned(), 2, 64), ("malformed".to_owned(), 1, 1)]);
        assert_eq!(store.notifies_for("MPOLD").await.unwrap().len(), 1);
        let kept = store.order("MPOLD").await.unwrap().unwrap();
        assert_eq!((kept.session_id, kept.openid.as_str()), (Some(1), "oU"));
        store.close().await;
        db.drop_now().await;
    }
}
