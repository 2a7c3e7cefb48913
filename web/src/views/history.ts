// The payment history of an apartment: what this browser keeps, brought up to date with the
// delta the server sends, by payment, with the refunds above.
import { explain, type App } from "../app";
import type { SettledBill } from "../contract";
import { h } from "../dom";
import { syncHistory } from "../history";
import { formatDate, formatInstant, formatMoney, formatMonth, sum, utilityName } from "../money";
import { errorBox, field, heading, onSubmit } from "./common";

export function historyView(app: App, apartmentId: number): HTMLElement {
  const apartment = app.session.apartments.find((a) => a.id === apartmentId);
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the history…"));
  syncHistory(app.session, apartmentId).then(
    (history) => {
      body.removeAttribute("aria-busy");
      const source = h(
        "p",
        { class: "meta", "data-testid": "history-source", "data-from-store": history.fromStore, "data-from-server": history.fromServer },
        `${history.fromStore} kept in this browser, ${history.fromServer} new from the server`,
        history.window ? ` · complete from ${formatDate(history.window.date_down)} to ${formatDate(history.window.date_up)}` : "",
      );
      const paidAt = new Map(history.settled.map((b) => [b.payment_id, b.paid_at]));
      const refunds =
        history.refunds.length === 0
          ? null
          : h(
              "section",
              { class: "card refunds", "aria-labelledby": "refunds-heading" },
              h("h2", { id: "refunds-heading" }, "Refunds"),
              h(
                "ul",
                { class: "bills" },
                history.refunds.map((r) =>
                  h(
                    "li",
                    { class: "bill", "data-refund-id": r.refund_id },
                    h(
                      "span",
                      {},
                      `${r.refunded_at ? formatInstant(r.refunded_at) : "Under way"} · ${r.reason}`,
                      paidAt.has(r.payment_id) ? ` · of the payment of ${formatInstant(paidAt.get(r.payment_id)!)}` : "",
                      r.whole ? " · the payment refunded in full: its bills are due again" : "",
                    ),
                    h("span", { class: "amount" }, formatMoney(r.amount, r.currency)),
                  ),
                ),
              ),
            );
      if (history.settled.length === 0) {
        body.replaceChildren(source, ...(refunds ? [refunds] : []), h("p", {}, "No payment yet."));
        return;
      }
      const payments = new Map<string, SettledBill[]>();
      for (const bill of history.settled) payments.set(bill.payment_id, [...(payments.get(bill.payment_id) ?? []), bill]);
      body.replaceChildren(
        source,
        ...(refunds ? [refunds] : []),
        h(
          "ol",
          { class: "payments" },
          [...payments].map(([paymentId, bills]) =>
            h(
              "li",
              { class: "card payment", "data-payment-id": paymentId },
              h("h2", {}, `Paid ${formatInstant(bills[0].paid_at)}`, " ", h("span", { class: "subtotal" }, formatMoney(sum(bills.map((b) => b.amount)), bills[0].currency))),
              h(
                "ul",
                { class: "bills" },
                bills.map((b) =>
                  h(
                    "li",
                    { class: "bill", "data-bill-id": b.bill_id },
                    h("span", {}, `${utilityName(b.utility)} · ${b.provider} · ${formatMonth(b.period_start)}`),
                    h("span", { class: "amount" }, formatMoney(b.amount, b.currency)),
                  ),
                ),
              ),
            ),
          ),
        ),
      );
    },
    (error: unknown) => {
      body.removeAttribute("aria-busy");
      body.replaceChildren(errorBox(explain(error, "This apartment")));
    },
  );
  return h(
    "section",
    {},
    heading(apartment ? `${apartment.address}: payments` : `Apartment ${apartmentId}: payments`),
    h("nav", { class: "subnav", "aria-label": "Apartment" }, h("a", { href: `#/apartments/${apartmentId}` }, "Bills to pay"), h("a", { href: `#/apartments/${apartmentId}/history`, "aria-current": "page" }, "Payment history")),
    body,
    statementForm(app, apartmentId),
  );
}

const isoDay = (d: Date) => d.toISOString().slice(0, 10);

/** A statement of the apartment for a window of whole days before today, as PDF, XLSX or CSV. */
function statementForm(app: App, apartmentId: number): HTMLElement {
  const day = 86_400_000;
  const yesterday = new Date(Date.now() - day);
  const from = h("input", { type: "date", name: "from", required: true, value: isoDay(new Date(yesterday.getTime() - 365 * day)), max: isoDay(yesterday) });
  const to = h("input", { type: "date", name: "to", required: true, value: isoDay(yesterday), max: isoDay(yesterday) });
  const format = h(
    "select",
    { name: "format" },
    h("option", { value: "pdf" }, "PDF"),
    h("option", { value: "xlsx" }, "XLSX (a spreadsheet)"),
    h("option", { value: "csv" }, "CSV (for programs)"),
  );
  const status = h("div", { class: "form-status" });
  const form = h(
    "form",
    { class: "card statement", "aria-label": "Statement" },
    h("h2", {}, "Statement"),
    h("div", { class: "row" }, field("From", from), field("To", to), field("Format", format)),
    h("p", { class: "hint" }, "Whole days before today, at most 366: what was owed at the start, every bill and payment, and what was owed at the end."),
    h("button", { type: "submit" }, "Get the statement"),
    status,
  );
  onSubmit(form, status, async () => {
    try {
      const doc = await app.session.gateway.call(
        "/apartments/{apartment_id}/documents",
        { apartment_id: apartmentId },
        { kind: "statement", format: format.value as "pdf" | "csv" | "xlsx", from: from.value, to: to.value },
      );
      status.replaceChildren(
        h("p", {}, h("a", { href: doc.url, target: "_blank", rel: "noopener", class: "button", "data-testid": "statement-link" }, `Open the statement (${doc.format.toUpperCase()})`)),
        h("p", { class: "meta" }, `${Math.ceil(doc.bytes / 1024)} KB · the link works until ${formatInstant(doc.expires_at)}`),
      );
    } catch (error) {
      throw new Error(explain(error, "The statement"));
    }
  });
  return form;
}
