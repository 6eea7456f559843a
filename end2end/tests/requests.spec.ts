import { test, expect, Page } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PASSWORD, ROOT, cli, loadState } from "../servers";

// Devices and a peer of their own, so this file runs alone or after the others.
const PEER = "support.example";
const devid = (i: number) => `IMEI:35690000000${String(i).padStart(4, "0")}`;
const nonce = (s: string) => Buffer.from(s.padEnd(24, "x").slice(0, 24), "ascii").toString("base64");

// What the devices' first sessions left in the cache: this server may
// replace the ACLs of the root and of ./Vendor, which inherits.
const TREE = JSON.stringify([
  { uri: ".", kind: "interior", format: "node", type: "", value: "", acl: "Add=*&Get=*&Replace=corp.example" },
  { uri: "./DevInfo", kind: "interior", format: "node", type: "", value: "", acl: "" },
  { uri: "./DevInfo/Man", kind: "leaf", format: "chr", type: "text/plain", value: "Acme", acl: "" },
  { uri: "./Vendor", kind: "interior", format: "node", type: "", value: "", acl: "" },
  { uri: "./Vendor/Apps", kind: "leaf", format: "chr", type: "text/plain", value: "on", acl: "" },
]);

function sql(dataDir: string, statement: string) {
  const r = spawnSync("sqlite3", [join(dataDir, "handover.db"), statement], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`sqlite3 failed: ${r.stderr}`);
}

test.beforeAll(() => {
  const { dataDir } = loadState();
  const lines = ["devid,auth,client_name,client_secret,client_nonce,server_name,server_secret,server_nonce,push_address"];
  for (const i of [1, 2]) {
    lines.push([devid(i), "md5", `c${i}`, `client secret ${i}`, nonce(`cn ${i}`), "corp.example", `server secret ${i}`, nonce(`sn ${i}`), ""].join(","));
  }
  const file = join(dataDir, "request-devices.csv");
  writeFileSync(file, lines.join("\n") + "\n");
  cli(dataDir, ["admin", "devices", "import", file]);
  sql(
    dataDir,
    `UPDATE devices SET man = 'Acme', model = 'X1', state = 'active' WHERE devid LIKE 'IMEI:3569%';
     INSERT INTO device_inventory (devid, tree) SELECT devid, '${TREE}' FROM devices WHERE devid LIKE 'IMEI:3569%' ON CONFLICT (devid) DO UPDATE SET tree = excluded.tree;`,
  );
  try {
    cli(dataDir, [
      "admin", "peer", "add",
      "--server-id", PEER,
      // Nothing listens there: approved requests wait to be delivered.
      "--url", "https://127.0.0.1:9",
      "--dm-url", "http://127.0.0.1:9/dm",
      "--fingerprint", "ef".repeat(32),
    ]);
  } catch (e) {
    // A worker restarted after a failure finds the peer already there.
    if (!String(e).includes(PEER)) throw e;
  }
});

async function signIn(page: Page, name: string) {
  await page.goto("/sign-in");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

test("an operator requests a delegation for two devices; another person approves one and rejects the other", async ({ page, browser }) => {
  await signIn(page, "operator");

  // Pick two devices and carry them to the request form.
  await page.goto("/devices?q=IMEI%3A3569");
  await page.waitForLoadState("networkidle");
  await page.getByRole("checkbox", { name: `Select ${devid(1)}` }).check();
  await page.getByRole("checkbox", { name: `Select ${devid(2)}` }).check();
  await expect(page.getByRole("status", { name: "Selection" })).toContainText("2 devices selected");
  await page.getByRole("link", { name: "Request delegation" }).click();
  await expect(page).toHaveURL(/\/delegations\/new\?devid=/);
  await expect(page.getByRole("heading", { name: "Request a delegation" })).toBeVisible();
  await expect(page.getByText("2 devices", { exact: true })).toBeVisible();
  await page.waitForLoadState("networkidle");

  // Partial: ./Vendor with Get and Replace, until a day next month.
  await page.getByLabel("Hand over to").selectOption(PEER);
  await page.getByLabel(/^Partial/).check();
  await page.getByRole("checkbox", { name: "Get on ./Vendor" }).check();
  await page.getByRole("checkbox", { name: "Replace on ./Vendor" }).check();
  await page.getByLabel("Temporary").check();
  // A date in the past is refused beside the field.
  await page.getByLabel("Ends on").fill("2020-01-01");
  await page.getByLabel("Reason").fill("Ticket 4711: support moves to the carrier");
  await page.getByRole("button", { name: "Preview" }).click();
  await expect(page.getByText("the end date must be in the future")).toBeVisible();
  const until = new Date(Date.now() + 30 * 86_400_000).toISOString().slice(0, 10);
  await page.getByLabel("Ends on").fill(until);
  await page.getByRole("button", { name: "Preview" }).click();

  // The preview: per device, the account added and the ACL before → after.
  await expect(page.getByRole("heading", { name: "Preview", exact: true })).toBeVisible();
  for (const i of [1, 2]) {
    const card = page.getByRole("article", { name: `Preview for ${devid(i)}` });
    await expect(card).toContainText("./DMAcc/support-example");
    await expect(card).toContainText("Get=support.example&Replace=support.example&Delete=corp.example+support.example");
    const acls = card.getByRole("table", { name: `ACL changes on ${devid(i)}` });
    const row = acls.getByRole("row", { name: /\.\/Vendor/ });
    await expect(row).toContainText("inherited");
    await expect(row).toContainText("Add=*&Get=*&Replace=corp.example");
    await expect(row.getByRole("cell").last()).toContainText("support.example");
  }
  await page.screenshot({ path: join(ROOT, "docs", "request-preview.png"), fullPage: true });

  // Sent: the batch's delegations wait for a second person.
  await page.getByRole("button", { name: "Send request" }).click();
  await expect(page).toHaveURL(/\/delegations\?batch=\d+/);
  const batchUrl = page.url();
  const table = page.getByRole("table", { name: "Delegations" });
  await expect(table.getByRole("row")).toHaveCount(3);
  await expect(table).toContainText("Waiting for a second person here");
  await expect(table.getByRole("link", { name: devid(1) })).toHaveAttribute("href", /^\/delegations\/\d+$/);

  // The requester sees them in the inbox without an approve button.
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: /Approvals/ }).click();
  await expect(page).toHaveURL(/\/approvals$/);
  const mine = page.getByRole("article", { name: `Request for ${devid(1)}` });
  await expect(mine).toContainText("Your request: another approver decides.");
  await expect(mine).toContainText("./Vendor");
  await expect(page.getByRole("button", { name: /^Approve/ })).toHaveCount(0);

  // An approver decides.
  const context = await browser.newContext();
  const other = await context.newPage();
  await signIn(other, "approver");
  await other.goto("/approvals");
  await other.waitForLoadState("networkidle");
  await expect(other.getByRole("navigation", { name: "Main" }).getByRole("link", { name: /Approvals/ })).toContainText(/\d+ waiting/);
  await other.getByRole("button", { name: `Approve request for ${devid(1)}` }).click();
  await expect(other.getByRole("article", { name: `Request for ${devid(1)}` })).toHaveCount(0);
  // Rejecting needs a reason.
  await other.getByRole("button", { name: `Reject request for ${devid(2)}` }).click();
  await expect(other.getByText("give a reason for the rejection")).toBeVisible();
  await other.getByLabel(`Reason for rejecting ${devid(2)}`).fill("The carrier does not support this model");
  await other.getByRole("button", { name: `Reject request for ${devid(2)}` }).click();
  await expect(other.getByRole("article", { name: `Request for ${devid(2)}` })).toHaveCount(0);
  // (Other specs may leave requests of their own waiting on this server.)
  await expect(other.getByRole("article", { name: `Request for ${devid(1)}` })).toHaveCount(0);

  // The batch now: one on its way to the peer, one aborted.
  await other.goto(batchUrl);
  const rows = other.getByRole("table", { name: "Delegations" });
  await expect(rows.getByRole("row", { name: new RegExp(devid(2)) })).toContainText("Aborted");
  await expect(rows.getByRole("row", { name: new RegExp(devid(1)) })).not.toContainText("Waiting for a second person");
  await context.close();
});

test("a viewer sees the inbox and the delegations without buttons", async ({ page }) => {
  await signIn(page, "viewer");
  await page.goto("/approvals");
  await expect(page.getByRole("heading", { name: "Approvals" })).toBeVisible();
  await expect(page.getByRole("button", { name: /^(Approve|Reject)/ })).toHaveCount(0);
  await page.goto("/delegations?state=ended");
  await expect(page.getByLabel("State")).toHaveValue("ended");
  await page.goto(`/devices?q=IMEI%3A3569`);
  await page.waitForLoadState("networkidle");
  await page.getByRole("checkbox", { name: `Select ${devid(1)}` }).check();
  await expect(page.getByRole("link", { name: "Request delegation" })).toHaveCount(0);
});
