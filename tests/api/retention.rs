//! What is kept only for a while is deleted by the workers' sweep once its retention has
//! passed: finished jobs, expired sessions, refused notifies. Orders stay.

use std::time::Duration;

use minipay::store::Store;
use minipay::worker::reconciler::delete_old_records;

use crate::helpers::{TestApp, eventually, on_both_backends};

/// The ids of the jobs finished so far. Jobs that finish later (moving the clock on starts
/// that day's bill reconciliation) are not old and stay, so the test follows these ids.
async fn finished_job_ids(app: &TestApp) -> Vec<String> {
    match app.store() {
        Store::Sqlite(pools) => {
            sqlx::query_scalar("SELECT CAST(id AS TEXT) FROM Jobs WHERE status = 'Done'")
                .fetch_all(&pools.writer)
                .await
                .unwrap()
        }
        Store::Postgres(pool) => {
            sqlx::query_scalar("SELECT id::text FROM apalis.jobs WHERE status = 'Done'")
                .fetch_all(pool)
                .await
                .unwrap()
        }
    }
}

on_both_backends! {
    async fn old_sessions_jobs_and_refused_notifies_are_deleted(backend) {
        let Some(app) = TestApp::spawn(backend).await else { return };
        let token = app.login("wendy#1").await;
        let otn = app.create_order(&token, "sms-100", 1).await["out_trade_no"].as_str().unwrap().to_owned();
        app.wait_for_status(&token, &otn, "ready").await;
        app.pay(&otn, true);
        app.wait_for_status(&token, &otn, "paid").await;
        app.post_notify("forged").await;
        eventually("records to delete", || async {
            finished_job_ids(&app).await.len() >= 2 && app.scalar("SELECT COUNT(*) FROM refused_notifies").await == 1
        })
        .await;
        // Within their retention nothing goes.
        delete_old_records(&app.services).await.unwrap();
        assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions").await, 1);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM refused_notifies").await, 1);
        let old_jobs = finished_job_ids(&app).await;
        assert!(old_jobs.len() >= 2);

        // Eight days on: the session expired a week ago, the notify was refused eight days ago,
        // the jobs finished eight days ago.
        app.services.clock.advance(Duration::from_secs(8 * 24 * 3600));
        delete_old_records(&app.services).await.unwrap();
        assert_eq!(app.scalar("SELECT COUNT(*) FROM sessions").await, 0);
        assert_eq!(app.scalar("SELECT COUNT(*) FROM refused_notifies").await, 0);
        let kept: Vec<String> = finished_job_ids(&app).await.into_iter().filter(|id| old_jobs.contains(id)).collect();
        assert_eq!(kept, Vec::<String>::new(), "jobs finished eight days ago are deleted");
        assert_eq!(app.history(&otn).await["status"], "paid", "orders stay");
        app.stop().await;
    }
}
