import { test, expect, Page, Browser } from "@playwright/test";
import { PASSWORD } from "../servers";

async function signIn(page: Page, name: string) {
  await page.goto("/sign-in");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).not.toHaveURL(/\/sign-in/);
}

/// Opens /peers and waits until the page is interactive (the copy button is
/// enabled only after hydration), so forms are sent by the page itself.
async function openPeers(page: Page) {
  await page.goto("/peers");
  await expect(page.getByRole("heading", { name: "Peers", exact: true })).toBeVisible();
  await expect(page.getByRole("button", { name: "Copy fingerprint" })).toBeEnabled();
}

async function asViewer(browser: Browser, check: (page: Page) => Promise<void>) {
  const context = await browser.newContext();
  const page = await context.newPage();
  await signIn(page, "viewer");
  await check(page);
  await context.close();
}

test("an admin hands out our fingerprint, adds, edits, tests and removes a peer; a viewer only looks", async ({
  page,
  context,
  browser,
}) => {
  await context.grantPermissions(["clipboard-read", "clipboard-write"]);
  await signIn(page, "admin");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Peers" }).click();
  await expect(page).toHaveURL(/\/peers$/);
  await openPeers(page);

  // This server: what to give a peer's administrator.
  const card = page.getByRole("region", { name: "This server" });
  await expect(card).toContainText("corp.example");
  await expect(card).toContainText("https://127.0.0.1:");
  const fingerprint = (await card.getByLabel("Fingerprint (SHA-256 of our public key)").textContent())!.trim();
  expect(fingerprint).toMatch(/^[0-9a-f]{64}$/);
  await card.getByRole("button", { name: "Copy fingerprint" }).click();
  await expect(card.getByRole("status")).toHaveText("Copied to the clipboard.");
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe(fingerprint);

  // Other specs may have configured peers of their own on this server.
  await expect(page.getByRole("row", { name: /partner\.example/ })).toHaveCount(0);

  // Add: a fingerprint that is not 64 hex digits is refused beside its field.
  const add = page.getByRole("region", { name: "Add a peer" });
  await add.getByLabel("ServerID").fill("partner.example");
  await add.getByLabel("Peer URL").fill("https://127.0.0.1:1");
  await add.getByLabel("DM URL").fill("https://partner.example/dm");
  await add.getByLabel("Fingerprint").fill("abc123");
  await add.getByRole("button", { name: "Add peer" }).click();
  const fp = add.getByLabel("Fingerprint");
  await expect(fp).toHaveAttribute("aria-invalid", "true");
  await expect(fp).toHaveAccessibleDescription(/SHA-256 of the peer's public key: 64 hex digits/);
  await expect(page.getByRole("row", { name: /partner\.example/ })).toHaveCount(0);

  await fp.fill("12".repeat(32));
  await add.getByRole("button", { name: "Add peer" }).click();
  await expect(add.getByRole("status")).toContainText("Peer added");
  await expect(fp).toHaveAttribute("aria-invalid", "false");
  const row = page.getByRole("row", { name: /partner\.example/ });
  await expect(row).toContainText("https://127.0.0.1:1");
  await expect(row.getByText("12121212…1212")).toHaveAttribute("title", "12".repeat(32));
  await expect(row).toContainText("none: a person approves");

  // Edit: a bad policy is refused in the form; a good one is summarised.
  await row.getByText("Edit").click();
  await row.getByLabel("DM URL").fill("https://partner.example/dm2");
  const policy = row.getByLabel("Auto-accept policy");
  await policy.fill('{"name":""}');
  await row.getByRole("button", { name: "Save changes to partner.example" }).click();
  await expect(policy).toHaveAttribute("aria-invalid", "true");
  await expect(policy).toHaveAccessibleDescription(/needs a name/);
  await policy.fill('{"name":"corp-apps","types":["partial"],"max_days":30}');
  await row.getByRole("button", { name: "Save changes to partner.example" }).click();
  await expect(page.getByRole("status").filter({ hasText: "Peer saved" })).toBeVisible();
  await expect(row).toContainText("https://partner.example/dm2");
  await expect(row).toContainText("corp-apps: any role · partial · any term · at most 30 days");

  // Test connection: nothing listens there, and the page says so in plain words.
  await row.getByRole("button", { name: "Test connection to partner.example" }).click();
  await expect(page.getByRole("alert")).toContainText("partner.example: unreachable");
  await page.screenshot({ path: "../docs/peers.png", fullPage: true });

  // A viewer sees the peers but no controls.
  await asViewer(browser, async (v) => {
    await v.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Peers" }).click();
    await openPeers(v);
    const vrow = v.getByRole("row", { name: /partner\.example/ });
    await expect(vrow).toContainText("corp-apps");
    await expect(v.getByRole("region", { name: "Add a peer" })).toHaveCount(0);
    await expect(v.getByRole("button", { name: /Test connection/ })).toHaveCount(0);
    await expect(v.getByRole("button", { name: /remove/i })).toHaveCount(0);
    await expect(vrow.getByText("Edit")).toHaveCount(0);
    await expect(vrow.getByText("Remove…")).toHaveCount(0);
  });

  // Remove, after confirming.
  await row.getByText("Remove…").click();
  await row.getByRole("button", { name: "Yes, remove partner.example" }).click();
  await expect(page.getByRole("status").filter({ hasText: "Peer removed" })).toBeVisible();
  await expect(page.getByRole("row", { name: /partner\.example/ })).toHaveCount(0);
});

test("a user who is neither viewer nor admin has no Peers page", async ({ page }) => {
  await signIn(page, "auditor");
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Peers" })).toHaveCount(0);
  await page.goto("/peers");
  await expect(page.getByRole("alert")).toContainText("not allowed to see peers");
});
