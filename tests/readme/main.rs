//! The walkthroughs of docs/walkthroughs.md (a provider's bills; a household on its own; documents; money; webhooks), run verbatim: their shell blocks (between the
//! `<!-- walkthrough:... -->` markers) go to bash, against the `test` profile's gateway and a
//! worker pool of this binary's own over a fresh demo database, with `target/release/qbill`
//! standing for this build's `qbill`. A binary of its own, so that its overdue job touches no
//! other test's data.

use std::path::Path;
use std::process::Command;

use qbill_tests::database_env;
use qbill_tests::{count, db_pool, env, qbill_binary, serve};
use secrecy::ExposeSecret;

/// The shell of the docs/walkthroughs.md block between `<!-- walkthrough:{name} -->` and its end marker.
fn block(name: &str) -> String {
    let page = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/walkthroughs.md"),
    )
    .expect("docs/walkthroughs.md");
    let start = format!("<!-- walkthrough:{name} -->");
    let end = format!("<!-- /walkthrough:{name} -->");
    let (_, rest) = page.split_once(&start).expect("the block's start marker");
    let (block, _) = rest.split_once(&end).expect("the block's end marker");
    let block = block.trim();
    block
        .strip_prefix("```sh")
        .and_then(|b| b.strip_suffix("```"))
        .expect("a sh code block")
        .to_owned()
}

/// Runs `script` with bash in a directory where `target/release/qbill` is this build's binary.
fn run(script: &str, database_url: &str) -> String {
    let dir = std::env::temp_dir().join(format!("qbill-readme-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(dir.join("target/release")).unwrap();
    std::os::unix::fs::symlink(qbill_binary(), dir.join("target/release/qbill")).unwrap();
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(&dir)
        .env("QBILL_GATEWAY_URL", env("QBILL_GATEWAY_URL"))
        .env("DATABASE_URL", database_url)
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the block failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        output.status
    );
    let _ = std::fs::remove_dir_all(&dir);
    stdout
}

#[tokio::test]
async fn the_readme_walkthrough_runs_verbatim() {
    let served = serve(Some(env("REDIS_URL")), 2);
    let url = served.db_url.expose_secret().to_owned();
    let db = db_pool(&served.admin_url);

    let out = run(&block("cli"), &url);
    assert!(out.contains("\"kind\": \"bill_void\""), "{out}");
    assert!(
        out.contains("\"code\": \"not_found\"") && out.contains("exit 3"),
        "the code worked once: {out}"
    );
    let one = |sql: &'static str| {
        let db = db.clone();
        async move { count(&db, sql, &[]).await }
    };
    assert_eq!(
        one("SELECT count(*) FROM bills WHERE id = 9001 AND status = 'paid'").await,
        1
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM bills b JOIN payments p ON p.id = b.payment_id
             WHERE b.id = 9002 AND p.processor = 'external' AND p.external_method = 'cash'
             AND p.recorded_by = 4 AND p.user_id = 2"
        )
        .await,
        1,
        "the fee stayed for the card payment, and Northwind recorded demo2's cash for it"
    );
    assert!(out.contains("\"kind\": \"payments_external\""), "{out}");
    assert_eq!(
        one("SELECT count(*) FROM bills WHERE external_id = 'NW-INV-9101' AND status = 'void'")
            .await,
        1
    );
    assert_eq!(
        one("SELECT count(*) FROM service_accounts s JOIN apartment_owners o ON o.apartment_id = s.apartment_id
             WHERE s.account_number = 'NW-20417' AND o.user_id = 2")
        .await,
        1,
        "linked to an apartment of demo2"
    );
    assert!(
        one("SELECT count(*) FROM bills fee JOIN bills b ON b.id = fee.late_fee_of WHERE b.apartment_id = 3").await > 0,
        "the job charged fees on demo2's overdue Northwind bills"
    );

    let out = run(&block("curl"), &url);
    for kind in ["utils", "bill", "payments", "bill_void", "notifications"] {
        assert!(
            out.contains(&format!("\"kind\":\"{kind}\",\"status\":\"ok\"")),
            "{kind}: {out}"
        );
    }
    assert!(
        out.contains("'activation_code': '"),
        "a rotated code: {out}"
    );
    assert!(
        out.contains("\"change\":\"link_attempt\""),
        "demo2 heard of demo's attempt: {out}"
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM bills b JOIN service_accounts s ON s.id = b.account_id
             JOIN apartment_owners o ON o.apartment_id = b.apartment_id AND o.user_id = 2
             WHERE s.account_number <> 'NW-20417' AND b.utility = 'gas' AND b.status = 'paid'"
        )
        .await,
        1,
        "the new account's first bill, paid with curl"
    );
    assert_eq!(
        one("SELECT count(*) FROM bills b JOIN service_accounts s ON s.id = b.account_id
             WHERE s.account_number <> 'NW-20417' AND s.provider_id = 1 AND b.utility = 'electricity'
             AND b.status = 'void'")
        .await,
        1
    );
    assert_eq!(
        one(
            "SELECT count(*) FROM bills b JOIN service_accounts s ON s.id = b.account_id
             JOIN payments p ON p.id = b.payment_id
             WHERE b.id = 9002 AND s.account_number = 'NW-20417' AND b.apartment_id = s.apartment_id
             AND p.processor = 'external'"
        )
        .await,
        1,
        "NW-20417 stayed with the apartment the CLI linked it to, its fee paid in cash only"
    );

    // A card whose bank asks for confirmation: settled by the processor's webhook, through the
    // gateway.
    let out = run(&block("card"), &url);
    assert!(out.contains("\"status\":\"requires_action\""), "{out}");
    assert!(out.contains("\"kind\":\"payment\""), "{out}");
    let last = out.lines().last().unwrap_or_default();
    assert!(last.contains("\"status\":\"succeeded\""), "settled: {out}");
    assert!(
        last.contains("\"via\":\"webhook\""),
        "by the webhook: {out}"
    );

    // A household on its own: signup to deletion, reading mail from LocalStack's SES.
    let out = run(&block("households"), &url);
    for kind in [
        "signup",
        "verify_email",
        "notifications",
        "payments",
        "password_reset",
        "password_reset_confirm",
        "me_delete",
    ] {
        assert!(
            out.contains(&format!("\"kind\":\"{kind}\",\"status\":\"ok\"")),
            "{kind}: {out}"
        );
    }
    assert!(
        out.contains("\"event\":\"bill.created\""),
        "the inbox: {out}"
    );
    assert!(out.contains("Receipt: you paid €1,234.50"), "{out}");
    assert!(
        out.contains("Your receipt as a PDF"),
        "the receipt mail links its document: {out}"
    );
    assert!(
        out.contains("\"kind\":\"me\",\"status\":\"error\""),
        "the session ended with the reset: {out}"
    );
    assert!(out.contains("Your qbill account was deleted"), "{out}");
    assert_eq!(
        one("SELECT count(*) FROM users WHERE deleted_at IS NOT NULL AND username IS NULL AND email IS NULL").await,
        1,
        "the account is erased"
    );
    assert_eq!(
        one("SELECT count(*) FROM payments p JOIN users u ON u.id = p.user_id WHERE u.deleted_at IS NOT NULL").await,
        1,
        "its payment stays in the books"
    );

    // Documents: a receipt PDF and a statement CSV, downloaded with curl from their links.
    let out = run(&block("documents"), &url);
    assert!(out.contains("receipt.pdf: OK"), "{out}");
    assert!(out.contains("statement.csv: OK"), "{out}");
    assert!(
        out.contains("date,provider,entry,reference,description,amount,balance,currency"),
        "{out}"
    );
    assert!(out.contains("%PDF-"), "the bill saved by the CLI: {out}");
    assert_eq!(
        one("SELECT count(*) FROM documents WHERE apartment_id = 1").await,
        3,
        "the receipt, the statement and the bill"
    );

    // Money: a refund in two parts (the bill due again), the days closed, Northwind's settlements
    // read and saved as a spreadsheet.
    let out = run(&block("money"), &url);
    assert!(out.contains("refunded in full already"), "{out}");
    assert!(out.contains("settlement.xlsx: OK"), "{out}");
    assert!(out.contains("\"days\":"), "the settle job's report: {out}");
    assert_eq!(
        one("SELECT count(*) FROM refunds WHERE status = 'succeeded'").await,
        2
    );
    assert!(one("SELECT count(*) FROM settlements WHERE provider_id = 1").await > 0);
    assert_eq!(
        one("SELECT count(*) FROM documents WHERE provider_id = 1 AND format = 'xlsx'").await,
        1
    );

    // Webhooks: a receiver of the walkthrough's own gets a paid bill's events, signed; the feed
    // has the payment.
    let out = run(&block("webhooks"), &url);
    assert!(
        out.contains("bill.paid verified\npayment.succeeded verified"),
        "{out}"
    );
    assert!(!out.contains("FORGED"), "{out}");
    assert!(
        out.contains("\"delivered\":2"),
        "the events job's report: {out}"
    );
    assert_eq!(
        one("SELECT count(*) FROM webhook_deliveries WHERE status = 'delivered'").await,
        2
    );

    // `qbill seed demo --reset` puts NW-20417 back unlinked, with its printed code, its bills
    // unpaid and in no apartment: the walkthrough runs again.
    let reset = Command::new(qbill_binary())
        .args(["seed", "demo", "--reset"])
        .envs(database_env(&served.db_url, &served.admin_url))
        .output()
        .expect("qbill runs");
    assert!(reset.status.success(), "{reset:?}");
    assert_eq!(
        one(
            "SELECT count(*) FROM service_accounts WHERE id = 1 AND apartment_id IS NULL
             AND activation_code_hash = sha256('NWNDDEMO2026') AND activation_code_nonce IS NULL"
        )
        .await,
        1
    );
    assert_eq!(
        one("SELECT count(*) FROM bills WHERE account_id = 1 AND apartment_id IS NULL AND payment_id IS NULL
             AND ((id = 9001 AND status = 'overdue') OR (id = 9002 AND status = 'open') OR id NOT IN (9001, 9002))")
        .await,
        one("SELECT count(*) FROM bills WHERE account_id = 1").await,
    );
    let out = run(&block("cli"), &url);
    assert!(out.contains("\"kind\": \"bill_void\""), "{out}");
    assert_eq!(
        one("SELECT count(*) FROM bills WHERE id = 9001 AND status = 'paid'").await,
        1,
        "paid again, after the reset"
    );
}

/// `qbill admin create-user`, as docs/contract.md documents it: the password on standard input.
#[tokio::test]
async fn admin_create_user_reads_the_password_from_standard_input_and_runs_once() {
    use std::io::Write;
    let db = qbill_tests::TestDb::fresh().await;
    let create = || {
        let mut child = Command::new(qbill_binary())
            .args([
                "admin",
                "create-user",
                "--role",
                "provider",
                "--provider-id",
                "2",
            ])
            .args(["--username", "clearwater-api"])
            .envs(database_env(&db.url, &db.admin_url))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("qbill runs");
        writeln!(child.stdin.take().unwrap(), "clearwater-password").unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(output.status.success(), "{output:?}");
        String::from_utf8(output.stdout).unwrap()
    };
    assert!(create().contains("\"outcome\":\"created\""));
    assert!(create().contains("\"outcome\":\"existed\""));
    let hash: String = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT password_hash FROM users WHERE username = 'clearwater-api' AND role = 'provider' AND provider_id = 2",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    assert!(hash.starts_with("$argon2id$"));
}
