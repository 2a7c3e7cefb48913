//! With Redis stopped, every route still answers correctly, end to end over HTTP.
//! Its own binary: it runs a pool whose Redis it kills, apart from the other end-to-end tests.

use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::Duration;

use qbill::client::GatewayClient;
use qbill_tests::serve;
use serde_json::json;
use uuid::Uuid;

const REPLY_TIMEOUT: Duration = Duration::from_secs(30);

fn ids(bills: &serde_json::Value) -> Vec<i64> {
    bills
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["bill_id"].as_i64().unwrap())
        .collect()
}

#[tokio::test]
async fn with_redis_stopped_every_route_still_answers_correctly() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut redis = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server is installed");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let served = serve(Some(format!("redis://127.0.0.1:{port}")), 2);

    let mut demo = GatewayClient::new(&served.gateway, Uuid::new_v4());
    assert_eq!(
        demo.auth("demo", "demo-password", REPLY_TIMEOUT)
            .await
            .unwrap()["status"],
        "ok"
    );
    // Warm the cache while Redis is up.
    let warm = demo
        .request(
            "/apartments/2/utils",
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(ids(&warm["data"]["bills"]).len(), 12);

    redis.kill().unwrap();
    redis.wait().unwrap();

    let login = demo
        .auth("demo", "demo-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(login["status"], "ok", "{login}");
    let utils = demo
        .request(
            "/apartments/2/utils",
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(ids(&utils["data"]["bills"]).len(), 12, "{utils}");
    let paid = demo
        .request(
            "/apartments/2/payments",
            Uuid::new_v4(),
            json!({ "bills_id": [2081, 2082] }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(paid["status"], "ok", "{paid}");
    let after = demo
        .request(
            "/apartments/2/utils",
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(ids(&after["data"]["bills"]).len(), 10);
    let history = demo
        .request(
            "/apartments/2/histories",
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    let settled = ids(&history["data"]["settled"]);
    assert!(
        settled.contains(&2081) && settled.contains(&2082),
        "{history}"
    );
    let forbidden = demo
        .request(
            "/apartments/3/utils",
            Uuid::new_v4(),
            json!({}),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(forbidden["error"]["code"], "forbidden");
    let again = demo
        .request(
            "/apartments/2/payments",
            Uuid::new_v4(),
            json!({ "bills_id": [2081] }),
            REPLY_TIMEOUT,
        )
        .await
        .unwrap();
    assert_eq!(again["error"]["code"], "already_paid");
}
