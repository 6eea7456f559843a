import { test, expect, Page } from "@playwright/test";
import { PASSWORD } from "../servers";

async function signIn(page: Page, name: string, password = PASSWORD) {
  await page.goto("/sign-in");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Sign in" }).click();
  if (password === PASSWORD) await expect(page).not.toHaveURL(/\/sign-in/);
}

async function signOut(page: Page) {
  await page.getByRole("button", { name: "Sign out" }).click();
  await expect(page).toHaveURL(/\/sign-in/);
}

test("an unsigned visitor is sent to sign in, and signs in", async ({ page }) => {
  await page.goto("/users");
  await expect(page).toHaveURL(/\/sign-in\?next=(%2F|\/)users$/);
  await page.getByLabel("User name").fill("admin");
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/users$/);
  await expect(page.getByRole("heading", { name: "Users", exact: true })).toBeVisible();
  await signOut(page);
});

test("a wrong password says so and does not sign in", async ({ page }) => {
  await signIn(page, "viewer", "not the password");
  await expect(page.getByRole("alert")).toContainText("Wrong user name or password");
  await expect(page).toHaveURL(/\/sign-in/);
});

test("an admin creates an operator, who cannot open Users; the denial is audited", async ({ page }) => {
  await signIn(page, "admin");
  await page.goto("/users");
  await page.getByLabel("User name", { exact: true }).fill("olga");
  await page.getByLabel("Initial password").fill(PASSWORD);
  await page.getByRole("checkbox", { name: /^operator/ }).first().check();
  await page.getByRole("button", { name: "Create user" }).click();
  await expect(page.getByRole("status")).toContainText("User created");
  await expect(page.getByRole("rowheader", { name: "olga" })).toBeVisible();
  await signOut(page);

  await signIn(page, "olga");
  await expect(page.getByRole("heading", { name: /Welcome, olga/ })).toBeVisible();
  await expect(page.getByRole("link", { name: "Users" })).toHaveCount(0);
  await page.goto("/users");
  await expect(page.getByRole("alert")).toContainText("not allowed to list users");
  await signOut(page);

  await signIn(page, "auditor");
  await page.goto("/audit?actor=olga");
  await expect(page.getByRole("cell", { name: /auth.access_denied/ }).first()).toBeVisible();
  await signOut(page);
});

test("an auditor exports CSV and verifies the chain", async ({ page }) => {
  await signIn(page, "auditor");
  await page.goto("/audit");
  await expect(page.getByRole("heading", { name: "Audit log" })).toBeVisible();
  const download = page.waitForEvent("download");
  await page.getByRole("link", { name: "Export CSV" }).click();
  const file = await download;
  const path = await file.path();
  const text = require("node:fs").readFileSync(path, "utf8") as string;
  expect(text.split("\n")[0]).toBe("seq,time,code,event,actor,subject,source,details,prev_hash,hash");
  expect(text).toContain("auth.sign_in");
  await page.getByRole("button", { name: "Verify chain" }).click();
  await expect(page.getByRole("status")).toContainText("The chain is intact");
  await page.screenshot({ path: "../docs/audit.png", fullPage: true });
});

test("a cross-site form post is refused", async ({ request }) => {
  const res = await request.post("/api/users/create", {
    headers: { Origin: "http://evil.example", "Content-Type": "application/x-www-form-urlencoded" },
    data: "name=x&password=yyyyyyyyyyyyyy",
  });
  expect(res.status()).toBe(403);
});

test("script in a user name is refused and nothing is created", async ({ page }) => {
  await signIn(page, "admin");
  await page.goto("/users");
  const res = await page.request.post("/api/users/create", {
    form: { name: "<script>alert(1)</script>", password: PASSWORD },
  });
  expect(res.status()).toBe(400);
  await page.reload();
  await expect(page.getByText("<script>")).toHaveCount(0);
  await page.screenshot({ path: "../docs/users.png", fullPage: true });
});

test("an unknown page is a 404 with a way back", async ({ page }) => {
  const res = await page.goto("/no-such-page");
  expect(res?.status()).toBe(404);
  await expect(page.getByRole("heading", { name: "There is no such page" })).toBeVisible();
});

// Last: it throttles every later sign-in from this address.
test("repeated failures lock the account", async ({ page }) => {
  test.setTimeout(90_000);
  // A name that exists nowhere: the account key is throttled all the same.
  await page.goto("/sign-in");
  let locked = false;
  for (let i = 0; i < 12 && !locked; i++) {
    await page.getByLabel("User name").fill("mallory");
    await page.getByLabel("Password").fill(`guess ${i}`);
    await page.getByRole("button", { name: "Sign in" }).click();
    const alert = page.getByRole("alert");
    await expect(alert).toBeVisible();
    const text = (await alert.textContent()) ?? "";
    if (/Try again in (\d+) s/.test(text)) {
      const secs = Number(/Try again in (\d+) s/.exec(text)![1]);
      if (secs > 60) locked = true;
      else await page.waitForTimeout(secs * 1000 + 200);
    }
  }
  expect(locked).toBe(true);
});
