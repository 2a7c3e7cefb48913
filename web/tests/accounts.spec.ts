// A household on its own, in the browser: it signs up, confirms its address from the mail's link,
// links a provider's account with the activation code of the paper bill, hears of the next bill
// in its inbox, saves a card and pays with it in one tap, sets a new password from a reset mail,
// and changes its address, which the old address's mail puts back.
import { type Page, expect, test } from "@playwright/test";
import { CARDS, Client, expectAccessible, fillCard, linkIn, mailTo, textTo } from "./support";

test.describe.configure({ mode: "serial" });

let page: Page;
const name = `web-${crypto.randomUUID().slice(0, 8)}`;
const email = `${name}@example.com`;
const account = `NW-W${crypto.randomUUID().slice(0, 6)}`;
const errors: string[] = [];

test.beforeAll(async ({ browser }) => {
  page = await (await browser.newContext()).newPage();
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
});

test.afterEach(() => {
  expect(errors, "errors in the browser's console").toEqual([]);
});

async function logIn(password: string): Promise<void> {
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Log in" }).click();
  await expect(page.getByRole("heading", { name: "Your apartments" })).toBeVisible();
}

test("signs up and confirms the address from the mail's link", async () => {
  await page.goto("/");
  await page.getByRole("link", { name: "Open an account" }).click();
  await page.getByLabel("Username").fill(name);
  await page.getByLabel("Email address").fill(email);
  await page.getByLabel("Password").fill("Tidal-Lantern-Oboe-58");
  await page.getByRole("button", { name: "Open the account" }).click();
  await expect(page.getByRole("status").filter({ hasText: "Your account is open" })).toBeVisible();
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/20-signup.png", fullPage: true });

  const link = linkIn(await mailTo(email, "Verify"), "verify-email");
  expect(link.startsWith(process.env.QBILL_WEB_URL!)).toBe(true);
  await page.goto(link);
  await expect(page.getByText(`${email} is confirmed.`)).toBeVisible();
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/21-verified.png", fullPage: true });
  await page.getByRole("link", { name: "Log in" }).click();
  await logIn("Tidal-Lantern-Oboe-58");
  await expect(page.getByText("No apartment yet")).toBeVisible();
});

test("links a provider's account with its activation code, and hears of the next bill", async () => {
  const northwind = new Client();
  await northwind.logIn("northwind", "northwind-password");
  const bill = (externalId: string, amount: string) => ({
    bills: [
      {
        external_id: `${account}-${externalId}`,
        account_number: account,
        address: "8 Mill Road",
        utility: "electricity",
        period_start: "2026-11-01",
        period_end: "2026-11-30",
        due_date: "2026-12-20",
        amount,
        currency: "EUR",
      },
    ],
  });
  const first = await northwind.call("/providers/1/bills", bill("1", "54.10"));
  const code = first.new_accounts[0].activation_code as string;

  await page.getByRole("link", { name: "Link an account" }).first().click();
  await page.getByLabel("Provider number").fill("1");
  await page.getByLabel("Account number").fill(account);
  await page.getByLabel("Activation code").fill(code);
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/22-link.png", fullPage: true });
  await page.getByRole("button", { name: "Link the account" }).click();
  await expect(page.getByRole("heading", { name: "8 Mill Road", level: 1 })).toBeVisible();
  await expect(page.getByText("1 unpaid bill", { exact: true })).toBeVisible();

  await northwind.call("/providers/1/bills", bill("2", "1234.50"));
  await page.getByRole("link", { name: "Inbox" }).click();
  await expect(page.getByRole("heading", { name: /New electricity bill from Northwind Energy: €1,234.50/ })).toBeVisible();
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/23-inbox.png", fullPage: true });
});

test("the bill mail's link opens the bill, which is paid from there", async () => {
  const text = await mailTo(email, "New electricity bill");
  const link = text.match(/https?:\/\/\S+\/apartments\/\d+\/bills\/\d+/)?.[0];
  expect(link, text).toBeTruthy();
  await page.goto(link!);
  await expect(page.getByRole("heading", { name: "Electricity bill, November 2026", level: 1 })).toBeVisible();
  await expect(page.getByTestId("bill-status")).toHaveText("Open");
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/24-bill.png", fullPage: true });
  const payments: Record<string, unknown>[] = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname.endsWith("/payments")) payments.push(JSON.parse(r.postData() ?? "{}"));
  });
  await page.getByRole("button", { name: "Pay €1,234.50" }).click();
  const form = page.getByRole("region", { name: "Confirm the payment" });
  await expect(form).toContainText("Pay this bill, €1,234.50?");
  await fillCard(form, CARDS.good);
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/24-bill-card.png", fullPage: true });
  await form.getByRole("button", { name: "Confirm: pay €1,234.50" }).click();
  await expect(page.getByRole("heading", { name: "Receipt" })).toBeVisible();
  await expect(page.getByTestId("receipt-total")).toHaveText("€1,234.50");
  await expect(page.getByTestId("paid-at")).not.toHaveText(/not yet/);
  expect(payments.length).toBeGreaterThan(0);
  expect(payments[0].payment_method).toMatch(/^card_/);
  // The bill's page says it is paid.
  await page.goBack();
  await expect(page.getByTestId("bill-status")).toHaveText("Paid");
});

test("chooses its notifications on the profile page the mails link to", async () => {
  await page.goto("/profile");
  await expect(page.getByRole("heading", { name: "Your account" })).toBeVisible();
  const newBillMail = page.getByRole("checkbox", { name: "A new bill: by mail" });
  await expect(newBillMail).toBeChecked();
  await expect(page.getByRole("checkbox", { name: "Changes to the account (always by mail): by mail", exact: true })).toBeDisabled();
  await newBillMail.uncheck();
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByText("Saved.")).toBeVisible();
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/25-profile.png", fullPage: true });
  await page.reload();
  await expect(page.getByRole("checkbox", { name: "A new bill: by mail" })).not.toBeChecked();
  await expect(page.getByRole("checkbox", { name: "A new bill: in the inbox" })).toBeChecked();
});

test("adds a phone, verifies it with the texted code, and turns texts on for bills due soon", async () => {
  await page.goto("/profile");
  const dueByText = page.getByRole("checkbox", { name: "A bill due within 3 days: by text" });
  await expect(dueByText).toBeDisabled();
  const phone = `+4477009${String(Math.floor(Math.random() * 100000)).padStart(5, "0")}`;
  await page.getByLabel("Phone", { exact: true }).fill(`${phone.slice(0, 3)} ${phone.slice(3, 7)} ${phone.slice(7)}`);
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByText(`We texted a six-digit code to ${phone}`)).toBeVisible();
  await expect(page.getByLabel("Phone", { exact: true })).toHaveValue(phone);
  await page.screenshot({ path: "test-results/screens/26-profile-phone-code.png", fullPage: true });
  const code = (await textTo(phone)).match(/\b\d{6}\b/)?.[0];
  expect(code, "a code in the text").toBeDefined();
  await page.getByLabel("Code").fill(code!);
  await page.getByRole("button", { name: "Verify" }).click();
  await expect(page.getByText(`Your phone ${phone} is verified`)).toBeVisible();
  await expect(dueByText).toBeEnabled();
  await dueByText.check();
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByText("Saved.")).toBeVisible();
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/27-profile-phone.png", fullPage: true });
  await page.reload();
  await expect(page.getByLabel("Phone", { exact: true })).toHaveValue(phone);
  await expect(page.getByRole("checkbox", { name: "A bill due within 3 days: by text" })).toBeChecked();
});

test("saves a card on the profile, pays the other bill with it in one tap, and removes it", async () => {
  await page.goto("/profile");
  const cards = page.getByRole("region", { name: "Cards" });
  await expect(cards.getByText("No card saved yet.")).toBeVisible();
  await cards.getByRole("button", { name: "Add a card" }).click();
  await fillCard(cards, CARDS.good);
  await cards.getByRole("button", { name: "Save the card" }).click();
  await expect(cards.getByText(/^Saved: .* ending 4242, expires 12\/34\.$/)).toBeVisible();
  await expect(cards.getByTestId("saved-card")).toHaveCount(1);
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/25a-cards.png", fullPage: true });

  // The bill left to pay (54.10), in one tap with the saved card: no card typed.
  const payments: Record<string, unknown>[] = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && new URL(r.url()).pathname.endsWith("/payments")) payments.push(JSON.parse(r.postData() ?? "{}"));
  });
  await page.goto("/");
  await page.getByRole("link", { name: /8 Mill Road/ }).click();
  await page.getByRole("checkbox").first().check();
  await page.getByRole("button", { name: "Pay €54.10" }).click();
  const oneTap = page.getByTestId("pay-saved");
  await expect(oneTap).toHaveText(/^Pay €54\.10 with .* ending 4242, expires 12\/34$/);
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/25b-pay-saved.png", fullPage: true });
  await oneTap.click();
  await expect(page.getByRole("heading", { name: "Receipt" })).toBeVisible();
  await expect(page.getByTestId("receipt-total")).toHaveText("€54.10");
  expect(payments).toHaveLength(1);
  expect(payments[0].payment_method).toMatch(/^pm_[A-Za-z0-9_]+$/);

  // Removed: gone from the profile, and from the next payment's form.
  await page.goto("/profile");
  await cards.getByRole("button", { name: /^Remove .* ending 4242/ }).click();
  await expect(cards.getByText(/^Removed: .* ending 4242/)).toBeVisible();
  await expect(cards.getByText("No card saved yet.")).toBeVisible();
});

test("sets a new password from the reset mail, and logs in with it; other sessions end", async ({ browser }) => {
  // Another device, logged in before the reset.
  const other = await (await browser.newContext()).newPage();
  await other.goto("/");
  await other.getByLabel("Username").fill(name);
  await other.getByLabel("Password").fill("Tidal-Lantern-Oboe-58");
  await other.getByRole("button", { name: "Log in" }).click();
  await expect(other.getByRole("heading", { name: "Your apartments" })).toBeVisible();

  await page.getByRole("button", { name: "Log out" }).click();
  await page.getByRole("link", { name: "Forgot your password?" }).click();
  await page.getByLabel("Email address").fill(email);
  await page.getByRole("button", { name: "Send me a link" }).click();
  await expect(page.getByText("if an account has this address, a mail with a link to choose a new password is on its way")).toBeVisible();

  await page.goto(linkIn(await mailTo(email, "Reset"), "reset-password"));
  await page.getByLabel("New password").fill("Quiet-Harbour-Violet-91");
  await page.getByRole("button", { name: "Set the password" }).click();
  await page.getByRole("link", { name: "Log in" }).click();
  await logIn("Quiet-Harbour-Violet-91");
  await expect(page.getByRole("link", { name: /8 Mill Road/ })).toBeVisible();

  // The other device's token is refused from its next request on: it is sent to log in again.
  await other.getByRole("link", { name: "Inbox" }).click();
  await expect(other.getByRole("heading", { name: "Log in" })).toBeVisible();
  await expect(other.getByText(/Your session has ended/)).toBeVisible();
  await expectAccessible(other);
  await other.screenshot({ path: "test-results/screens/26-session-ended.png", fullPage: true });
  await other.close();
});

test("changes the address with its password; the old address's mail puts it back and signs every device out", async ({ browser }) => {
  const password = "Quiet-Harbour-Violet-91";
  const moved = `${name}-new@example.com`;
  await page.goto("/profile");
  await expect(page.getByRole("heading", { name: "Your account" })).toBeVisible();
  // The password is asked for only when the address changes.
  await expect(page.getByLabel("Current password")).toBeHidden();
  await page.getByLabel("Email address").fill(moved);
  const current = page.getByLabel("Current password");
  await expect(current).toBeVisible();
  await expect(current).toHaveAttribute("autocomplete", "current-password");

  await current.fill("not-the-password-at-all");
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByRole("alert")).toHaveText("Nothing was changed: the current password is wrong.");
  await expect(current).toBeFocused();
  await expect(current).toHaveValue("");
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/27-address-wrong-password.png", fullPage: true });
  await page.setViewportSize({ width: 390, height: 844 });
  expect(await page.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await page.screenshot({ path: "test-results/screens/27-address-wrong-password-phone.png", fullPage: true });
  await page.setViewportSize({ width: 1100, height: 900 });

  await current.fill(password);
  await page.getByRole("button", { name: "Save" }).click();
  await expect(page.getByRole("status").filter({ hasText: `We sent a link to ${moved} to confirm it.` })).toContainText(
    `${email} was told of the change, with a link that puts it back within 7 days.`,
  );
  await expect(page.getByText("address not confirmed yet")).toBeVisible();
  await expect(current).toBeHidden();
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/28-address-changed.png", fullPage: true });
  linkIn(await mailTo(moved, "Verify"), "verify-email");

  // The old address's mail, opened on a phone that was never logged in.
  const undo = linkIn(await mailTo(email, "The email address of your qbill account was changed"), "undo-email");
  const phone = await (await browser.newContext({ viewport: { width: 390, height: 844 }, isMobile: true, hasTouch: true })).newPage();
  phone.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  phone.on("pageerror", (e) => errors.push(String(e)));
  await phone.goto(undo);
  await expect(phone.getByRole("heading", { name: "Undo the address change", level: 1 })).toBeFocused();
  const form = phone.getByRole("form", { name: "Put your previous address back and sign out every device?" });
  await expect(form).toBeVisible();
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await expectAccessible(phone);
  await phone.screenshot({ path: "test-results/screens/29-undo-email.png", fullPage: true });
  await form.getByRole("button", { name: "Put it back and sign out" }).click();
  await expect(phone.getByRole("status").filter({ hasText: `${email} is your account's address again` })).toContainText("Every device was signed out.");
  await expect(phone.getByRole("status").filter({ hasText: "address again" })).toBeFocused();
  const reset = phone.getByRole("link", { name: "Reset your password" });
  await expect(reset).toBeVisible();
  expect(await phone.evaluate(() => document.documentElement.scrollWidth)).toBeLessThanOrEqual(390);
  await expectAccessible(phone);
  await phone.screenshot({ path: "test-results/screens/30-undo-email-done.png", fullPage: true });
  await reset.click();
  await expect(phone.getByRole("heading", { name: "Forgot your password?" })).toBeVisible();
  await phone.close();

  // The tab that made the change was signed out with every other device.
  await page.getByRole("link", { name: "Inbox" }).click();
  await expect(page.getByRole("heading", { name: "Log in" })).toBeVisible();
  await expect(page.getByText(/Your session has ended/)).toBeVisible();
  await logIn(password);
  await page.goto("/profile");
  await expect(page.getByLabel("Email address")).toHaveValue(email);
  await expect(page.getByText("address confirmed")).toBeVisible();

  // Wrong passwords count like failed logins: after a few, the server refuses for a while, and
  // says how long.
  await page.getByLabel("Email address").fill(moved);
  const alert = page.getByRole("alert");
  for (let attempt = 1; attempt <= 8; attempt++) {
    await current.fill(`wrong-password-${attempt}`);
    await page.getByRole("button", { name: "Save" }).click();
    await expect(alert).toHaveText(/^Nothing was changed: (the current password is wrong|too many failed logins)/);
    if ((await alert.textContent())?.includes("too many failed logins")) break;
  }
  await expect(alert).toHaveText(/^Nothing was changed: too many failed logins .*; try again later \(in \d+ min\)\.$/);
  await expectAccessible(page);
  await page.screenshot({ path: "test-results/screens/31-address-locked.png", fullPage: true });
});
