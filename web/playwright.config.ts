// The browser tests: the built app, served by scripts/local-stack for the test profile
// (QBILL_WEB_URL), against the real gateway, queues and workers, in the OS's headless Chromium.
import { defineConfig } from "@playwright/test";

const baseURL = process.env.QBILL_WEB_URL;
if (!baseURL) throw new Error('QBILL_WEB_URL is not set: eval "$(scripts/local-stack env test)" first');

export default defineConfig({
  testDir: "tests",
  // One household's data, changed by the tests in order: one at a time.
  workers: 1,
  fullyParallel: false,
  retries: 0,
  timeout: 90_000,
  expect: { timeout: 30_000 },
  outputDir: "test-results/output",
  reporter: [["list"]],
  use: {
    baseURL,
    locale: "en-GB",
    timezoneId: "UTC",
    viewport: { width: 1100, height: 900 },
    trace: "retain-on-failure",
    screenshot: "only-on-failure",
    launchOptions: {
      executablePath: process.env.QBILL_CHROMIUM ?? "/usr/bin/chromium",
      // No calls home from the browser (the machine's network is closed).
      args: ["--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync"],
      chromiumSandbox: false,
    },
  },
});
