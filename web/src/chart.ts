// The last twelve months of an apartment's bills by utility, as stacked bars (SVG), with the
// same figures in a table for whoever would rather read them (and for screen readers).
import { h, s } from "./dom";
import { formatMoney, formatMonth, formatShortMonth, fromCents, toCents, utilityName } from "./money";

export interface ChartBill {
  period_start: string;
  utility: string;
  amount: string;
}

const PALETTE: Record<string, string> = {
  gas: "#d9731a",
  electricity: "#c9a100",
  water: "#2f7fd1",
  heating: "#c2413a",
};
const SPARE = ["#6b4fbb", "#2e9e6b", "#9c5a2e", "#5a6b7c"];

export function colorOf(utility: string, utilities: string[]): string {
  return PALETTE[utility] ?? SPARE[Math.max(0, utilities.indexOf(utility)) % SPARE.length];
}

/** The twelve months ending with the one `today` falls in, as "YYYY-MM". */
export function lastTwelveMonths(today: Date): string[] {
  const months: string[] = [];
  for (let i = 11; i >= 0; i--) {
    const d = new Date(Date.UTC(today.getUTCFullYear(), today.getUTCMonth() - i, 1));
    months.push(d.toISOString().slice(0, 7));
  }
  return months;
}

export function monthlyChart(bills: ChartBill[], currency: string, today = new Date()): HTMLElement {
  const months = lastTwelveMonths(today);
  const utilities = [...new Set(bills.map((b) => b.utility))].sort();
  // month -> utility -> cents
  const cells = new Map<string, Map<string, bigint>>(months.map((m) => [m, new Map()]));
  for (const bill of bills) {
    const row = cells.get(bill.period_start.slice(0, 7));
    if (!row) continue;
    row.set(bill.utility, (row.get(bill.utility) ?? 0n) + toCents(bill.amount));
  }
  const monthTotal = (m: string) => [...cells.get(m)!.values()].reduce((a, b) => a + b, 0n);
  const max = months.reduce((a, m) => (monthTotal(m) > a ? monthTotal(m) : a), 0n);

  const width = 640;
  const height = 240;
  const left = 8;
  const bottom = 24;
  const top = 20;
  const slot = (width - left) / months.length;
  const barWidth = slot * 0.62;
  const scale = (cents: bigint) => (max === 0n ? 0 : (Number(cents) / Number(max)) * (height - top - bottom));

  const bars = months.map((m, i) => {
    const x = left + i * slot + (slot - barWidth) / 2;
    let y = height - bottom;
    const stack = utilities.flatMap((u) => {
      const cents = cells.get(m)!.get(u);
      if (!cents) return [];
      const barHeight = scale(cents);
      y -= barHeight;
      return [
        s(
          "rect",
          { x: x.toFixed(1), y: y.toFixed(1), width: barWidth.toFixed(1), height: barHeight.toFixed(1), fill: colorOf(u, utilities) },
          s("title", {}, `${utilityName(u)}, ${formatMonth(m)}: ${formatMoney(fromCents(cents), currency)}`),
        ),
      ];
    });
    const total = monthTotal(m);
    return s(
      "g",
      {},
      stack,
      total > 0n
        ? s("text", { x: (x + barWidth / 2).toFixed(1), y: (y - 5).toFixed(1), "text-anchor": "middle", class: "chart-value" }, formatMoney(fromCents(total), currency))
        : null,
      s("text", { x: (x + barWidth / 2).toFixed(1), y: height - 6, "text-anchor": "middle", class: "chart-month" }, formatShortMonth(m)),
    );
  });

  const summary = `Bills of the last twelve months by utility, ${formatMonth(months[0])} to ${formatMonth(months[11])}.`;
  const svg = s(
    "svg",
    { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary, class: "chart", "data-testid": "chart" },
    s("line", { x1: left, x2: width, y1: height - bottom, y2: height - bottom, class: "chart-axis" }),
    bars,
  );
  // Swatches are SVG with the bars' fill (a presentation attribute: the CSP allows no inline styles).
  const legend = h(
    "ul",
    { class: "legend", "aria-hidden": "true" },
    utilities.map((u) =>
      h("li", {}, s("svg", { class: "swatch", viewBox: "0 0 12 12" }, s("rect", { width: 12, height: 12, rx: 2, fill: colorOf(u, utilities) })), utilityName(u)),
    ),
  );
  const table = h(
    "details",
    { class: "chart-table" },
    h("summary", {}, "Show the figures as a table"),
    h(
      "table",
      {},
      h("caption", { class: "visually-hidden" }, summary),
      h("thead", {}, h("tr", {}, h("th", { scope: "col" }, "Month"), utilities.map((u) => h("th", { scope: "col" }, utilityName(u))), h("th", { scope: "col" }, "Total"))),
      h(
        "tbody",
        {},
        months.map((m) =>
          h(
            "tr",
            {},
            h("th", { scope: "row" }, formatMonth(m)),
            utilities.map((u) => h("td", { class: "amount" }, formatMoney(fromCents(cells.get(m)!.get(u) ?? 0n), currency))),
            h("td", { class: "amount" }, formatMoney(fromCents(monthTotal(m)), currency)),
          ),
        ),
      ),
    ),
  );
  return h("figure", { class: "chart-figure" }, svg, legend, h("figcaption", {}, summary), table);
}
