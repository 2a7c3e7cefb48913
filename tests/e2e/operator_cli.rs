//! The operator binary as operators use it: its exit codes, `status --check`, `config` hiding
//! secrets, every setting in `work --help`, `migrate info` and `--dry-run`, and passwords typed
//! at a terminal.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Output;

use qbill_tests::{TestDb, database_env, qbill_binary, queue_with_dead_letters, sqs};
use uuid::Uuid;

use crate::served;

async fn qbill(args: &[&str], envs: &[(&str, String)], stdin: &str) -> Output {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new(qbill_binary())
        .args(args)
        .envs(envs.iter().map(|(k, v)| (*k, v.as_str())))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("qbill runs");
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// Every `"QBILL_…"` (and the two conventional names) written as a whole string literal in the
/// Rust sources under `dir`: the variables the code reads.
fn variables_read(dir: &Path) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    let mut dirs = vec![dir.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let source = std::fs::read_to_string(&path).unwrap();
                for piece in source.split('"').skip(1).step_by(2) {
                    let is_name = piece
                        .bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
                    if is_name
                        && !piece.ends_with('_')
                        && (piece.starts_with("QBILL_")
                            || piece == "DATABASE_URL"
                            || piece == "REDIS_URL")
                    {
                        found.insert(piece.to_owned());
                    }
                }
            }
        }
    }
    found
}

fn workers_dir(crate_dir: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../workers")
        .join(crate_dir)
        .join("src")
}

#[tokio::test]
async fn work_help_names_every_variable_the_engine_and_the_pool_read() {
    let help = text(&qbill(&["work", "--help"], &[], "").await);
    let mut read = variables_read(&workers_dir("core"));
    read.extend(variables_read(&workers_dir("sqs")));
    assert!(read.len() > 40, "the scan found too few: {read:?}");
    let missing: Vec<_> = read
        .iter()
        .filter(|name| !help.contains(&format!("[env: {name}")))
        .collect();
    assert!(
        missing.is_empty(),
        "not in `qbill work --help`: {missing:?}"
    );
    // Each with its default where it has one.
    assert!(
        help.contains("[env: QBILL_CACHE_TTL_SECONDS=") && help.contains("[default: 300]"),
        "{help}"
    );
}

#[tokio::test]
async fn every_variable_the_cli_reads_is_in_some_help() {
    let mut helps = String::new();
    for args in [
        &["work", "--help"][..],
        &["status", "--help"],
        &["client", "--help"],
        &["client", "auth", "--help"],
        &["client", "pay", "--help"],
        &["dlq", "redrive", "--help"],
    ] {
        helps.push_str(&text(&qbill(args, &[], "").await));
    }
    let missing: Vec<_> = variables_read(&workers_dir("cli"))
        .into_iter()
        .filter(|name| !helps.contains(name.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "read by the CLI, named in no help: {missing:?}"
    );
}

#[tokio::test]
async fn config_shows_where_each_value_came_from_and_hides_secrets() {
    let envs = [
        (
            "DATABASE_URL",
            "postgres://qbill_worker:db-password-7731@127.0.0.1:5432/qbill".to_owned(),
        ),
        (
            "QBILL_JWT_SECRET",
            "jwt-secret-8842-0123456789abcdef0123".to_owned(),
        ),
        ("QBILL_STRIPE_SECRET_KEY", "sk_test_secret_9953".to_owned()),
        (
            "QBILL_STRIPE_WEBHOOK_SECRET",
            "whsec_secret_1064".to_owned(),
        ),
        (
            "REDIS_URL",
            "redis://:redis-password-2175@127.0.0.1:6379".to_owned(),
        ),
        ("QBILL_CACHE_TTL_SECONDS", "42".to_owned()),
        // Exported empty: unset, so the default.
        ("QBILL_BATCH_SIZE", String::new()),
    ];
    let out = qbill(&["config", "--poll-wait-seconds", "3"], &envs, "").await;
    assert!(out.status.success(), "{}", text(&out));
    let shown = String::from_utf8(out.stdout).unwrap();
    for (_, secret) in &envs[..5] {
        let tell = secret
            .rsplit(['_', '-', ':', '@'])
            .find(|p| p.len() >= 4)
            .unwrap();
        assert!(!shown.contains(secret.as_str()), "{secret} shown:\n{shown}");
        assert!(!shown.contains(tell), "part of {secret} shown:\n{shown}");
    }
    let line = |name: &str| {
        shown
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} line:\n{shown}"))
            .split_whitespace()
            .skip(1)
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(line("DATABASE_URL"), "(hidden) (environment)");
    assert_eq!(line("QBILL_JWT_SECRET"), "(hidden) (environment)");
    assert_eq!(line("QBILL_JWT_PREVIOUS_SECRET"), "- (unset)");
    assert_eq!(line("QBILL_CACHE_TTL_SECONDS"), "42 (environment)");
    assert_eq!(line("QBILL_POLL_WAIT_SECONDS"), "3 (flag)");
    assert_eq!(line("QBILL_BATCH_SIZE"), "10 (default)");

    let json = qbill(&["config", "--json"], &envs, "").await;
    let settings: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let jwt = settings
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "QBILL_JWT_SECRET")
        .unwrap();
    assert_eq!(jwt["secret"], true);
    assert_eq!(jwt["value"], "(hidden)");
}

#[tokio::test]
async fn exit_codes_tell_usage_failure_and_an_error_reply_apart() {
    let usage = qbill(&["client", "--no-such-flag"], &[], "").await;
    assert_eq!(usage.status.code(), Some(2), "{}", text(&usage));

    let nowhere = "postgres://nobody:x@127.0.0.1:1/none".to_owned();
    let unreachable = [
        ("DATABASE_URL", nowhere.clone()),
        ("QBILL_MIGRATION_DATABASE_URL", nowhere),
    ];
    let failed = qbill(&["migrate", "info"], &unreachable, "").await;
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed));

    let gateway = [
        ("QBILL_GATEWAY_URL", served().gateway.clone()),
        ("QBILL_QUEUE", Uuid::new_v4().to_string()),
    ];
    let refused = qbill(
        &["client", "auth", "--username", "demo"],
        &gateway,
        "not-the-password\n",
    )
    .await;
    let said = text(&refused);
    assert!(said.contains("\"status\": \"error\""), "{said}");
    assert_eq!(refused.status.code(), Some(3), "{said}");

    let accepted = qbill(
        &["client", "auth", "--username", "demo"],
        &gateway,
        "demo-password\n",
    )
    .await;
    assert_eq!(accepted.status.code(), Some(0), "{}", text(&accepted));

    // From the environment, the password needs no input.
    let mut with_env = gateway.to_vec();
    with_env.push(("QBILL_PASSWORD", "demo-password".to_owned()));
    let from_env = qbill(&["client", "auth", "--username", "demo"], &with_env, "").await;
    assert_eq!(from_env.status.code(), Some(0), "{}", text(&from_env));

    let argument = qbill(
        &[
            "client",
            "auth",
            "--username",
            "demo",
            "--password",
            "demo-password",
        ],
        &gateway,
        "",
    )
    .await;
    assert_eq!(
        argument.status.code(),
        Some(2),
        "a password argument is gone"
    );
}

#[tokio::test]
async fn status_check_fails_on_a_dead_letter_and_passes_once_it_is_gone() {
    let sqs = sqs().await;
    // Its name is the request queue's plus -dlq, as `status` finds it.
    let (request, dead) = queue_with_dead_letters(&sqs, "status").await;
    let check = |extra: &'static [&'static str]| {
        let request = request.clone();
        async move {
            let mut args = vec![
                "status",
                "--request-queue",
                &request,
                "--check",
                "--interval",
                "1",
            ];
            args.extend(extra);
            qbill(&args, &[], "").await
        }
    };
    // SQS's counts are approximate and may lag a moment behind a send or a purge.
    let settled = |exit: i32| async move {
        let mut out = check(&[]).await;
        for _ in 0..10 {
            if out.status.code() == Some(exit) {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            out = check(&[]).await;
        }
        out
    };
    let clean = check(&[]).await;
    assert_eq!(clean.status.code(), Some(0), "{}", text(&clean));
    assert!(text(&clean).contains("✓ dead_letters"), "{}", text(&clean));

    sqs.send_message()
        .queue_url(&dead)
        .message_body("{}")
        .send()
        .await
        .unwrap();
    let failed = settled(4).await;
    assert_eq!(failed.status.code(), Some(4), "{}", text(&failed));
    assert!(
        text(&failed).contains("✗ dead_letters: 1 message(s)"),
        "{}",
        text(&failed)
    );

    let json = check(&["--json"]).await;
    assert_eq!(json.status.code(), Some(4));
    let snapshot: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(snapshot["ok"], false);
    assert_eq!(snapshot["queues"]["dead_letters"], 1);

    // A metrics endpoint that does not answer fails the check too.
    sqs.purge_queue().queue_url(&dead).send().await.unwrap();
    let silent = settled(0).await;
    assert_eq!(silent.status.code(), Some(0), "{}", text(&silent));
    assert!(
        text(&silent).contains("✓ dead_letters"),
        "{}",
        text(&silent)
    );
    let unanswered = check(&["--metrics", "http://127.0.0.1:1/metrics"]).await;
    assert_eq!(unanswered.status.code(), Some(4), "{}", text(&unanswered));
    assert!(
        text(&unanswered).contains("✗ metrics"),
        "{}",
        text(&unanswered)
    );

    for url in [request, dead] {
        let _ = sqs.delete_queue().queue_url(url).send().await;
    }
}

#[tokio::test]
async fn migrate_info_and_dry_run_change_nothing() {
    let db = TestDb::fresh().await;
    let envs = database_env(&db.url, &db.admin_url).to_vec();
    let info = qbill(&["migrate", "info"], &envs, "").await;
    assert!(info.status.success(), "{}", text(&info));
    let shown = String::from_utf8_lossy(&info.stdout);
    assert!(shown.contains("V1 "), "{shown}");
    assert!(
        shown.contains(", 0 pending"),
        "a fresh test database is migrated: {shown}"
    );
    let dry = qbill(&["migrate", "--dry-run"], &envs, "").await;
    assert_eq!(dry.status.code(), Some(0), "{}", text(&dry));

    // A database without the newest migration: the dry run names it and exits 4, and applies
    // nothing.
    let newest: i32 = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one("SELECT max(version) FROM refinery_schema_history", &[])
        .await
        .unwrap()
        .get(0);
    db.pool
        .get()
        .await
        .unwrap()
        .execute(
            "DELETE FROM refinery_schema_history WHERE version = $1",
            &[&newest],
        )
        .await
        .unwrap();
    let dry = qbill(&["migrate", "--dry-run"], &envs, "").await;
    assert_eq!(dry.status.code(), Some(4), "{}", text(&dry));
    assert!(
        text(&dry).contains(&format!("V{newest}__")) && text(&dry).contains("would be applied"),
        "{}",
        text(&dry)
    );
    let still: i64 = db
        .pool
        .get()
        .await
        .unwrap()
        .query_one(
            "SELECT count(*) FROM refinery_schema_history WHERE version = $1",
            &[&newest],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(still, 0, "the dry run applied nothing");
}

/// `admin create-user` at a terminal: a prompt that does not echo, asked twice.
#[test]
fn admin_create_user_prompts_at_a_terminal_without_echo() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let db = runtime.block_on(TestDb::fresh());
    let username = format!("pty-{}", &Uuid::new_v4().simple().to_string()[..8]);
    let mut command = std::process::Command::new(qbill_binary());
    command
        .args([
            "admin",
            "create-user",
            "--role",
            "household",
            "--username",
            &username,
        ])
        .envs(database_env(&db.url, &db.admin_url));
    let mut session = rexpect::session::spawn_command(command, Some(60_000)).unwrap();
    session
        .exp_string(&format!("Password for {username}: "))
        .unwrap();
    session.send_line("typed-at-the-terminal").unwrap();
    let between = session.exp_string("Again, to confirm: ").unwrap();
    session.send_line("typed-at-the-terminal").unwrap();
    let rest = session.exp_eof().unwrap();
    assert!(
        !between.contains("typed-at-the-terminal") && !rest.contains("typed-at-the-terminal"),
        "the password was echoed: {between}{rest}"
    );
    assert!(rest.contains("\"outcome\":\"created\""), "{rest}");

    let stored: String = runtime.block_on(async {
        db.pool
            .get()
            .await
            .unwrap()
            .query_one(
                "SELECT password_hash FROM users WHERE username = $1",
                &[&username],
            )
            .await
            .unwrap()
            .get(0)
    });
    let passwords = qbill_core::password::Passwords::new(1, Default::default());
    let right = runtime
        .block_on(passwords.verify("typed-at-the-terminal".to_owned().into(), Some(stored)))
        .unwrap();
    assert!(right, "the typed password is the stored one");
}

/// The Lambda reads its own settings (`FunctionSettings`) besides the pool's: every variable its
/// code reads is one of those or in `qbill work --help`.
#[tokio::test]
async fn every_variable_the_lambda_reads_is_a_setting() {
    use clap::Args as _;
    let own = qbill_lambda::FunctionSettings::augment_args(clap::Command::new("bootstrap"))
        .render_long_help()
        .to_string();
    let work = text(&qbill(&["work", "--help"], &[], "").await);
    let read = variables_read(&workers_dir("lambda"));
    assert!(read.contains("QBILL_FUNCTION"), "{read:?}");
    let missing: Vec<_> = read
        .iter()
        .filter(|name| {
            let named = format!("[env: {name}");
            !own.contains(&named) && !work.contains(&named)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "read by the Lambda, not a setting: {missing:?}"
    );
}
