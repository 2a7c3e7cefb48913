// The receipt of a payment, on screen, and its PDF (issued by the engine, fetched from the link
// its reply carries).
import { explain, type App } from "../app";
import type { Bill, PaymentsData } from "../contract";
import { h } from "../dom";
import { formatInstant, formatMoney, formatMonth, utilityName } from "../money";
import { errorBox, heading } from "./common";

/** What a receipt shows of each bill it paid. */
export type ReceiptBill = Pick<Bill, "bill_id" | "utility" | "provider" | "period_start" | "amount" | "currency">;

interface Kept {
  receipt: PaymentsData;
  bills: ReceiptBill[];
}

const key = (paymentId: string) => `qbill.receipt.${paymentId}`;

/** What a receipt keeps of a bill. */
export function receiptBill(b: ReceiptBill): ReceiptBill {
  return { bill_id: b.bill_id, utility: b.utility, provider: b.provider, period_start: b.period_start, amount: b.amount, currency: b.currency };
}

/** Keeps a receipt for this tab, with the bills it paid, to show it after navigating. */
export function keepReceipt(receipt: PaymentsData, bills: ReceiptBill[]): void {
  // A client secret is of no use once the payment is settled: not kept.
  const kept: Kept = { receipt: { ...receipt, client_secret: null }, bills: bills.filter((b) => receipt.bills_id.includes(b.bill_id)).map(receiptBill) };
  sessionStorage.setItem(key(receipt.payment_id), JSON.stringify(kept));
}

export function receiptView(app: App, apartmentId: number, paymentId: string): HTMLElement {
  const raw = sessionStorage.getItem(key(paymentId));
  if (!raw) {
    return h(
      "section",
      {},
      heading("Receipt"),
      h("p", {}, "This receipt is not kept in this tab. Every payment is in the "),
      h("a", { href: `#/apartments/${apartmentId}/history` }, "payment history"),
    );
  }
  const { receipt, bills } = JSON.parse(raw) as Kept;
  const money = (amount: string) => formatMoney(amount, receipt.currency);
  const pdfSlot = h("div", { class: "pdf" });
  const pdfButton = h("button", { type: "button" }, "Get the receipt as a PDF");
  pdfButton.addEventListener("click", () => {
    pdfButton.disabled = true;
    pdfSlot.replaceChildren(h("p", { role: "status" }, "Issuing the PDF…"));
    app.session.gateway
      .call("/apartments/{apartment_id}/documents", { apartment_id: apartmentId }, { kind: "receipt", format: "pdf", payment_id: paymentId })
      .then((doc) => {
        pdfButton.hidden = true;
        pdfSlot.replaceChildren(
          h("p", {}, h("a", { href: doc.url, target: "_blank", rel: "noopener", class: "button", "data-testid": "receipt-pdf" }, "Open the receipt (PDF)")),
          h("p", { class: "meta" }, `${Math.ceil(doc.bytes / 1024)} KB · the link works until ${formatInstant(doc.expires_at)} · SHA-256 ${doc.sha256.slice(0, 16)}…`),
        );
      })
      .catch((error: unknown) => {
        pdfSlot.replaceChildren(errorBox(explain(error, "The receipt")));
        pdfButton.disabled = false;
      });
  });
  return h(
    "section",
    {},
    heading("Receipt"),
    h("p", { class: "notice", role: "status" }, `Paid ${money(receipt.total)}. Thank you.`),
    h(
      "article",
      { class: "card receipt", "aria-label": "Receipt" },
      h(
        "dl",
        { class: "facts" },
        h("dt", {}, "Payment"),
        h("dd", { class: "mono", "data-testid": "payment-id" }, receipt.payment_id),
        h("dt", {}, "Paid at"),
        h("dd", { "data-testid": "paid-at" }, receipt.paid_at ? formatInstant(receipt.paid_at) : `not yet (${receipt.status})`),
        h("dt", {}, "Apartment"),
        h("dd", {}, app.session.apartments.find((a) => a.id === receipt.apartment_id)?.address ?? String(receipt.apartment_id)),
      ),
      h(
        "table",
        {},
        h("caption", {}, "Bills paid"),
        h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Bill"), h("th", { scope: "col" }, "Utility"), h("th", { scope: "col" }, "Provider"), h("th", { scope: "col" }, "Period"), h("th", { scope: "col", class: "amount" }, "Amount"))),
        h(
          "tbody",
          {},
          receipt.bills_id.map((id) => {
            // A payment followed from another tab knows its bills by number only.
            const b = bills.find((kept) => kept.bill_id === id);
            return b
              ? h("tr", {}, h("td", {}, String(b.bill_id)), h("td", {}, utilityName(b.utility)), h("td", {}, b.provider), h("td", {}, formatMonth(b.period_start)), h("td", { class: "amount" }, formatMoney(b.amount, b.currency)))
              : h("tr", {}, h("td", {}, String(id)), h("td", { colspan: 4 }, h("a", { href: `#/apartments/${apartmentId}/bills/${id}` }, "The bill's details")));
          }),
        ),
        h("tfoot", {}, h("tr", {}, h("th", { scope: "row", colspan: 4 }, "Total"), h("td", { class: "amount", "data-testid": "receipt-total" }, money(receipt.total)))),
      ),
    ),
    pdfButton,
    pdfSlot,
    h("p", { class: "links" }, h("a", { href: `#/apartments/${apartmentId}` }, "Back to the bills"), " · ", h("a", { href: `#/apartments/${apartmentId}/history` }, "Payment history")),
  );
}
