//! Operator tasks outside the request path: creating a user from the command line
//! (`qbill admin create-user`) or, on AWS, the first operator from its generated secret (the
//! Lambda's `{"qbill": "create-operator"}`), before anybody could log in to use `POST /users`.

use deadpool_postgres::Pool;
use secrecy::{ExposeSecret, SecretString};
use serde::Serialize;

use crate::password;
use crate::routes::user::{insert, parse_new_password, parse_new_username};
use crate::types::{ProviderId, Role, UserId};

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
        let same = row.get::<_, &str>(1) == role.as_str()
            && row.get::<_, Option<i64>>(2) == provider.map(|p| p.0);
        if !same {
            anyhow::bail!("the user {username} exists with another role or provider");
        }
        return Ok(Created::Existed {
            id: UserId(row.get(0)),
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
