//! Operator tasks outside the request path: creating a user from the command line
//! (`qbill admin create-user`) or, on AWS, the first operator from its generated secret (the
//! Lambda's `{"qbill": "create-operator"}`), before anybody could log in to use `POST /users`;
//! moving a provider's account between households (`qbill admin move-account`), which no
//! household can do.

use deadpool_postgres::Pool;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;
use uuid::Uuid;

use crate::accounts::credentials::{insert, parse_new_password, parse_new_username};
use crate::common::bump_apartments;
use crate::password;
use crate::types::{ApartmentId, ProviderId, Role, UserId};

/// What [`create_user`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "outcome")]
pub enum Created {
    /// The user was created.
    Created { id: UserId },
    /// A user of that name and role existed already; nothing changed (its password neither).
    Existed { id: UserId },
}

/// Creates a user, unless one of that name and role exists; a user of that name with another
/// role or provider is an error.
pub async fn create_user(
    pool: &Pool,
    username: &str,
    password: SecretString,
    role: Role,
    provider: Option<ProviderId>,
) -> anyhow::Result<Created> {
    let username = parse_new_username(username)?;
    if (role == Role::Provider) != provider.is_some() {
        anyhow::bail!("a provider's user needs --provider-id, and only a provider's user");
    }
    let client = pool.get().await?;
    let existing = client
        .query_opt(
            "SELECT id, role, provider_id FROM users WHERE username = $1",
            &[&username],
        )
        .await?;
    if let Some(row) = existing {
        let same = row.get::<_, &str>("role") == role.as_str()
            && row.get::<_, Option<i64>>("provider_id") == provider.map(|p| p.0);
        if !same {
            anyhow::bail!("the user {username} exists with another role or provider");
        }
        return Ok(Created::Existed {
            id: UserId(row.get("id")),
        });
    }
    let password = parse_new_password(password.expose_secret().to_owned())?;
    let hash =
        tokio::task::spawn_blocking(move || password::hash(password.expose_secret())).await??;
    let id = insert(&client, &username, &hash, role, provider)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(user.id = id.0, user.role = %role, "user created");
    Ok(Created::Created { id })
}

/// What [`move_account`] did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Moved {
    /// `moved` (from one apartment to another), `linked` (from none), `unlinked` (to none), or
    /// `unchanged` (it was where it was asked to be: nothing changed).
    pub outcome: &'static str,
    pub provider_id: ProviderId,
    pub account_number: String,
    pub account_id: i64,
    pub from_apartment: Option<ApartmentId>,
    pub to_apartment: Option<ApartmentId>,
    /// The id the audit trail records the change under; none when nothing changed.
    pub request_id: Option<Uuid>,
}

/// What the audit trail says made an operator's move (`via`).
pub const MOVE_ACCOUNT: &str = "qbill admin move-account";

/// Unlinks a provider's account from its apartment and, with `to`, links it to that apartment.
/// The bills it had stay where they are (the household that had the account keeps its bills and
/// its debts); its bills to come, and those that came while it was nobody's, go to `to`. The code
/// is voided either way (the provider's next ingest naming the account carries a new one), the
/// apartments' versions and their owners' apartment lists are bumped, and the audit trail records
/// the change with `via` [`MOVE_ACCOUNT`] under a request id of its own. Running it again changes
/// nothing. An unknown provider, account or apartment, or an apartment billed in another currency
/// than the provider's, is an error.
pub async fn move_account(
    pool: &Pool,
    provider: ProviderId,
    account_number: &str,
    to: Option<ApartmentId>,
) -> anyhow::Result<Moved> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    let Some(provider_row) = tx
        .query_opt(
            "SELECT currency FROM providers WHERE id = $1",
            &[&provider.0],
        )
        .await?
    else {
        anyhow::bail!("there is no provider {provider}");
    };
    let currency: String = provider_row.get("currency");
    let Some(account) = tx
        .query_opt(
            "SELECT id, apartment_id FROM service_accounts WHERE provider_id = $1 AND account_number = $2
             FOR UPDATE",
            &[&provider.0, &account_number],
        )
        .await?
    else {
        anyhow::bail!("provider {provider} has no account {account_number:?}");
    };
    let account_id: i64 = account.get("id");
    let from = account
        .get::<_, Option<i64>>("apartment_id")
        .map(ApartmentId);
    if let Some(to) = to {
        let Some(row) = tx
            .query_opt("SELECT currency FROM apartments WHERE id = $1", &[&to.0])
            .await?
        else {
            anyhow::bail!("there is no apartment {to}");
        };
        let billed_in: String = row.get("currency");
        if billed_in != currency {
            anyhow::bail!(
                "apartment {to} is billed in {billed_in}, provider {provider} bills in {currency}"
            );
        }
    }
    let mut moved = Moved {
        outcome: match (from, to) {
            (from, to) if from == to => "unchanged",
            (None, Some(_)) => "linked",
            (Some(_), None) => "unlinked",
            _ => "moved",
        },
        provider_id: provider,
        account_number: account_number.to_owned(),
        account_id,
        from_apartment: from,
        to_apartment: to,
        request_id: None,
    };
    if moved.outcome == "unchanged" {
        return Ok(moved);
    }
    let request = Uuid::new_v4();
    tx.execute(
        "SELECT set_config('qbill.request_id', $1, true), set_config('qbill.via', $2, true)",
        &[&request.to_string(), &MOVE_ACCOUNT],
    )
    .await?;
    // A trigger voids the code with the change.
    tx.execute(
        "UPDATE service_accounts SET apartment_id = $2, linked_at = CASE WHEN $2::bigint IS NULL THEN NULL ELSE now() END
         WHERE id = $1",
        &[&account_id, &to.map(|a| a.0)],
    )
    .await?;
    if let Some(to) = to {
        tx.execute(
            "UPDATE bills SET apartment_id = $2
             WHERE id IN (SELECT id FROM bills WHERE account_id = $1 AND apartment_id IS NULL ORDER BY id FOR UPDATE)",
            &[&account_id, &to.0],
        )
        .await?;
    }
    let mut touched: Vec<i64> = from.into_iter().chain(to).map(|a| a.0).collect();
    touched.sort_unstable();
    bump_apartments(&tx, &touched)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    tx.execute(
        "UPDATE users SET apartments_version = cache_version()
         WHERE id IN (SELECT user_id FROM apartment_owners WHERE apartment_id = ANY($1))",
        &[&touched],
    )
    .await?;
    tx.commit().await?;
    moved.request_id = Some(request);
    tracing::info!(
        account.id = account_id,
        billing.request_id = %request,
        outcome = moved.outcome,
        "account moved by an operator"
    );
    Ok(moved)
}
