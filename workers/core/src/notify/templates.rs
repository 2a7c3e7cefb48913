//! The one template set of every notification, kept in files under `workers/core/templates/`:
//! `<event>.txt` (its first line is the subject, then a blank line, then the plain-text body) and
//! `<event>.html` (the HTML body, extending `_layout.html`). Both the mail and the inbox are
//! rendered from them. The files are compiled into the binary, so a Lambda needs no files.
//!
//! Templates see the event's data, `name` (whom to greet) and `web_url`, and two filters:
//! `money(currency)` formats an amount for people (`"1234.5"|money("EUR")` is `€1,234.50`) and
//! `day` a date (`"2026-12-01"|day` is `1 December 2026`). HTML templates escape what they print.

use std::sync::LazyLock;

use minijinja::{Environment, Error, ErrorKind, context};
use serde_json::Value;

use super::Event;
use crate::format;

macro_rules! files {
    ($($name:literal),* $(,)?) => {
        &[$(($name, include_str!(concat!("../../templates/", $name))),)*]
    };
}

const FILES: &[(&str, &str)] = files![
    "_layout.html",
    "bill.created.txt",
    "bill.created.html",
    "bill.due_soon.txt",
    "bill.due_soon.html",
    "bill.overdue.txt",
    "bill.overdue.html",
    "late_fee.created.txt",
    "late_fee.created.html",
    "payment.succeeded.txt",
    "payment.succeeded.html",
    "refund.succeeded.txt",
    "refund.succeeded.html",
    "account.security.txt",
    "account.security.html",
    "account.verify_email.txt",
    "account.verify_email.html",
    "account.password_reset.txt",
    "account.password_reset.html",
    "webhook.disabled.txt",
    "webhook.disabled.html",
];

static TEMPLATES: LazyLock<Environment<'static>> = LazyLock::new(|| {
    let mut env = Environment::new();
    // `.html` files escape HTML; `.txt` files print as they are.
    env.set_auto_escape_callback(|name| {
        if name.ends_with(".html") {
            minijinja::AutoEscape::Html
        } else {
            minijinja::AutoEscape::None
        }
    });
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.set_trim_blocks(true);
    env.set_lstrip_blocks(true);
    env.add_filter("money", money);
    env.add_filter("day", day);
    for (name, source) in FILES {
        env.add_template(name, source)
            .unwrap_or_else(|e| panic!("template {name}: {e}"));
    }
    env
});

/// A notification, rendered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub subject: String,
    pub text: String,
    pub html: String,
}

/// Renders `event` with its `data`, greeting `name`, with links to `web_url`.
pub fn render(
    event: Event,
    data: &Value,
    name: &str,
    web_url: &str,
) -> Result<Rendered, anyhow::Error> {
    let ctx = context! { name => name, web_url => web_url.trim_end_matches('/'), ..minijinja::Value::from_serialize(data) };
    let text = TEMPLATES
        .get_template(&format!("{}.txt", event.as_str()))?
        .render(&ctx)?;
    let (subject, body) = text
        .split_once("\n\n")
        .ok_or_else(|| anyhow::anyhow!("{}.txt has no subject line", event.as_str()))?;
    let html = TEMPLATES
        .get_template(&format!("{}.html", event.as_str()))?
        .render(&ctx)?;
    Ok(Rendered {
        subject: subject.trim().to_owned(),
        text: body.trim().to_owned() + "\n",
        html,
    })
}

fn money(amount: String, currency: String) -> Result<String, Error> {
    format::format_money(&amount, &currency).ok_or_else(|| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{amount}` is not an amount"),
        )
    })
}

fn day(date: String) -> Result<String, Error> {
    let day = chrono::NaiveDate::parse_from_str(&date[..date.len().min(10)], "%Y-%m-%d")
        .map_err(|e| Error::new(ErrorKind::InvalidOperation, format!("`{date}`: {e}")))?;
    Ok(format::day(day))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_event_renders_and_html_escapes_what_it_prints() {
        let bill = json!({
            "bill_id": 9001, "apartment_id": 1, "provider": "Northwind <Energy>", "utility": "electricity",
            "amount": "1234.50", "currency": "EUR", "due_date": "2026-12-01", "late_fee_of": 9000,
            "days": 3, "payment_id": "8a6e0f4e-0000-4000-8000-000000000000", "total": "1234.50",
            "paid_at": "2026-11-30T10:00:00Z", "bills": [{"id": 9001, "provider": "Northwind <Energy>",
            "utility": "electricity", "amount": "1234.50"}], "change": "password_changed",
            "at": "2026-11-30T10:00:00Z", "link": "http://localhost:8080/verify-email?token=abc",
            "username": "jane", "refund_id": "5b1e0f4e-0000-4000-8000-000000000000",
            "reason": "meter misread", "refunded_at": "2026-12-02T09:00:00Z",
            "payment_total": "1234.50", "refunded": "100.00", "whole": false,
            "url": "https://hooks.example.com/in?a=<b>", "endpoint_id": "5b1e0f4e-0000-4000-8000-000000000001",
        });
        for &event in Event::ALL {
            let r = render(event, &bill, "Jane", "http://localhost:8080/").unwrap();
            assert!(
                !r.subject.is_empty() && !r.subject.contains('\n'),
                "{event:?}"
            );
            assert!(r.text.contains("Jane"), "{event:?}: {}", r.text);
            assert!(r.html.contains("Jane"), "{event:?}");
            if r.text.contains("Northwind") {
                assert!(r.text.contains("Northwind <Energy>"), "text is not escaped");
                assert!(
                    r.html.contains("Northwind &lt;Energy&gt;"),
                    "{event:?}: html escapes"
                );
            }
            if r.text.contains("1,234.50") {
                assert!(r.html.contains("€1,234.50"), "{event:?}");
            }
        }
    }

    #[test]
    fn a_whole_refund_names_the_bills_due_again_and_a_partial_one_what_stays_paid() {
        let mut data = json!({
            "refund_id": "5b1e0f4e-0000-4000-8000-000000000000", "payment_id": "8a6e0f4e-0000-4000-8000-000000000000",
            "apartment_id": 1, "amount": "30.00", "currency": "EUR", "reason": "moved <out>",
            "refunded_at": "2026-12-02T09:00:00Z", "payment_total": "130.00", "refunded": "30.00",
            "whole": false, "bills": [],
        });
        let partial = render(
            Event::RefundSucceeded,
            &data,
            "Jane",
            "http://localhost:8080/",
        )
        .unwrap();
        assert_eq!(partial.subject, "Refund: €30.00 back to your card");
        assert!(
            partial.text.contains("Refunded so far: €30.00 of €130.00"),
            "{}",
            partial.text
        );
        assert!(
            partial.html.contains("moved &lt;out&gt;"),
            "{}",
            partial.html
        );
        data["whole"] = json!(true);
        data["refunded"] = json!("130.00");
        data["bills"] = json!([9001, 9002]);
        let whole = render(
            Event::RefundSucceeded,
            &data,
            "Jane",
            "http://localhost:8080/",
        )
        .unwrap();
        assert!(
            whole
                .text
                .contains("bills are due again: bill 9001, bill 9002."),
            "{}",
            whole.text
        );
        assert!(!whole.text.contains("Refunded so far"), "{}", whole.text);
    }
}
