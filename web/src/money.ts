// Money in the browser: amounts arrive as decimal strings ("1234.50") and stay exact. Sums are
// taken in minor units with BigInt, never with floating point; Intl.NumberFormat formats the
// decimal string itself.

const AMOUNT = /^(-?)(\d+)(?:\.(\d{1,2}))?$/;

/** The amount in hundredths, exactly. */
export function toCents(amount: string): bigint {
  const m = AMOUNT.exec(amount.trim());
  if (!m) throw new Error(`not an amount: ${amount}`);
  const [, sign, whole, fraction = ""] = m;
  const cents = BigInt(whole) * 100n + BigInt(fraction.padEnd(2, "0"));
  return sign ? -cents : cents;
}

/** Hundredths back to a decimal string with two places. */
export function fromCents(cents: bigint): string {
  const sign = cents < 0n ? "-" : "";
  const abs = cents < 0n ? -cents : cents;
  return `${sign}${abs / 100n}.${(abs % 100n).toString().padStart(2, "0")}`;
}

export function sum(amounts: Iterable<string>): string {
  let total = 0n;
  for (const a of amounts) total += toCents(a);
  return fromCents(total);
}

const formats = new Map<string, Intl.NumberFormat>();

/** An amount for people, in its currency and the reader's locale: "€1,234.50". */
export function formatMoney(amount: string, currency: string): string {
  let format = formats.get(currency);
  if (!format) {
    format = new Intl.NumberFormat(undefined, { style: "currency", currency });
    formats.set(currency, format);
  }
  // Intl formats a decimal string exactly (no trip through a float).
  return format.format(amount as unknown as number);
}

const monthFormat = new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" });
const shortMonthFormat = new Intl.DateTimeFormat(undefined, { month: "short", timeZone: "UTC" });
const dateFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeZone: "UTC" });
const instantFormat = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });

/** "2026-08-01" → "August 2026". */
export function formatMonth(isoDate: string): string {
  return monthFormat.format(new Date(`${isoDate.slice(0, 7)}-01T00:00:00Z`));
}

export function formatShortMonth(isoDate: string): string {
  return shortMonthFormat.format(new Date(`${isoDate.slice(0, 7)}-01T00:00:00Z`));
}

export function formatDate(isoDate: string): string {
  return dateFormat.format(new Date(`${isoDate}T00:00:00Z`));
}

export function formatInstant(instant: string): string {
  return instantFormat.format(new Date(instant));
}

/** "electricity" → "Electricity", "district_heating" → "District heating". */
export function utilityName(utility: string): string {
  const words = utility.replace(/_/g, " ");
  return words.charAt(0).toUpperCase() + words.slice(1);
}
