//! `POST /me/sessions` through the gateway: it takes no request without the `Authorization`
//! header and no body field beyond the envelope's (400, nothing enqueued); a holder's token lists
//! the holder's live sessions; a forged token is answered `unauthorized` with nothing listed.

use qbill_core::routes::me_sessions;
use serde_json::json;
use uuid::Uuid;

use crate::{REPLY_TIMEOUT, client};

#[tokio::test]
async fn the_live_sessions_are_the_token_holders_and_the_gateway_guards_the_route() {
    let mut device = client();
    let signed_in = device
        .auth("demo2", "demo2-password", REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(signed_in["status"], "ok", "{signed_in}");

    let listed = device
        .send::<me_sessions::Request>(&[], &me_sessions::Body {}, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(listed["status"], "ok", "{listed}");
    assert_eq!(listed["kind"], "me_sessions", "{listed}");
    let sessions = listed["data"]["sessions"].as_array().unwrap();
    assert!(
        !sessions.is_empty(),
        "this login is a live session: {listed}"
    );
    for session in sessions {
        for field in ["id", "started_at", "refreshed_at", "expires_at"] {
            assert!(session[field].is_string(), "{field}: {session}");
        }
    }

    // The gateway: a field the route does not take, and no header at all.
    let extra = device
        .post("/me/sessions", Uuid::new_v4(), json!({ "user_id": 1 }))
        .await
        .unwrap();
    assert_eq!(extra.status, 400, "{}", extra.body);
    let mut anonymous = client();
    anonymous.set_token(None);
    let bare = anonymous
        .post("/me/sessions", Uuid::new_v4(), json!({}))
        .await
        .unwrap();
    assert_eq!(bare.status, 400, "{}", bare.body);
    assert!(
        bare.body.to_string().contains("Authorization"),
        "{}",
        bare.body
    );

    // A forged token on the holder's queue: refused, and nothing listed.
    device.set_token(Some("eyJhbGciOiJub25lIn0.e30.".into()));
    let forged = device
        .send::<me_sessions::Request>(&[], &me_sessions::Body {}, Uuid::new_v4(), REPLY_TIMEOUT)
        .await
        .unwrap();
    assert_eq!(forged["status"], "error", "{forged}");
    assert_eq!(forged["error"]["code"], "unauthorized", "{forged}");
    assert!(forged.get("data").is_none(), "{forged}");
}
