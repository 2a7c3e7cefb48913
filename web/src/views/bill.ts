// One bill, as the mails link to it (`/apartments/{id}/bills/{bill_id}`): what it is for, its
// lines, what happened to it, its PDF, and paying it by card. A refused card shows the bill
// afresh (payable again) with the refusal beside the card form.
import { explain, type App } from "../app";
import type { BillData } from "../contract";
import { h } from "../dom";
import { formatDate, formatInstant, formatMoney, formatMonth, utilityName } from "../money";
import { errorBox, heading } from "./common";
import { cardPanel } from "./pay";

const STATUS: Record<string, string> = { open: "Open", overdue: "Overdue", processing: "Payment under way", paid: "Paid", void: "Void" };

export function billView(app: App, apartmentId: number, billId: number): HTMLElement {
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the bill…"));
  const title = heading(`Bill ${billId}`);
  const load = (refused?: string) =>
    app.session.gateway.call("/apartments/{apartment_id}/bills/{bill_id}", { apartment_id: apartmentId, bill_id: billId }, {}).then(
      (bill) => {
        body.removeAttribute("aria-busy");
        title.textContent = `${utilityName(bill.utility)} bill, ${formatMonth(bill.period_start)}`;
        document.title = `${title.textContent} · qbill`;
        body.replaceChildren(...renderBill(app, apartmentId, bill, load, refused));
      },
      (error: unknown) => {
        body.removeAttribute("aria-busy");
        // A refusal is still said when the bill cannot be shown again.
        body.replaceChildren(...(refused ? [errorBox(refused)] : []), errorBox(explain(error, "This bill")));
      },
    );
  void load();
  return h("section", {}, title, body, h("p", { class: "links" }, h("a", { href: `#/apartments/${apartmentId}` }, "All the bills of this apartment")));
}

function renderBill(app: App, apartmentId: number, bill: BillData, reload: (refused?: string) => void, refused?: string): HTMLElement[] {
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
  const paySlot = h("div", {});
  if (bill.status === "open" || bill.status === "overdue") {
    const pay = h("button", { type: "button", class: "primary" }, `Pay ${money(bill.amount)}`);
    const open = (failure?: string) => {
      pay.disabled = true;
      paySlot.replaceChildren(
        cardPanel(app, {
          apartmentId,
          bills: [bill],
          total: bill.amount,
          currency: bill.currency,
          question: `Pay this bill, ${money(bill.amount)}?`,
          back: `#/apartments/${apartmentId}/bills/${bill.bill_id}`,
          what: "This bill",
          refused: failure,
          // The refused card released the bill: shown afresh, with the refusal.
          onRefused: (message) => reload(message),
          reload: { label: "Load the bill again", run: () => reload() },
          onCancel: () => {
            paySlot.replaceChildren();
            pay.disabled = false;
            pay.focus();
          },
        }),
      );
    };
    pay.addEventListener("click", () => open());
    actions.append(pay);
    if (refused) open(refused);
  } else if (bill.status === "processing") {
    status.append(h("p", { class: "notice" }, "A payment of this bill is under way: it shows as paid once the card's processor confirms it."));
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
  return [facts, actions, paySlot, status];
}
