import { test, expect, Page } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PASSWORD, cli, loadState } from "../servers";

// Devices of these tests, a peer that never answers (deliveries are retried,
// so a delegation stays mid-way), an operator and an approver with API tokens.
const devid = (i: number) => `IMEI:3569990000${String(i).padStart(5, "0")}`;
const nonce = (s: string) => Buffer.from(s.padEnd(24, "x").slice(0, 24), "ascii").toString("base64");
const PEER = "carrier.example";
const TREE = JSON.stringify([
  { uri: ".", kind: "interior", format: "node", type: "", value: "", acl: "Add=*&Get=*&Replace=corp.example" },
  { uri: "./Vendor", kind: "interior", format: "node", type: "", value: "", acl: "Get=corp.example&Replace=corp.example" },
]);
const BASE = "http://127.0.0.1:3400";
let opToken = "";
let apToken = "";

function sql(dataDir: string, statement: string) {
  const r = spawnSync("sqlite3", [join(dataDir, "handover.db"), statement], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`sqlite3 failed: ${r.stderr}`);
}

// Once per server, even when a failed test restarts the worker.
function once(f: () => void) {
  try {
    f();
  } catch (e) {
    if (!String(e).includes("already")) throw e;
  }
}

test.beforeAll(() => {
  const { dataDir } = loadState();
  once(() => cli(dataDir, ["admin", "user", "create", "live-olga", "--role", "operator", "--role", "viewer", "--password-stdin"], PASSWORD + "\n"));
  once(() => cli(dataDir, ["admin", "user", "create", "live-abe", "--role", "approver", "--role", "viewer", "--password-stdin"], PASSWORD + "\n"));
  once(() => cli(dataDir, [
    "admin", "peer", "add", "--server-id", PEER, "--url", "https://127.0.0.1:9",
    "--dm-url", "http://127.0.0.1:9/dm", "--fingerprint", "cd".repeat(32),
  ]));
  const lines = ["devid,auth,client_name,client_secret,client_nonce,server_name,server_secret,server_nonce,push_address"];
  for (let i = 1; i <= 14; i++) {
    lines.push([devid(i), "md5", `c${i}`, `client secret ${i}`, nonce(`cn ${i}`), "corp.example", `server secret ${i}`, nonce(`sn ${i}`), ""].join(","));
  }
  const file = join(dataDir, "live-devices.csv");
  writeFileSync(file, lines.join("\n") + "\n");
  cli(dataDir, ["admin", "devices", "import", file]);
  sql(
    dataDir,
    `UPDATE devices SET authority = 'corp.example', state = 'active' WHERE devid LIKE 'IMEI:3569990000%';
     INSERT INTO device_inventory (devid, tree) SELECT devid, '${TREE}' FROM devices WHERE devid LIKE 'IMEI:3569990000%' ON CONFLICT (devid) DO UPDATE SET tree = excluded.tree;`,
  );
  opToken = cli(dataDir, ["admin", "token", "create", "--user", "live-olga"]).trim();
  apToken = cli(dataDir, ["admin", "token", "create", "--user", "live-abe"]).trim();
});

async function api(token: string, path: string, body: object = {}) {
  const r = await fetch(BASE + path, {
    method: "POST",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  const v = await r.json();
  if (!r.ok) throw new Error(`${path}: ${r.status} ${JSON.stringify(v)}`);
  return v;
}

async function request(devices: string[]): Promise<{ batch_id: number; delegations: number[] }> {
  return api(opToken, "/api/v1/delegations", {
    devices, peer: PEER, type: "partial", term: "permanent", reason: "ticket 42",
    scope: [{ uri: "./Vendor", rights: ["Get", "Replace"] }],
  });
}

async function signIn(page: Page, name: string) {
  await page.goto("/sign-in");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

test("a delegation's page follows it live, and its requester aborts and retries it", async ({ page }) => {
  const { delegations: [id] } = await request([devid(1)]);
  await signIn(page, "live-olga");
  await page.goto(`/delegations/${id}`);
  await expect(page.getByTestId("state")).toHaveText("AwaitingRequestApproval");
  await expect(page.getByTestId("timeline").locator("[data-status=now]")).toContainText("waiting for an approver at corp.example since");
  await expect(page.getByTestId("live")).toContainText("Live");
  // Anything that reloads the page would drop this.
  await page.evaluate(() => ((window as any).stillHere = true));

  await api(apToken, `/api/v1/delegations/${id}/approve`);
  await expect(page.getByTestId("state")).toHaveText("AwaitingAuthChallenge");
  await expect(page.getByTestId("timeline").locator("[data-status=now]")).toContainText(
    "waiting for carrier.example to prove who it is (AuthChallenge)",
  );
  await expect(page.getByTestId("sequence").locator("[data-message=Notification]")).toBeVisible();
  // The peer never answers: the retries show as they happen.
  await expect(page.getByTestId("sequence")).toContainText(/retrying · \d+ attempts?/, { timeout: 15_000 });
  await expect(page.getByText("approved by live-abe")).toBeVisible();
  expect(await page.evaluate(() => (window as any).stillHere)).toBe(true);
  await page.screenshot({ path: "../docs/delegation-live.png", fullPage: true });

  await page.getByPlaceholder("Reason (optional)").fill("wrong device");
  await page.getByRole("button", { name: "Abort" }).click();
  await expect(page.getByTestId("state")).toHaveText("Aborted");
  await expect(page.getByTestId("timeline").locator("[data-status=stopped]")).toContainText("wrong device");
  await page.getByRole("button", { name: "Retry as a new request" }).click();
  await expect(page).toHaveURL(new RegExp(`/delegations/(?!${id}$)\\d+$`));
  await expect(page.getByTestId("state")).toHaveText("AwaitingRequestApproval");

  // The device page shows the history and who manages what.
  await page.goto(`/devices/${encodeURIComponent(devid(1))}`);
  await expect(page.getByTestId("delegation-history").getByRole("link")).toHaveCount(2);
  await expect(page.getByTestId("ownership")).toContainText("corp.example");
});

test("a viewer watches without controls", async ({ page }) => {
  const { delegations: [id] } = await request([devid(2)]);
  await signIn(page, "viewer");
  await page.goto(`/delegations/${id}`);
  await expect(page.getByTestId("state")).toHaveText("AwaitingRequestApproval");
  await expect(page.getByRole("button", { name: "Abort" })).toHaveCount(0);
  await expect(page.getByTestId("live")).toContainText("Live");
  await api(opToken, `/api/v1/delegations/${id}/abort`, { reason: "not needed" });
  await expect(page.getByTestId("state")).toHaveText("Aborted");
  await expect(page.getByRole("button", { name: /Retry/ })).toHaveCount(0);
});

test("a batch's progress and the time from an event to the browser", async ({ page }) => {
  const devices = [3, 4, 5, 6, 7, 8, 9, 10, 11, 12].map(devid);
  const { batch_id, delegations } = await request(devices);
  await signIn(page, "viewer");
  await page.goto(`/batches/${batch_id}`);
  await expect(page.getByTestId("progress")).toContainText("0 completed · 0 ended · 10 running · 10 in all");
  await expect(page.getByTestId("live")).toContainText("Live");
  // Record when each event reaches the page's own stream (its "live" line).
  await page.evaluate(() => {
    const w = window as any;
    w.lags = [];
    const el = document.querySelector("[data-testid=live]")!;
    new MutationObserver(() => {
      const at = Number(el.getAttribute("data-at"));
      if (at) w.lags.push(Date.now() - at);
    }).observe(el, { attributes: true, attributeFilter: ["data-at"] });
  });
  for (const id of delegations) {
    await api(apToken, `/api/v1/delegations/${id}/approve`);
    await api(opToken, `/api/v1/delegations/${id}/abort`, { reason: "measuring" });
  }
  await expect(page.getByTestId("progress")).toContainText("0 completed · 10 ended · 0 running · 10 in all");
  const lags: number[] = await page.evaluate(() => (window as any).lags);
  expect(lags.length).toBeGreaterThanOrEqual(20);
  const sorted = [...lags].sort((a, b) => a - b);
  const p95 = sorted[Math.ceil(sorted.length * 0.95) - 1];
  console.log(`event → browser over ${lags.length} events: median ${sorted[Math.floor(sorted.length / 2)]} ms, p95 ${p95} ms, max ${sorted[sorted.length - 1]} ms`);
  expect(p95).toBeLessThanOrEqual(100);
});

test.describe("in the reader's time zone", () => {
  test.use({ timezoneId: "Asia/Kolkata" });

  test("times of day are local with UTC on hover, delegations sort by column, a batch is approved in one go", async ({ page, browser }) => {
    const { batch_id, delegations: [first] } = await request([devid(13), devid(14)]);
    await signIn(page, "live-olga");

    // "waiting … since HH:MM:SS": the clock in Asia/Kolkata (UTC+05:30).
    await page.goto(`/delegations/${first}`);
    const since = page.getByTestId("timeline").locator("[data-status=now] p").nth(1).locator("time");
    await expect(since).toHaveAttribute("title", / UTC$/);
    const ms = Number(await since.getAttribute("datetime"));
    const local = new Intl.DateTimeFormat("en-GB", {
      timeZone: "Asia/Kolkata", hour: "2-digit", minute: "2-digit", second: "2-digit", hourCycle: "h23",
    }).format(new Date(ms));
    await expect(since).toHaveText(local);
    expect(await since.getAttribute("title")).not.toContain(local);

    // The batch's delegations, sorted by device both ways.
    await page.goto(`/delegations?batch=${batch_id}`);
    const table = page.getByRole("table", { name: "Delegations" });
    const devices = () => table.locator("tbody tr td:first-child").allTextContents();
    await table.getByRole("link", { name: "Device" }).click();
    await expect(table.locator("th[aria-sort=ascending]")).toContainText("Device");
    expect(await devices()).toEqual([devid(13), devid(14)]);
    await table.getByRole("link", { name: /Device/ }).click();
    await expect(table.locator("th[aria-sort=descending]")).toContainText("Device");
    expect(await devices()).toEqual([devid(14), devid(13)]);
    await expect(page).toHaveURL(/sort=device&dir=desc/);

    // A second person approves the whole batch at once.
    const approver = await browser.newPage({ timezoneId: "Asia/Kolkata" });
    await signIn(approver, "live-abe");
    await approver.goto("/approvals");
    await approver.waitForLoadState("networkidle");
    const group = approver.getByRole("region", { name: `Batch ${batch_id} · 2 requests` });
    await group.getByRole("button", { name: `Approve all 2 requests of batch ${batch_id}` }).click();
    await expect(approver.getByRole("region", { name: `Batch ${batch_id} · 2 requests` })).toHaveCount(0);
    await page.goto(`/delegations/${first}`);
    await expect(page.getByTestId("state")).not.toHaveText("AwaitingRequestApproval");
    await approver.close();
  });
});
