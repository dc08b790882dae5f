//! Shared test plumbing: servers on 127.0.0.1:0 and signed-message builders.

use std::time::Duration;

use axum::Router;
use minipay::wechat::simulator::{SimConfig, Simulator};
use minipay::wechat::{Merchant, SignType};

/// Serves `router` on a fresh loopback port; returns its base URL.
pub async fn serve(router: Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, router).await.unwrap();
    });
    format!("http://{addr}")
}

/// A URL on which nothing listens (connect refused).
pub async fn dead_url() -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{addr}")
}

/// A simulator on loopback, with its base URL.
pub async fn simulator() -> (Simulator, String) {
    let sim = Simulator::new(SimConfig::demo());
    let url = serve(sim.router()).await;
    (sim, url)
}

/// The merchant the demo simulator expects.
pub fn demo_merchant(sign_type: SignType) -> Merchant {
    let demo = SimConfig::demo();
    Merchant {
        appid: demo.appid,
        mch_id: demo.mch_id,
        key: demo.key,
        sign_type,
    }
}

/// A reqwest client with short timeouts, as tests want.
pub fn http() -> reqwest::Client {
    minipay::wechat::client::http_client(Duration::from_millis(500), Duration::from_secs(2))
}
