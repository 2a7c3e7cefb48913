// The payment history of an apartment, kept in the browser (localStorage) and brought up to date
// with the histories route's delta exchange: the request names the window of settled bills the
// browser already holds (`date_down`..`date_up`, by payment date); the reply carries every settled
// bill paid outside it and the window then held in full. The latest days can still gain payments,
// so their bills may come again: they are merged by `bill_id`. Refunds come on the first page, by
// the day they went back, merged by `refund_id`; one that refunded its payment whole takes that
// payment's bills out of the settled ones (they are due again).
import type { RefundedPayment, SettledBill } from "./contract";
import type { Session } from "./session";

interface Stored {
  date_down: string | null;
  date_up: string | null;
  settled: SettledBill[];
  /** Missing in a store kept before refunds. */
  refunds?: RefundedPayment[];
}

export interface Synced {
  settled: SettledBill[];
  /** Newest first. */
  refunds: RefundedPayment[];
  currency: string | null;
  /** Bills that came from this browser's store. */
  fromStore: number;
  /** Bills the server sent that the store did not have. */
  fromServer: number;
  /** The window now held, or null when nothing is settled. */
  window: { date_down: string; date_up: string } | null;
}

const key = (userId: number, apartmentId: number) => `qbill.history.v1.${userId}.${apartmentId}`;

/** Removes every history this browser keeps for the user. */
export function forgetHistories(userId: number): void {
  const prefix = `qbill.history.v1.${userId}.`;
  for (const k of Object.keys(localStorage)) if (k.startsWith(prefix)) localStorage.removeItem(k);
}

function load(userId: number, apartmentId: number): Stored {
  try {
    const raw = localStorage.getItem(key(userId, apartmentId));
    if (raw) return JSON.parse(raw) as Stored;
  } catch {
    // A store this version cannot read is dropped and filled again.
  }
  return { date_down: null, date_up: null, settled: [] };
}

/** Reads the store, asks the server for what lies outside its window, and keeps the result. */
export async function syncHistory(session: Session, apartmentId: number): Promise<Synced> {
  const user = session.user;
  if (!user) throw new Error("not logged in");
  const stored = load(user.id, apartmentId);
  const window = stored.date_down && stored.date_up ? { date_down: stored.date_down, date_up: stored.date_up } : {};
  const byId = new Map(stored.settled.map((b) => [b.bill_id, b]));
  const refundsById = new Map((stored.refunds ?? []).map((r) => [r.refund_id, r]));
  const fromStore = byId.size;
  let fromServer = 0;
  let cursor: string | undefined;
  let currency: string | null = stored.settled[0]?.currency ?? null;
  let held: { date_down: string | null; date_up: string | null } = { date_down: null, date_up: null };
  do {
    const page = await session.gateway.call(
      "/apartments/{apartment_id}/histories",
      { apartment_id: apartmentId },
      { ...window, ...(cursor ? { cursor } : {}) },
    );
    currency = page.currency;
    for (const bill of page.settled) {
      if (!byId.has(bill.bill_id)) fromServer += 1;
      byId.set(bill.bill_id, bill);
    }
    for (const refund of page.refunds) refundsById.set(refund.refund_id, refund);
    held = { date_down: page.date_down, date_up: page.date_up };
    cursor = page.next_cursor ?? undefined;
  } while (cursor);
  const refunds = [...refundsById.values()].sort((a, b) => (b.refunded_at ?? "").localeCompare(a.refunded_at ?? ""));
  const refundedWhole = new Set(refunds.filter((r) => r.whole).map((r) => r.payment_id));
  const settled = [...byId.values()]
    .filter((b) => !refundedWhole.has(b.payment_id))
    .sort((a, b) => b.paid_at.localeCompare(a.paid_at) || a.bill_id - b.bill_id);
  localStorage.setItem(key(user.id, apartmentId), JSON.stringify({ ...held, settled, refunds } satisfies Stored));
  return {
    settled,
    refunds,
    currency,
    fromStore,
    fromServer,
    window: held.date_down && held.date_up ? { date_down: held.date_down, date_up: held.date_up } : null,
  };
}
