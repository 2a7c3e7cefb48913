// One bill, as the mails link to it (`/apartments/{id}/bills/{bill_id}`): what it is for, its
// lines, what happened to it, its PDF, and paying it.
import { explain, type App } from "../app";
import type { BillData } from "../contract";
import { h } from "../dom";
import { formatDate, formatInstant, formatMoney, formatMonth, utilityName } from "../money";
import { errorBox, heading } from "./common";
import { keepReceipt } from "./receipt";

const STATUS: Record<string, string> = { open: "Open", overdue: "Overdue", paid: "Paid", void: "Void" };

export function billView(app: App, apartmentId: number, billId: number): HTMLElement {
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the bill…"));
  const title = heading(`Bill ${billId}`);
  app.session.gateway.call("/apartments/{apartment_id}/bills/{bill_id}", { apartment_id: apartmentId, bill_id: billId }, {}).then(
    (bill) => {
      body.removeAttribute("aria-busy");
      title.textContent = `${utilityName(bill.utility)} bill, ${formatMonth(bill.period_start)}`;
      document.title = `${title.textContent} · qbill`;
      body.replaceChildren(...renderBill(app, apartmentId, bill));
    },
    (error: unknown) => {
      body.removeAttribute("aria-busy");
      body.replaceChildren(errorBox(explain(error, "This bill")));
    },
  );
  return h("section", {}, title, body, h("p", { class: "links" }, h("a", { href: `#/apartments/${apartmentId}` }, "All the bills of this apartment")));
}

function renderBill(app: App, apartmentId: number, bill: BillData): HTMLElement[] {
  const money = (amount: string) => formatMoney(amount, bill.currency);
  const facts = h(
    "article",
    { class: "card receipt", "aria-label": "The bill" },
    h(
      "dl",
      { class: "facts" },
      h("dt", {}, "Provider"),
      h("dd", {}, bill.provider),
      h("dt", {}, "Period"),
      h("dd", {}, `${formatDate(bill.period_start)} to ${formatDate(bill.period_end)}`),
      h("dt", {}, "Due"),
      h("dd", {}, formatDate(bill.due_date), bill.status === "overdue" ? ` (overdue ${bill.days_overdue} days)` : ""),
      h("dt", {}, "Status"),
      h("dd", {}, h("span", { class: `badge badge-${bill.status}`, "data-testid": "bill-status" }, STATUS[bill.status] ?? bill.status)),
      bill.late_fee_of ? [h("dt", {}, "Late fee on"), h("dd", {}, h("a", { href: `#/apartments/${apartmentId}/bills/${bill.late_fee_of}` }, `bill ${bill.late_fee_of}`))] : null,
      h("dt", {}, "Amount"),
      h("dd", { class: "strong" }, money(bill.amount)),
    ),
    bill.lines && bill.lines.length > 0
      ? h(
          "table",
          {},
          h("caption", {}, "Lines"),
          h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Description"), h("th", { scope: "col", class: "amount" }, "Quantity"), h("th", { scope: "col", class: "amount" }, "Unit price"), h("th", { scope: "col", class: "amount" }, "Amount"))),
          h(
            "tbody",
            {},
            bill.lines.map((l) => h("tr", {}, h("td", {}, l.description), h("td", { class: "amount" }, l.quantity), h("td", { class: "amount" }, l.unit_price), h("td", { class: "amount" }, money(l.amount)))),
          ),
        )
      : null,
    bill.events.length > 0
      ? h("div", {}, h("h2", {}, "What happened"), h("ol", { class: "events" }, bill.events.map((e) => h("li", {}, `${formatInstant(e.at)}: ${STATUS[e.status] ?? e.status}`))))
      : null,
  );

  const actions = h("div", { class: "actions" });
  const status = h("div", {});
  if (bill.status === "open" || bill.status === "overdue") {
    const pay = h("button", { type: "button", class: "primary" }, `Pay ${money(bill.amount)}`);
    // One request id for this bill's page: paying again after no reply cannot pay twice.
    const requestId = crypto.randomUUID();
    pay.addEventListener("click", () => {
      pay.disabled = true;
      status.replaceChildren(h("p", { role: "status" }, "Paying…"));
      app.session.gateway
        .call("/apartments/{apartment_id}/payments", { apartment_id: apartmentId }, { bills_id: [bill.bill_id] }, requestId)
        .then((receipt) => {
          keepReceipt(receipt, [bill]);
          app.go(`#/apartments/${apartmentId}/receipts/${receipt.payment_id}`);
        })
        .catch((error: unknown) => {
          status.replaceChildren(errorBox(explain(error, "This bill")));
          pay.disabled = false;
        });
    });
    actions.append(pay);
  }
  const pdf = h("button", { type: "button" }, "Get the bill as a PDF");
  pdf.addEventListener("click", () => {
    pdf.disabled = true;
    app.session.gateway
      .call("/apartments/{apartment_id}/documents", { apartment_id: apartmentId }, { kind: "bill", format: "pdf", bill_id: bill.bill_id })
      .then((doc) => pdf.replaceWith(h("a", { href: doc.url, target: "_blank", rel: "noopener", class: "button" }, "Open the bill (PDF)")))
      .catch((error: unknown) => {
        status.replaceChildren(errorBox(explain(error, "This bill")));
        pdf.disabled = false;
      });
  });
  actions.append(pdf);
  return [facts, actions, status];
}
