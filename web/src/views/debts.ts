// An apartment's unpaid bills grouped by provider and utility, with totals, the last twelve
// months as a chart, and paying: choose bills (all of a utility, of a provider, of a period, or
// one by one), pay them by card, and get the receipt. A refused card shows the bills afresh,
// still chosen, with the refusal beside the card form.
import { explain, type App } from "../app";
import { monthlyChart } from "../chart";
import type { Bill, UtilsData } from "../contract";
import { h } from "../dom";
import { syncHistory } from "../history";
import { formatDate, formatMoney, formatMonth, sum, utilityName } from "../money";
import { errorBox, heading } from "./common";
import { cardPanel } from "./pay";

/** A card refused: the bills that were chosen, and why. */
interface Refused {
  chosen: number[];
  message: string;
}

/** How many bills one payment may settle (the gateway's schema, `bills_id`'s maxItems). */
const MAX_BILLS_PER_PAYMENT = 100;

/** Every page of the apartment's unpaid bills. */
async function loadUtils(app: App, apartmentId: number): Promise<UtilsData> {
  let first: UtilsData | null = null;
  const bills: Bill[] = [];
  let cursor: string | undefined;
  do {
    const page = await app.session.gateway.call("/apartments/{apartment_id}/utils", { apartment_id: apartmentId }, cursor ? { cursor } : {});
    first ??= page;
    bills.push(...page.bills);
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  return { ...first, bills, next_cursor: null };
}

const groupBy = <T>(items: T[], key: (t: T) => string) => {
  const groups = new Map<string, T[]>();
  for (const item of items) groups.set(key(item), [...(groups.get(key(item)) ?? []), item]);
  return groups;
};

export function debtsView(app: App, apartmentId: number): HTMLElement {
  const apartment = app.session.apartments.find((a) => a.id === apartmentId);
  const body = h("div", { "aria-busy": "true" }, h("p", { class: "loading" }, "Loading the bills…"));
  const chartSlot = h("div", { class: "chart-slot" }, h("p", { class: "loading" }, "Loading the last twelve months…"));
  const section = h(
    "section",
    {},
    heading(apartment ? apartment.address : `Apartment ${apartmentId}`),
    h("nav", { class: "subnav", "aria-label": "Apartment" }, h("a", { href: `#/apartments/${apartmentId}`, "aria-current": "page" }, "Bills to pay"), h("a", { href: `#/apartments/${apartmentId}/history` }, "Payment history")),
    body,
  );

  const load = (refused?: Refused) => {
    const utils = loadUtils(app, apartmentId);
    utils.then(
      (data) => {
        body.removeAttribute("aria-busy");
        const [totals, ...rest] = renderDebts(app, data, (again) => load(again), refused);
        body.replaceChildren(totals, chartSlot, ...rest);
      },
      (error: unknown) => {
        body.removeAttribute("aria-busy");
        // A refusal is still said when the bills cannot be shown again.
        body.replaceChildren(...(refused ? [errorBox(refused.message)] : []), errorBox(explain(error, "This apartment")));
      },
    );
    return utils;
  };
  const utils = load();
  // The chart needs the settled bills too: the history, from the browser's store plus the delta.
  Promise.all([utils, syncHistory(app.session, apartmentId)]).then(
    ([data, history]) => {
      const bills = [...data.bills, ...history.settled];
      chartSlot.replaceChildren(h("h2", {}, "The last twelve months"), monthlyChart(bills, data.currency));
    },
    () => chartSlot.replaceChildren(),
  );
  return section;
}

function renderDebts(app: App, data: UtilsData, reload: (refused?: Refused) => void, refused?: Refused): HTMLElement[] {
  const currency = data.currency;
  const money = (amount: string) => formatMoney(amount, currency);
  if (data.bills.length === 0) {
    return [h("p", { class: "notice", role: "status" }, "Nothing to pay: every bill of this apartment is paid.")];
  }
  // A bill reserved by a payment under way cannot be chosen until that payment is settled.
  const payable = data.bills.filter((b) => b.status !== "processing");

  const selected = new Set<number>();
  const checkboxes = new Map<number, HTMLInputElement>();
  const groupButtons: { button: HTMLButtonElement; bills: Bill[] }[] = [];
  const payButton = h("button", { type: "button", class: "primary", disabled: true }, "Pay");
  const selectionText = h("span", { class: "selection", "aria-live": "polite" }, "No bill chosen.");
  const confirmSlot = h("div", {});

  const refresh = () => {
    const chosen = payable.filter((b) => selected.has(b.bill_id));
    for (const [id, box] of checkboxes) box.checked = selected.has(id);
    for (const { button, bills } of groupButtons) {
      button.setAttribute("aria-pressed", String(bills.length > 0 && bills.every((b) => selected.has(b.bill_id))));
    }
    const tooMany = chosen.length > MAX_BILLS_PER_PAYMENT;
    payButton.disabled = chosen.length === 0 || tooMany;
    const total = sum(chosen.map((b) => b.amount));
    selectionText.textContent =
      chosen.length === 0
        ? "No bill chosen."
        : `${chosen.length} ${chosen.length === 1 ? "bill" : "bills"} chosen: ${money(total)}${tooMany ? ` (one payment settles at most ${MAX_BILLS_PER_PAYMENT})` : ""}`;
    payButton.textContent = chosen.length === 0 ? "Pay" : `Pay ${money(total)}`;
    confirmSlot.replaceChildren();
  };

  const groupButton = (label: string, all: Bill[]) => {
    const bills = all.filter((b) => b.status !== "processing");
    const button = h("button", { type: "button", class: "chip", "aria-pressed": "false", disabled: bills.length === 0 }, label);
    button.addEventListener("click", () => {
      const all = bills.every((b) => selected.has(b.bill_id));
      for (const b of bills) {
        if (all) selected.delete(b.bill_id);
        else selected.add(b.bill_id);
      }
      refresh();
    });
    groupButtons.push({ button, bills });
    return button;
  };

  const byUtility = groupBy(data.bills, (b) => b.utility);
  const byProvider = groupBy(data.bills, (b) => b.provider);
  const byPeriod = groupBy(data.bills, (b) => b.period_start.slice(0, 7));
  const chooser = h(
    "div",
    { class: "chooser", role: "group", "aria-label": "Choose bills by group" },
    h("div", { class: "chip-row" }, h("span", { class: "chip-label" }, "All of a utility"), [...byUtility].sort().map(([u, bills]) => groupButton(utilityName(u), bills))),
    h("div", { class: "chip-row" }, h("span", { class: "chip-label" }, "All of a provider"), [...byProvider].sort().map(([p, bills]) => groupButton(p, bills))),
    h("div", { class: "chip-row" }, h("span", { class: "chip-label" }, "All of a period"), [...byPeriod].sort().map(([m, bills]) => groupButton(formatMonth(`${m}-01`), bills))),
    h("div", { class: "chip-row" }, groupButton("Every bill", data.bills)),
  );

  const providers = [...byProvider].map(([provider, providerBills]) =>
    h(
      "section",
      { class: "card provider" },
      h("h2", {}, provider, " ", h("span", { class: "subtotal" }, money(data.totals.by_provider[provider] ?? sum(providerBills.map((b) => b.amount))))),
      [...groupBy(providerBills, (b) => b.utility)].map(([utility, bills]) =>
        h(
          "fieldset",
          { class: "utility" },
          h("legend", {}, utilityName(utility), " ", h("span", { class: "subtotal" }, money(sum(bills.map((b) => b.amount))))),
          h(
            "ul",
            { class: "bills" },
            bills.map((bill) => {
              const reserved = bill.status === "processing";
              const box = h("input", { type: "checkbox", id: `bill-${bill.bill_id}`, value: String(bill.bill_id), disabled: reserved });
              box.addEventListener("change", () => {
                if (box.checked) selected.add(bill.bill_id);
                else selected.delete(bill.bill_id);
                refresh();
              });
              checkboxes.set(bill.bill_id, box);
              return h(
                "li",
                { class: `bill ${bill.status}` },
                box,
                h(
                  "label",
                  { for: box.id },
                  h("span", { class: "bill-period" }, formatMonth(bill.period_start), bill.late_fee_of ? ` · late fee on bill ${bill.late_fee_of}` : ""),
                  h(
                    "span",
                    { class: "bill-due" },
                    reserved
                      ? "A payment of it is under way"
                      : bill.status === "overdue"
                        ? `Overdue ${bill.days_overdue} days (due ${formatDate(bill.due_date)})`
                        : `Due ${formatDate(bill.due_date)}`,
                  ),
                  h("span", { class: "amount" }, formatMoney(bill.amount, bill.currency)),
                ),
                h("a", { href: `#/apartments/${data.apartment_id}/bills/${bill.bill_id}`, class: "details", "aria-label": `Details of the ${utilityName(bill.utility)} bill of ${formatMonth(bill.period_start)}` }, "Details"),
              );
            }),
          ),
        ),
      ),
    ),
  );

  const openPanel = (failure?: string) => {
    const chosen = payable.filter((b) => selected.has(b.bill_id));
    if (chosen.length === 0) return;
    const total = sum(chosen.map((b) => b.amount));
    const panel = cardPanel(app, {
      apartmentId: data.apartment_id,
      bills: chosen,
      total,
      currency,
      question: `Pay ${chosen.length} ${chosen.length === 1 ? "bill" : "bills"} for ${money(total)}? They are paid together, or none is.`,
      back: `#/apartments/${data.apartment_id}`,
      what: "A chosen bill",
      refused: failure,
      // The refused card released its bills: shown afresh, still chosen, with the refusal.
      onRefused: (message) => reload({ chosen: chosen.map((b) => b.bill_id), message }),
      reload: { label: "Load the bills again", run: () => app.go(`#/apartments/${data.apartment_id}`) },
      onCancel: () => {
        confirmSlot.replaceChildren();
        payButton.focus();
      },
    });
    confirmSlot.replaceChildren(panel);
  };
  payButton.addEventListener("click", () => openPanel());

  const totals = h(
    "section",
    { class: "card totals", "aria-label": "Totals" },
    h("p", { class: "total" }, h("span", {}, "Total due"), h("strong", { "data-testid": "total-due" }, money(data.totals.total))),
    h("p", { class: "meta" }, `${data.bills_count} unpaid ${data.bills_count === 1 ? "bill" : "bills"}`),
    h(
      "dl",
      { class: "breakdown" },
      Object.entries(data.totals.by_utility).map(([u, amount]) => [h("dt", {}, utilityName(u)), h("dd", { class: "amount" }, money(amount))]),
    ),
  );

  if (refused) {
    for (const b of payable) if (refused.chosen.includes(b.bill_id)) selected.add(b.bill_id);
    refresh();
    openPanel(refused.message);
  }

  return [
    totals,
    h("h2", {}, "Choose bills to pay"),
    chooser,
    ...providers,
    h("div", { class: "paybar" }, selectionText, payButton),
    confirmSlot,
  ];
}
