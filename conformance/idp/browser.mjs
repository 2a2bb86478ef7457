// A person in a real browser (Debian's Chromium, driven by playwright-core) goes through
// Carnet's sign-in: the sign-in choice, the upstream provider's login and consent pages, the
// patient choice and the approval. Prints {"url": ...}: where the app was sent back to.
// Usage: node browser.mjs AUTHORIZE_URL REDIRECT_PREFIX LOGIN INS SCREENSHOT_DIR
import { chromium } from "playwright-core";

const [authorizeUrl, redirectPrefix, login, ins, shots] = process.argv.slice(2);
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
  headless: true,
  args: [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
});
try {
  const page = await browser.newPage();
  page.setDefaultTimeout(20000);
  const back = page.waitForRequest((r) => r.url().startsWith(redirectPrefix), { timeout: 60000 });
  await page.goto(authorizeUrl);
  await page.click("#signin-psc");
  // oidc-provider's own login and consent pages.
  await page.fill('input[name="login"]', login);
  await page.fill('input[name="password"]', "any");
  await page.click('button[type="submit"]');
  await page.waitForSelector('button[type="submit"]');
  if (!(await page.isVisible("#ins"))) {
    await page.click('button[type="submit"]');
  }
  // Carnet's pages.
  await page.fill("#ins", ins);
  await page.click("#choose");
  await page.waitForSelector("#allow");
  await page.screenshot({ path: `${shots}/consent.png` });
  const user = await page.textContent("#user");
  await page.click("#allow");
  const request = await back;
  console.log(JSON.stringify({ url: request.url(), user }));
} finally {
  await browser.close();
}
