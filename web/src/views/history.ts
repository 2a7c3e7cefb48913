// The payment history of an apartment: what this browser keeps, brought up to date with the
// delta the server sends, by payment.
import { explain, type App } from "../app";
import type { SettledBill } from "../contract";
import { h } from "../dom";
import { syncHistory } from "../history";
import { formatDate, formatInstant, formatMoney, formatMonth, sum, utilityName } from "../money";
import { errorBox, heading } from "./common";

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
      if (history.settled.length === 0) {
        body.replaceChildren(source, h("p", {}, "No payment yet."));
        return;
      }
      const payments = new Map<string, SettledBill[]>();
      for (const bill of history.settled) payments.set(bill.payment_id, [...(payments.get(bill.payment_id) ?? []), bill]);
      body.replaceChildren(
        source,
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
  );
}
