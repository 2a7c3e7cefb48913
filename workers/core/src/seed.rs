//! Seed data: the documented demo set, and a generator of many users for load tests.

use chrono::{Datelike, NaiveDate, TimeZone, Utc};
use deadpool_postgres::Pool;
use rust_decimal::Decimal;
use uuid::Uuid;

use crate::password;

pub const UTILITIES: [(&str, &str); 4] = [
    ("gas", "Gas"),
    ("electricity", "Electricity"),
    ("water", "Water"),
    ("heating", "Heating"),
];
/// Providers by id; gas and electricity come from the first, water and heating from the second.
pub const PROVIDERS: [(i64, &str); 2] = [(1, "Northwind Energy"), (2, "Clearwater Utilities")];

/// A user of the demo set and the apartments it owns.
pub struct DemoUser {
    pub id: i64,
    pub username: &'static str,
    pub password: &'static str,
    /// (apartment id, address)
    pub apartments: &'static [(i64, &'static str)],
}

pub const DEMO_USERS: [DemoUser; 2] = [
    DemoUser {
        id: 1,
        username: "demo",
        password: "demo-password",
        apartments: &[
            (1, "12 Harbour Street, Flat 3"),
            (2, "7 Linden Avenue, Flat 11"),
        ],
    },
    DemoUser {
        id: 2,
        username: "demo2",
        password: "demo2-password",
        apartments: &[(3, "45 Birch Road, Flat 2")],
    },
];
/// Months of 2026 billed in the demo set: May to July are settled, August to October unpaid.
pub const DEMO_SETTLED_MONTHS: [u32; 3] = [5, 6, 7];
pub const DEMO_UNPAID_MONTHS: [u32; 3] = [8, 9, 10];
const DEMO_YEAR: i32 = 2026;

/// The demo bill id: apartment, month and utility, readable at a glance (1081: apartment 1,
/// August, gas).
pub fn demo_bill_id(apartment: i64, month: u32, utility_index: usize) -> i64 {
    apartment * 1000 + i64::from(month) * 10 + utility_index as i64 + 1
}

fn demo_amount(apartment: i64, month: u32, utility_index: usize) -> Decimal {
    let base = [4217, 5890, 2345, 7730][utility_index];
    Decimal::new(base + apartment * 111 + i64::from(month) * 37, 2)
}

fn demo_payment_id(apartment: i64, month: u32) -> Uuid {
    Uuid::from_u128(
        0x5eed_0000_0000_4000_8000_0000_0000_0000 | (apartment as u128) << 16 | month as u128,
    )
}

fn month_bounds(month: u32) -> (NaiveDate, NaiveDate, NaiveDate) {
    let start = NaiveDate::from_ymd_opt(DEMO_YEAR, month, 1).expect("valid month");
    let next = NaiveDate::from_ymd_opt(DEMO_YEAR + (month / 12) as i32, month % 12 + 1, 1)
        .expect("valid month");
    let end = next.pred_opt().expect("a day before the first");
    let due = NaiveDate::from_ymd_opt(next.year(), next.month(), 20).expect("valid day");
    (start, end, due)
}

/// Inserts what is missing of the demo set; existing rows, paid bills included, are left alone.
/// With `reset`, the demo apartments are first put back as seeded: payments made since are undone,
/// and Northwind's demo account is nobody's again, with its printed code ([`reset_demo_account`]).
pub async fn demo(pool: &Pool, reset: bool) -> anyhow::Result<()> {
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    reference_data(&tx).await?;
    let apartments: Vec<i64> = DEMO_USERS
        .iter()
        .flat_map(|u| u.apartments.iter().map(|a| a.0))
        .collect();
    let seeded_payments: Vec<Uuid> = apartments
        .iter()
        .flat_map(|&a| {
            DEMO_SETTLED_MONTHS
                .iter()
                .map(move |&m| demo_payment_id(a, m))
        })
        .collect();
    if reset {
        let users: Vec<i64> = DEMO_USERS.iter().map(|u| u.id).collect();
        let made: Vec<Uuid> = tx
            .query(
                "SELECT id FROM payments WHERE apartment_id = ANY($1) AND NOT id = ANY($2)",
                &[&apartments, &seeded_payments],
            )
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        forget_payments(&tx, &made).await?;
        tx.execute(
            "DELETE FROM processed_requests WHERE user_id = ANY($1)",
            &[&users],
        )
        .await?;
        tx.execute(
            "UPDATE apartments SET version = cache_version() WHERE id = ANY($1)",
            &[&apartments],
        )
        .await?;
        reset_demo_account(&tx).await?;
    }
    for DemoUser {
        id: user_id,
        username,
        password: pass,
        apartments: owned,
    } in DEMO_USERS
    {
        demo_user(&tx, user_id, username, pass, "household", None).await?;
        for &(apartment, address) in owned {
            tx.execute(
                "INSERT INTO apartments (id, address, currency) VALUES ($1, $2, 'EUR') ON CONFLICT DO NOTHING",
                &[&apartment, &address],
            )
            .await?;
            tx.execute(
                "INSERT INTO apartment_owners (apartment_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                &[&apartment, &user_id],
            )
            .await?;
            demo_bills(&tx, apartment).await?;
        }
    }
    demo_lifecycle(&tx).await?;
    tx.commit().await?;
    Ok(())
}

/// Inserts a user of the demo set unless it exists (hashing its password only then: a hash is
/// deliberately slow).
async fn demo_user(
    tx: &tokio_postgres::Transaction<'_>,
    id: i64,
    username: &str,
    pass: &str,
    role: &str,
    provider: Option<i64>,
) -> anyhow::Result<()> {
    let exists = tx
        .query_opt("SELECT 1 FROM users WHERE id = $1", &[&id])
        .await?
        .is_some();
    if !exists {
        tx.execute(
            "INSERT INTO users (id, username, password_hash, role, provider_id) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT DO NOTHING",
            &[&id, &username, &password::hash(pass)?, &role, &provider],
        )
        .await?;
    }
    Ok(())
}

/// The operator of the demo set.
pub const DEMO_OPERATOR: (i64, &str, &str) = (3, "ops", "ops-password");
/// The API user of the first demo provider (Northwind Energy).
pub const DEMO_PROVIDER_USER: (i64, &str, &str) = (4, "northwind", "northwind-password");
/// Northwind's account that no household has linked yet, and the code printed on its bills.
pub const DEMO_ACCOUNT: (i64, &str, &str) = (1, "NW-20417", "3 Quay Lane, Flat 5");
pub const DEMO_ACTIVATION_CODE: &str = "NWND-DEMO-2026";
/// The account's overdue bill and the late fee charged on it.
pub const DEMO_OVERDUE_BILL: i64 = 9001;
pub const DEMO_LATE_FEE: i64 = 9002;

/// Puts Northwind's demo account back as seeded, so that the walkthroughs run again: its bills
/// unpaid (the payments made on them undone) and in no apartment, 9001 overdue and 9002 open, and
/// the account linked to none, with [`DEMO_ACTIVATION_CODE`] (which a link voided).
/// Takes the demo's payments made since it was seeded out of the books, with their refunds, and
/// makes their bills open again; a payment a closed day settled stays, bills and all (a closed
/// day never changes, even for the demo).
async fn forget_payments(
    tx: &tokio_postgres::Transaction<'_>,
    payments: &[Uuid],
) -> anyhow::Result<()> {
    let unsettled: Vec<Uuid> = tx
        .query(
            "SELECT id FROM unnest($1::uuid[]) AS p(id)
             WHERE NOT EXISTS (SELECT 1 FROM settlement_lines l WHERE l.payment_id = p.id)",
            &[&payments],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.execute(
        "DELETE FROM refund_parts WHERE refund_id IN (SELECT id FROM refunds WHERE payment_id = ANY($1))",
        &[&unsettled],
    )
    .await?;
    tx.execute(
        "DELETE FROM refunds WHERE payment_id = ANY($1)",
        &[&unsettled],
    )
    .await?;
    tx.execute(
        "UPDATE bills SET status = 'open', payment_id = NULL, reserved_by = NULL
         WHERE payment_id = ANY($1) OR reserved_by = ANY($1)",
        &[&unsettled],
    )
    .await?;
    tx.execute("DELETE FROM payments WHERE id = ANY($1)", &[&unsettled])
        .await?;
    Ok(())
}

async fn reset_demo_account(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
    let account = DEMO_ACCOUNT.0;
    let payments: Vec<Uuid> = tx
        .query(
            "SELECT DISTINCT payment_id FROM bills WHERE account_id = $1 AND payment_id IS NOT NULL",
            &[&account],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    forget_payments(tx, &payments).await?;
    tx.execute(
        "UPDATE bills SET status = CASE WHEN id = $1 THEN 'overdue' ELSE 'open' END,
                          voided_at = NULL, void_reason = NULL
         WHERE id IN ($1, $2)",
        &[&DEMO_OVERDUE_BILL, &DEMO_LATE_FEE],
    )
    .await?;
    let left: Vec<i64> = tx
        .query(
            "SELECT DISTINCT apartment_id FROM bills WHERE account_id = $1 AND apartment_id IS NOT NULL
             UNION SELECT apartment_id FROM service_accounts WHERE id = $1 AND apartment_id IS NOT NULL",
            &[&account],
        )
        .await?
        .iter()
        .map(|r| r.get(0))
        .collect();
    tx.execute(
        "UPDATE bills SET apartment_id = NULL WHERE account_id = $1 AND apartment_id IS NOT NULL",
        &[&account],
    )
    .await?;
    // Unlinking voids the code (a trigger does); the printed one is then put back.
    tx.execute(
        "UPDATE service_accounts SET apartment_id = NULL, linked_at = NULL WHERE id = $1",
        &[&account],
    )
    .await?;
    tx.execute(
        "UPDATE service_accounts SET activation_code_hash = $2, activation_code_nonce = NULL
         WHERE id = $1 AND activation_code_hash IS DISTINCT FROM $2",
        &[
            &account,
            &crate::activation::code_hash(DEMO_ACTIVATION_CODE),
        ],
    )
    .await?;
    tx.execute(
        "UPDATE apartments SET version = cache_version() WHERE id = ANY($1)",
        &[&left],
    )
    .await?;
    tx.execute(
        "UPDATE users SET apartments_version = cache_version()
         WHERE id IN (SELECT user_id FROM apartment_owners WHERE apartment_id = ANY($1))",
        &[&left],
    )
    .await?;
    Ok(())
}

/// What the bill lifecycle adds to the demo set: an operator, a provider's user, Northwind's
/// policy (10 days of grace, a late fee of 5 % capped at 15.00) and an account no household has
/// linked, with one overdue bill (September's electricity, 80.00) and its fee (4.00).
async fn demo_lifecycle(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
    for (id, username, pass, role, provider) in [
        (
            DEMO_OPERATOR.0,
            DEMO_OPERATOR.1,
            DEMO_OPERATOR.2,
            "operator",
            None,
        ),
        (
            DEMO_PROVIDER_USER.0,
            DEMO_PROVIDER_USER.1,
            DEMO_PROVIDER_USER.2,
            "provider",
            Some(PROVIDERS[0].0),
        ),
    ] {
        demo_user(tx, id, username, pass, role, provider).await?;
    }
    tx.execute(
        "UPDATE providers SET grace_days = 10, late_fee_kind = 'percent', late_fee_value = 5.00, late_fee_cap = 15.00
         WHERE id = $1",
        &[&PROVIDERS[0].0],
    )
    .await?;
    let (account, number, address) = DEMO_ACCOUNT;
    tx.execute(
        "INSERT INTO service_accounts (id, provider_id, account_number, address, activation_code_hash)
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
        &[
            &account,
            &PROVIDERS[0].0,
            &number,
            &address,
            &crate::activation::code_hash(DEMO_ACTIVATION_CODE),
        ],
    )
    .await?;
    let (start, end, due) = month_bounds(9);
    let inserted = tx
        .execute(
            "INSERT INTO bills (id, account_id, provider_id, utility, period_start, period_end, due_date, amount,
                                currency, external_id, lines, issued_at)
             VALUES ($1, $2, $3, 'electricity', $4, $5, $6, 80.00, 'EUR', 'NW-INV-9001',
                     '[{\"description\": \"Electricity, September\", \"quantity\": \"320\", \"unit_price\": \"0.25\", \"amount\": \"80.00\"}]', least(now(), ($5::date + 1)::timestamp AT TIME ZONE 'UTC'))
             ON CONFLICT DO NOTHING",
            &[&DEMO_OVERDUE_BILL, &account, &PROVIDERS[0].0, &start, &end, &due],
        )
        .await?;
    if inserted == 1 {
        // As the overdue job would: overdue, then the fee (5 % of 80.00).
        tx.execute(
            "UPDATE bills SET status = 'overdue' WHERE id = $1",
            &[&DEMO_OVERDUE_BILL],
        )
        .await?;
        tx.execute(
            "INSERT INTO bills (id, account_id, provider_id, utility, period_start, period_end, due_date, amount,
                                currency, late_fee_of, lines, issued_at)
             VALUES ($1, $2, $3, 'electricity', $4, $5, $6::date + 35, 4.00, 'EUR', $7,
                     '[{\"description\": \"Late fee on bill 9001\", \"quantity\": \"1\", \"unit_price\": \"4.00\", \"amount\": \"4.00\"}]', least(now(), ($6::date + 21)::timestamp AT TIME ZONE 'UTC'))
             ON CONFLICT DO NOTHING",
            &[&DEMO_LATE_FEE, &account, &PROVIDERS[0].0, &start, &end, &due, &DEMO_OVERDUE_BILL],
        )
        .await?;
    }
    Ok(())
}

async fn reference_data(tx: &tokio_postgres::Transaction<'_>) -> anyhow::Result<()> {
    for (code, name) in UTILITIES {
        tx.execute(
            "INSERT INTO utility_types (code, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&code, &name],
        )
        .await?;
    }
    for (id, name) in PROVIDERS {
        tx.execute(
            "INSERT INTO providers (id, name) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            &[&id, &name],
        )
        .await?;
    }
    Ok(())
}

async fn demo_bills(tx: &tokio_postgres::Transaction<'_>, apartment: i64) -> anyhow::Result<()> {
    let owner = DEMO_USERS
        .iter()
        .find(|u| u.apartments.iter().any(|a| a.0 == apartment))
        .map_or(1, |u| u.id);
    for month in DEMO_SETTLED_MONTHS.into_iter().chain(DEMO_UNPAID_MONTHS) {
        let (start, end, due) = month_bounds(month);
        let settled = DEMO_SETTLED_MONTHS.contains(&month);
        let payment = demo_payment_id(apartment, month);
        if settled {
            let total: Decimal = (0..UTILITIES.len())
                .map(|u| demo_amount(apartment, month, u))
                .sum();
            let paid_at = Utc.from_utc_datetime(
                &due.pred_opt()
                    .expect("a day before")
                    .and_hms_opt(9, 30, 0)
                    .expect("valid"),
            );
            tx.execute(
                "INSERT INTO payments (id, apartment_id, user_id, request_id, total, currency, paid_at)
                 VALUES ($1, $2, $3, $1, $4, 'EUR', $5) ON CONFLICT DO NOTHING",
                &[&payment, &apartment, &owner, &total, &paid_at],
            )
            .await?;
        }
        for (index, (utility, _)) in UTILITIES.iter().enumerate() {
            let provider = if index < 2 {
                PROVIDERS[0].0
            } else {
                PROVIDERS[1].0
            };
            let (status, payment_id) = if settled {
                ("paid", Some(payment))
            } else {
                ("open", None)
            };
            tx.execute(
                "INSERT INTO bills (id, apartment_id, provider_id, utility, period_start, period_end, due_date,
                                    amount, currency, status, payment_id, issued_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'EUR', $9, $10,
                         least(now(), ($6::date + 1)::timestamp AT TIME ZONE 'UTC'))
                 ON CONFLICT DO NOTHING",
                &[
                    &demo_bill_id(apartment, month, index),
                    &apartment,
                    &provider,
                    utility,
                    &start,
                    &end,
                    &due,
                    &demo_amount(apartment, month, index),
                    &status,
                    &payment_id,
                ],
            )
            .await?;
        }
        if settled {
            // The payment names its bills, as every payment since card payments does.
            tx.execute(
                "UPDATE payments SET bills = ARRAY(SELECT id FROM bills WHERE payment_id = $1 ORDER BY id)
                 WHERE id = $1 AND bills = '{}'",
                &[&payment],
            )
            .await?;
        }
    }
    Ok(())
}

/// A generated user, for load tests.
#[derive(Debug, Clone)]
pub struct GeneratedUser {
    pub user_id: i64,
    pub username: String,
    pub apartment_id: i64,
}

/// Creates users `{prefix}-000001`..`{prefix}-{count}`, all with password `{prefix}-password`,
/// each owning one apartment with `4 * periods` unpaid bills. Users that exist are kept as they
/// are. Returns every user of the prefix up to `count`.
pub async fn users(
    pool: &Pool,
    prefix: &str,
    count: u32,
    periods: u32,
) -> anyhow::Result<Vec<GeneratedUser>> {
    if prefix.is_empty()
        || prefix.len() > 40
        || !prefix
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        anyhow::bail!("the prefix must be 1 to 40 lower-case letters, digits or '-'");
    }
    // One hash for all: a generated user's password is public anyway, and hashing thousands of
    // them would take minutes.
    let hash = password::hash(&format!("{prefix}-password"))?;
    let mut client = pool.get().await?;
    let tx = client.transaction().await?;
    reference_data(&tx).await?;
    tx.execute(
        "INSERT INTO users (username, password_hash)
         SELECT $1 || '-' || lpad(i::text, 6, '0'), $2 FROM generate_series(1, $3::int) AS i
         ON CONFLICT (username) DO NOTHING",
        &[&prefix, &hash, &(count as i32)],
    )
    .await?;
    tx.execute(
        "WITH homeless AS (
             SELECT u.id, u.username FROM users u
             WHERE u.username LIKE $1 || '-%'
               AND NOT EXISTS (SELECT 1 FROM apartment_owners o WHERE o.user_id = u.id)),
         flats AS (
             INSERT INTO apartments (address) SELECT 'Load-test flat of ' || username FROM homeless
             RETURNING id, address),
         owners AS (
             INSERT INTO apartment_owners (apartment_id, user_id)
             SELECT f.id, h.id FROM flats f JOIN homeless h ON f.address = 'Load-test flat of ' || h.username
             RETURNING apartment_id)
         INSERT INTO bills (apartment_id, provider_id, utility, period_start, period_end, due_date, amount, currency)
         SELECT o.apartment_id, CASE WHEN u.code IN ('gas', 'electricity') THEN 1 ELSE 2 END, u.code,
                p.start, (p.start + interval '1 month' - interval '1 day')::date,
                (p.start + interval '1 month' + interval '19 days')::date,
                round((15 + (o.apartment_id % 60) + length(u.code) * 3.17 + extract(month FROM p.start))::numeric, 2),
                'EUR'
         FROM owners o
         CROSS JOIN (SELECT code FROM utility_types WHERE code IN ('gas', 'electricity', 'water', 'heating')) u
         CROSS JOIN (SELECT (date '2026-11-01' - make_interval(months => k))::date AS start
                     FROM generate_series(1, $2::int) AS k) p",
        &[&prefix, &(periods as i32)],
    )
    .await?;
    let rows = tx
        .query(
            "SELECT u.id, u.username, o.apartment_id FROM users u JOIN apartment_owners o ON o.user_id = u.id
             WHERE u.username LIKE $1 || '-%' ORDER BY u.username LIMIT $2",
            &[&prefix, &i64::from(count)],
        )
        .await?;
    tx.commit().await?;
    Ok(rows
        .iter()
        .map(|r| GeneratedUser {
            user_id: r.get("id"),
            username: r.get("username"),
            apartment_id: r.get("apartment_id"),
        })
        .collect())
}
