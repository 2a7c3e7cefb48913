//! No password, token or amount reaches the logs, even when an operator asks for debug logs of
//! everything (the crates that would log statement parameters are held at info).

use std::process::Stdio;
use std::time::Duration;

use qbill_core::types::QueueName;
use qbill_tests::database_env;
use qbill_tests::{
    db_pool, drain_replies, message, private_queue, qbill_binary, reply_queue_url, sqs, token_for,
};
use secrecy::ExposeSecret;
use serde_json::json;
use uuid::Uuid;

use crate::served;

#[tokio::test]
async fn logs_carry_no_password_token_or_amount() {
    let sqs = sqs().await;
    let db = db_pool(&served().admin_url);
    let prefix = format!("logs-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let user = qbill_core::seed::users(&db, &prefix, 1, 1)
        .await
        .unwrap()
        .remove(0);
    let (bill, amount): (i64, rust_decimal::Decimal) = {
        let row = db
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT id, amount FROM bills WHERE apartment_id = $1 ORDER BY id LIMIT 1",
                &[&user.apartment_id],
            )
            .await
            .unwrap();
        (row.get(0), row.get(1))
    };
    let queue = private_queue(&sqs, 5).await;
    let reply_to = QueueName::parse(&Uuid::new_v4().to_string()).unwrap();
    let replies = reply_queue_url(&sqs, reply_to).await;
    let token = token_for(user.user_id, &user.username, reply_to);
    let password = format!("{prefix}-password");
    let wrong_password = "Correct-Horse-Battery-Staple-4111111111111111";
    let q = reply_to.to_string();
    let messages = [
        message(
            "auth",
            None,
            None,
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "username": user.username, "password": password }),
        ),
        message(
            "auth",
            None,
            None,
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "username": user.username, "password": wrong_password }),
        ),
        message(
            "payments",
            Some(user.apartment_id),
            Some(&token),
            json!({ "queue_name": q, "request_id": Uuid::new_v4(), "bills_id": [bill] }),
        ),
    ];
    for m in &messages {
        let mut send = sqs.send_message().queue_url(&queue).message_body(&m.body);
        for (name, value) in &m.attributes {
            send = send.message_attributes(
                name,
                aws_sdk_sqs::types::MessageAttributeValue::builder()
                    .data_type("String")
                    .string_value(value)
                    .build()
                    .unwrap(),
            );
        }
        send.send().await.unwrap();
    }

    let log_path = std::env::temp_dir().join(format!("qbill-logs-{}.log", Uuid::new_v4().simple()));
    let log = std::fs::File::create(&log_path).unwrap();
    let mut worker = tokio::process::Command::new(qbill_binary())
        .args(["work", "--workers", "2"])
        .envs(database_env(&served().db_url, &served().admin_url))
        .env("QBILL_REQUEST_QUEUE", &queue)
        .env(
            "QBILL_JWT_SECRET",
            qbill_tests::jwt_secret().expose_secret(),
        )
        .env("QBILL_POLL_WAIT_SECONDS", "1")
        .env(
            "QBILL_LOG",
            "info,qbill=debug,qbill_core=debug,qbill_sqs=debug",
        )
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap();
    let answered = drain_replies(&sqs, &replies, 3, Duration::from_secs(30)).await;
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &worker.id().unwrap().to_string()])
            .status()
            .unwrap()
            .success()
    );
    worker.wait().await.unwrap();
    assert_eq!(answered.len(), 3, "{answered:?}");
    let issued = answered
        .iter()
        .find_map(|r| r["data"]["token"].as_str())
        .expect("the login succeeded")
        .to_owned();

    let logs = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    assert!(logs.contains("handled"), "the worker did log: {logs}");
    let amount = qbill_core::types::amount_string(amount);
    for (what, secret) in [
        ("the password", password.as_str()),
        ("the wrong password", wrong_password),
        ("the card-like number in it", "4111111111111111"),
        ("the bearer token", token.as_str()),
        ("the issued token", issued.as_str()),
        (
            "the JWT signing key",
            qbill_tests::jwt_secret().expose_secret(),
        ),
        ("the amount", amount.as_str()),
        ("an Authorization header", "Bearer "),
    ] {
        assert!(!logs.contains(secret), "{what} appears in the logs");
    }
}
