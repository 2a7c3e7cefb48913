// The household app as a person uses it, in headless Chromium, against the real gateway, queues,
// workers and database (the test profile of scripts/local-stack, demo data fresh from
// `qbill seed demo`). One session goes through the screens in order; each screen is kept as a
// screenshot in test-results/screens/.
import { type Page, type Request, expect, test } from "@playwright/test";
import { CARDS, Client, expectAccessible, fillCard } from "./support";

test.describe.configure({ mode: "serial" });

let page: Page;
let shots = 0;

/** Keeps a screenshot of the screen, and checks it for accessibility on the way. */
async function shot(name: string, target: Page = page, fullPage = true): Promise<void> {
  await expectAccessible(target);
  shots += 1;
  await target.screenshot({ path: `test-results/screens/${String(shots).padStart(2, "0")}-${name}.png`, fullPage });
}

/** The JSON bodies of the POSTs to a route (its path's end, or a pattern), as the browser sent them. */
function posts(target: Page, pathEnd: string | RegExp): Record<string, unknown>[] {
  const seen: Record<string, unknown>[] = [];
  target.on("request", (request: Request) => {
    const path = new URL(request.url()).pathname;
    if (request.method() === "POST" && (typeof pathEnd === "string" ? path.endsWith(pathEnd) : pathEnd.test(path))) {
      seen.push(JSON.parse(request.postData() ?? "{}") as Record<string, unknown>);
    }
  });
  return seen;
}

/** What the browser blocked (CORS, the CSP) or any script error: each test ends with none. */
const browserErrors: string[] = [];

function watch(target: Page): void {
  target.on("console", (message) => {
    if (message.type() === "error") browserErrors.push(message.text());
  });
  target.on("pageerror", (error) => browserErrors.push(String(error)));
}

test.beforeAll(async ({ browser }) => {
  page = await (await browser.newContext()).newPage();
  watch(page);
});

test.afterEach(() => {
  expect(browserErrors, "errors in the browser's console").toEqual([]);
});

test("a wrong password is refused, and says so", async () => {
  await page.goto("/");
  await expect(page.getByRole("heading", { name: "Log in" })).toBeVisible();
  await page.getByLabel("Username").fill("demo");
  await page.getByLabel("Password").fill("not-the-password");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByRole("alert")).toHaveText("Invalid username or password.");
  await shot("wrong-password");
});

test("demo logs in and sees the apartments", async () => {
  await page.getByLabel("Password").fill("demo-password");
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByRole("heading", { name: "Your apartments" })).toBeVisible();
  await expect(page.getByRole("link", { name: /12 Harbour Street, Flat 3/ })).toBeVisible();
  await expect(page.getByRole("link", { name: /7 Linden Avenue, Flat 11/ })).toBeVisible();
  await shot("apartments");
});

test("a duplicated tab gets a reply queue of its own, and logs in on its own", async () => {
  // A duplicated tab starts with a copy of the first one's sessionStorage.
  const copied = await page.evaluate(() => ({ ...sessionStorage }));
  const twin = await page.context().newPage();
  watch(twin);
  await twin.addInitScript((saved: Record<string, string>) => {
    if (!sessionStorage.getItem("qbill.copied")) {
      for (const [k, v] of Object.entries(saved)) sessionStorage.setItem(k, v);
      sessionStorage.setItem("qbill.copied", "1");
    }
  }, copied);
  await twin.goto("/");
  await expect(twin.getByRole("heading", { name: "Log in" })).toBeVisible();
  const twinQueue = await twin.evaluate(() => sessionStorage.getItem("qbill.queue"));
  expect(twinQueue).toMatch(/^[0-9a-f-]{36}$/);
  expect(twinQueue).not.toBe(copied["qbill.queue"]);
  await twin.close();
  // The first tab keeps its queue and its login.
  await page.reload();
  await expect(page.getByRole("heading", { name: "Your apartments" })).toBeVisible();
  expect(await page.evaluate(() => sessionStorage.getItem("qbill.queue"))).toBe(copied["qbill.queue"]);
});

test("a token about to expire is refreshed before the next request", async () => {
  const refreshes = posts(page, "/auth/refresh");
  const before = await page.evaluate(() => {
    const saved = JSON.parse(sessionStorage.getItem("qbill.session")!);
    saved.expires_at = new Date(Date.now() + 30_000).toISOString();
    sessionStorage.setItem("qbill.session", JSON.stringify(saved));
    return saved.token as string;
  });
  await page.reload();
  await page.getByRole("link", { name: /7 Linden Avenue, Flat 11/ }).click();
  await expect(page.getByText("12 unpaid bills")).toBeVisible();
  // One refresh (sent again only if its reply was slow: the same request).
  expect(new Set(refreshes.map((r) => r.request_id)).size).toBe(1);
  const after = await page.evaluate(() => JSON.parse(sessionStorage.getItem("qbill.session")!) as { token: string; expires_at: string });
  expect(after.token).not.toBe(before);
  expect(Date.parse(after.expires_at) - Date.now()).toBeGreaterThan(10 * 60_000);
  await page.getByRole("link", { name: "Apartments" }).click();
});

test("the debts of an apartment, grouped, with totals and the chart", async () => {
  await page.getByRole("link", { name: /12 Harbour Street, Flat 3/ }).click();
  await expect(page.getByRole("heading", { name: "12 Harbour Street, Flat 3", level: 1 })).toBeVisible();
  // August to October unpaid, four utilities: 12 bills.
  await expect(page.getByText("12 unpaid bills")).toBeVisible();
  await expect(page.getByTestId("total-due")).toHaveText(/^€[\d,]+\.\d\d$/);
  await expect(page.getByRole("heading", { name: /Northwind Energy/ })).toBeVisible();
  await expect(page.getByRole("heading", { name: /Clearwater Utilities/ })).toBeVisible();
  await expect(page.getByRole("group", { name: /Gas/ }).first()).toBeVisible();
  // The chart: a bar per month that has bills, May to October (settled and unpaid alike).
  const chart = page.getByTestId("chart");
  await expect(chart).toBeVisible();
  // The demo bills are May to October 2026, four utilities: a bar segment for each month of those
  // within the last twelve.
  const now = new Date();
  const shown = ["2026-05", "2026-06", "2026-07", "2026-08", "2026-09", "2026-10"].filter((m) => {
    const [y, mo] = m.split("-").map(Number);
    const monthsAgo = (now.getUTCFullYear() - y) * 12 + (now.getUTCMonth() + 1 - mo);
    return monthsAgo >= 0 && monthsAgo < 12;
  });
  await expect(chart.locator("rect")).toHaveCount(4 * shown.length);
  await expect(chart).toHaveAttribute("aria-label", /last twelve months by utility/);
  await shot("debts");
  // What web/README.md shows: the first screen of it.
  await shot("debts-first-screen", page, false);
});

let paymentId = "";

/** Chooses the first `count` bills of the debts page: their ids, and the total the Pay button says. */
async function choose(count: number): Promise<{ chosen: number[]; total: string }> {
  const boxes = page.getByRole("checkbox");
  const chosen: number[] = [];
  for (let i = 0; i < count; i++) {
    await boxes.nth(i).check();
    chosen.push(Number(await boxes.nth(i).getAttribute("value")));
  }
  await expect(page.getByText(new RegExp(`^${count} bills? chosen: €`))).toBeVisible();
  const total = (await page.getByRole("button", { name: /^Pay €/ }).textContent())!.replace("Pay ", "");
  return { chosen, total };
}

/** The form that pays by card. */
const cardForm = () => page.getByRole("region", { name: "Confirm the payment" });

/** The bill numbers the receipt on screen lists. */
async function receiptBills(): Promise<number[]> {
  return (await page.locator(".receipt tbody tr td:first-child").allTextContents()).map(Number);
}

test("pays two bills, chosen by keyboard, by card, and sees the receipt", async () => {
  const payments = posts(page, "/payments");
  const boxes = page.getByRole("checkbox");
  await boxes.nth(0).focus();
  await page.keyboard.press("Space");
  await boxes.nth(1).focus();
  await page.keyboard.press("Space");
  await expect(page.getByText(/^2 bills chosen: €/)).toBeVisible();
  const chosen = [await boxes.nth(0).getAttribute("value"), await boxes.nth(1).getAttribute("value")].map(Number);
  const pay = page.getByRole("button", { name: /^Pay €/ });
  const total = (await pay.textContent())!.replace("Pay ", "");
  await pay.click();
  // The card form: Stripe.js's card element (localstripe's stand-in), loaded as the CSP allows.
  const form = cardForm();
  await expect(form.getByRole("group", { name: "Card" })).toBeVisible();
  await fillCard(form, CARDS.good);
  await shot("card-form");
  await form.getByRole("button", { name: `Confirm: pay ${total}` }).click();
  await expect(page.getByRole("heading", { name: "Receipt" })).toBeVisible();
  await expect(page.getByTestId("receipt-total")).toHaveText(total);
  // The card was charged at once: the receipt says when.
  await expect(page.getByTestId("paid-at")).not.toHaveText(/not yet/);
  await expect(page.getByTestId("paid-at")).toHaveText(/\d{4}/);
  expect(await receiptBills()).toEqual(chosen);
  paymentId = (await page.getByTestId("payment-id").textContent())!;
  expect(paymentId).toMatch(/^[0-9a-f-]{36}$/);
  expect(new Set(payments.map((p) => p.request_id)).size).toBe(1);
  expect(payments[0].bills_id).toEqual(chosen);
  // The card went as the token's card, never as its number.
  expect(payments[0].payment_method).toMatch(/^card_[A-Za-z0-9_]+$/);
  expect(JSON.stringify(payments)).not.toContain(CARDS.good);
  await shot("receipt");

  await page.getByRole("button", { name: "Get the receipt as a PDF" }).click();
  const link = page.getByTestId("receipt-pdf");
  await expect(link).toBeVisible();
  const pdf = await page.request.get((await link.getAttribute("href"))!);
  expect(pdf.status()).toBe(200);
  expect((await pdf.body()).subarray(0, 5).toString()).toBe("%PDF-");
  await shot("receipt-pdf-link");
});

test("the payment is in the history, which the browser keeps and brings up to date", async () => {
  const histories = posts(page, "/histories");
  await page.getByRole("link", { name: "Payment history" }).first().click();
  const payment = page.locator(`[data-payment-id="${paymentId}"]`);
  await expect(payment).toBeVisible();
  await expect(payment.locator(".bill")).toHaveCount(2);
  // The debts page stored the 12 settled bills of May to July; the two just paid are the delta.
  const source = page.getByTestId("history-source");
  await expect(source).toHaveAttribute("data-from-store", "12");
  await expect(source).toHaveAttribute("data-from-server", "2");
  await shot("history");

  // Reload: the settled bills come from the browser's store, and the request asks only for what
  // lies outside the window it holds.
  const before = histories.length;
  await page.reload();
  await expect(page.locator(`[data-payment-id="${paymentId}"]`)).toBeVisible();
  const afterReload = page.getByTestId("history-source");
  const fromStore = Number(await afterReload.getAttribute("data-from-store"));
  const fromServer = Number(await afterReload.getAttribute("data-from-server"));
  // 12 settled in the demo data (May to July, four utilities), and the two just paid.
  expect(fromStore).toBe(14);
  expect(fromServer).toBe(0);
  const delta = histories.slice(before);
  expect(delta.length).toBeGreaterThan(0);
  expect(delta[0].date_down).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  expect(delta[0].date_up).toMatch(/^\d{4}-\d{2}-\d{2}$/);
  await shot("history-after-reload");

  // The statement of the last year, as a PDF.
  await page.getByRole("button", { name: "Get the statement" }).click();
  const statement = page.getByTestId("statement-link");
  await expect(statement).toBeVisible();
  const pdf = await page.request.get((await statement.getAttribute("href"))!);
  expect((await pdf.body()).subarray(0, 5).toString()).toBe("%PDF-");
  await shot("history-statement", page, false);

  // An operator gives back 1.00 of the payment: the history shows the refund above the payments,
  // and the payment's bills stay settled (a partial refund).
  const ops = new Client();
  await ops.logIn("ops", "ops-password");
  await ops.call(`/payments/${paymentId}/refund`, { amount: "1.00", reason: "estimated reading corrected" });
  await page.reload();
  const refunds = page.getByRole("region", { name: "Refunds" });
  await expect(refunds).toContainText("estimated reading corrected");
  await expect(refunds).toContainText("€1.00");
  await expect(page.locator(`[data-payment-id="${paymentId}"] .bill`)).toHaveCount(2);
  await shot("history-refund");
});

test("a declined card is refused in words; its bills stay payable, and another card pays them", async () => {
  await page.goto("/#/apartments/1");
  // 12 unpaid, 2 paid above.
  await expect(page.getByText("10 unpaid bills")).toBeVisible();
  const payments = posts(page, "/payments");
  const { chosen, total } = await choose(2);
  await page.getByRole("button", { name: `Pay ${total}` }).click();
  await fillCard(cardForm(), CARDS.declined);
  await cardForm().getByRole("button", { name: `Confirm: pay ${total}` }).click();

  // The refusal, in words, beside a fresh card form; read out and focused.
  const refused = cardForm().getByTestId("card-refused");
  await expect(refused).toHaveText("The card was declined by its bank. Try another card, or ask the bank why.");
  await expect(refused).toHaveAttribute("role", "alert");
  await expect(refused).toBeFocused();
  await expect(cardForm().getByRole("group", { name: "Another card" })).toBeVisible();
  await expect(cardForm().getByTestId("card-element").getByPlaceholder("number")).toHaveValue("");
  // The bills were shown afresh from the server: still unpaid, not reserved, still chosen.
  await expect(page.getByText("10 unpaid bills")).toBeVisible();
  await expect(page.getByText("A payment of it is under way")).toHaveCount(0);
  for (const id of chosen) {
    await expect(page.locator(`#bill-${id}`)).toBeChecked();
    await expect(page.locator(`#bill-${id}`)).toBeEnabled();
  }
  expect(payments.map((p) => p.bills_id)).toContainEqual(chosen);
  await shot("card-declined");
  await page.setViewportSize({ width: 390, height: 844 });
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await refused.scrollIntoViewIfNeeded();
  await shot("card-declined-phone", page, false);
  await page.setViewportSize({ width: 1100, height: 900 });

  // Another card pays the same bills.
  await fillCard(cardForm(), CARDS.good);
  await cardForm().getByRole("button", { name: `Confirm: pay ${total}` }).click();
  await expect(page.getByRole("heading", { name: "Receipt" })).toBeVisible();
  await expect(page.getByTestId("receipt-total")).toHaveText(total);
  expect(await receiptBills()).toEqual(chosen);
  // Two payments, each a request and a card of its own: the refused one is not sent again.
  const requests = new Set(payments.map((p) => p.request_id));
  expect(requests.size).toBe(2);
  const methods = new Set(payments.map((p) => p.payment_method));
  expect(methods.size).toBe(2);
  for (const m of methods) expect(m).toMatch(/^card_/);
  await page.getByRole("link", { name: "Back to the bills" }).click();
  await expect(page.getByText("8 unpaid bills")).toBeVisible();
});

test("a card whose bank asks: its check, then processing until the webhook settles it, found again after a lost reply and a reload", async () => {
  await page.goto("/#/apartments/1");
  await expect(page.getByText("8 unpaid bills")).toBeVisible();
  const payments = posts(page, "/payments");
  const reads = posts(page, /\/payments\/[0-9a-f-]{36}$/);
  // The payment's first reply is lost on the way: the app sends the same request again.
  let lost = false;
  await page.route("**/replies/**", async (route) => {
    const response = await route.fetch();
    const body = await response.text();
    if (!lost && body.includes('"kind":"payments"')) {
      lost = true;
      await route.fulfill({ response, body: '{"replies": []}' });
      return;
    }
    await route.fulfill({ response, body });
  });
  const { chosen, total } = await choose(2);
  await page.getByRole("button", { name: `Pay ${total}` }).click();
  await fillCard(cardForm(), CARDS.threeDSecure);
  await cardForm().getByRole("button", { name: `Confirm: pay ${total}` }).click();

  // The bank's check (localstripe's stand-in of Stripe's 3-D Secure page).
  const complete = page.getByRole("button", { name: "Complete authentication" });
  await expect(complete).toBeVisible();
  await expect(page.getByRole("button", { name: "Fail authentication" })).toBeVisible();
  expect(lost).toBe(true);
  expect(payments.length).toBeGreaterThanOrEqual(2);
  expect(new Set(payments.map((p) => p.request_id)).size).toBe(1);
  expect(new Set(payments.map((p) => p.payment_method)).size).toBe(1);
  await shot("card-3d-secure");
  await page.unroute("**/replies/**");

  // From here the payment route's answers are held back, so that the app still waits when the
  // webhook has settled the payment.
  let held = 0;
  await page.route("**/replies/**", async (route) => {
    const response = await route.fetch();
    const body = await response.text();
    if (body.includes('"kind":"payment"')) {
      held += 1;
      await route.fulfill({ response, body: '{"replies": []}' });
      return;
    }
    await route.fulfill({ response, body });
  });
  await complete.click();
  await expect(page.getByRole("heading", { name: "Payment", level: 1 })).toBeVisible();
  const state = page.getByTestId("payment-state");
  await expect(state).toHaveAttribute("data-status", "processing");
  await expect(state.getByRole("status")).toHaveText(/^Processing the payment/);
  const id = page.url().match(/\/payments\/([0-9a-f-]{36})$/)?.[1];
  expect(id, page.url()).toBeTruthy();
  await shot("card-processing");

  // The processor's webhook settles it (the household's payment, read from outside the browser).
  const outside = new Client();
  await outside.logIn("demo", "demo-password");
  let settled: Record<string, any> = {};
  await expect
    .poll(async () => (settled = await outside.call(`/apartments/1/payments/${id}`)).status, { timeout: 30_000, message: "the webhook settles the payment" })
    .toBe("succeeded");
  expect(settled.history.at(-1).via).toBe("webhook");
  expect(settled.history.map((s: { status: string }) => s.status)).toContain("requires_action");
  expect(settled.bills_id).toEqual(chosen);
  // The app has not heard of it yet: still processing.
  await expect.poll(() => held).toBeGreaterThan(0);
  await expect(state).toHaveAttribute("data-status", "processing");
  await expect(page.getByRole("heading", { name: "Receipt" })).toHaveCount(0);

  // Reloaded, the app asks the payment route and finds the payment settled. (A poll held at the
  // reload is cut short with the page: its handler's end is of no interest.)
  await page.unrouteAll({ behavior: "ignoreErrors" });
  const readsBefore = reads.length;
  await page.reload();
  await expect(page.getByRole("heading", { name: "Receipt" })).toBeVisible();
  expect(reads.length).toBeGreaterThan(readsBefore);
  expect(page.url()).toContain(`/receipts/${id}`);
  await expect(page.getByTestId("payment-id")).toHaveText(id!);
  await expect(page.getByTestId("receipt-total")).toHaveText(total);
  await expect(page.getByTestId("paid-at")).not.toHaveText(/not yet/);
  expect(await receiptBills()).toEqual(chosen);
  // One payment for it all: paid once.
  expect(new Set(payments.map((p) => p.request_id)).size).toBe(1);
  await shot("card-3d-secure-receipt");
  await page.getByRole("link", { name: "Back to the bills" }).click();
  await expect(page.getByText("6 unpaid bills")).toBeVisible();
});

test("a reply lost on the way is asked for again with the same request_id, and paid once", async () => {
  await page.goto("/#/apartments/2");
  await expect(page.getByText("12 unpaid bills")).toBeVisible();
  const payments = posts(page, "/payments");
  let dropped = false;
  await page.route("**/replies/**", async (route) => {
    const response = await route.fetch();
    const body = await response.text();
    if (!dropped && body.includes('"kind":"payments"')) {
      // The reply was read off the queue (so it is gone there) and never reached the app.
      dropped = true;
      await route.fulfill({ response, body: '{"replies": []}' });
      return;
    }
    await route.fulfill({ response, body });
  });
  await page.getByRole("checkbox").first().check();
  await page.getByRole("button", { name: /^Pay €/ }).click();
  await fillCard(cardForm(), CARDS.good);
  await page.getByRole("button", { name: /^Confirm: pay/ }).click();
  await expect(page.getByRole("heading", { name: "Receipt" })).toBeVisible();
  await page.unroute("**/replies/**");
  expect(dropped).toBe(true);
  expect(payments.length).toBeGreaterThanOrEqual(2);
  expect(new Set(payments.map((p) => p.request_id)).size).toBe(1);
  // Sent again as it was: the same card, which the engine does not charge twice.
  expect(new Set(payments.map((p) => p.payment_method)).size).toBe(1);
  expect(payments[0].payment_method).toMatch(/^card_/);
  const receipt = (await page.getByTestId("payment-id").textContent())!;
  await page.getByRole("link", { name: "Payment history" }).click();
  await expect(page.locator(`[data-payment-id="${receipt}"] .bill`)).toHaveCount(1);
  // Charged once: one bill fewer to pay, not two payments' worth.
  await page.goto("/#/apartments/2");
  await expect(page.getByText("11 unpaid bills")).toBeVisible();
});

test("another household's apartment is refused", async () => {
  await page.goto("/#/apartments/3");
  await expect(page.getByRole("alert")).toContainText("not yours");
  await shot("another-apartment");
});

test("logging out leaves no payment history in the browser", async () => {
  const kept = () => page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("qbill.history.")).length);
  expect(await kept()).toBeGreaterThan(0);
  await page.getByRole("button", { name: "Log out" }).click();
  await expect(page.getByRole("heading", { name: "Log in" })).toBeVisible();
  expect(await kept()).toBe(0);
});

test("usable on a phone", async ({ browser }) => {
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  watch(phone);
  await phone.goto("/");
  await phone.getByLabel("Username").fill("demo");
  await phone.getByLabel("Password").fill("demo-password");
  await phone.getByRole("button", { name: "Log in" }).click();
  await phone.getByRole("link", { name: /7 Linden Avenue, Flat 11/ }).click();
  await expect(phone.getByText("11 unpaid bills")).toBeVisible();
  await expect(phone.getByTestId("chart")).toBeVisible();
  // Nothing wider than the screen.
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await phone.getByRole("button", { name: "Gas" }).click();
  await expect(phone.getByText(/bills chosen: €/)).toBeVisible();
  await shot("phone-debts", phone);
  // The card form fits the screen too.
  await phone.getByRole("button", { name: /^Pay €/ }).click();
  const form = phone.getByRole("region", { name: "Confirm the payment" });
  await expect(form.getByTestId("card-element").getByPlaceholder("postal_code")).toBeVisible();
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await shot("phone-card-form", phone);
  await phone.close();
});
