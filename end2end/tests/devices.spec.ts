import { test, expect, Page } from "@playwright/test";
import { spawnSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { PASSWORD, cli, loadState } from "../servers";

const devid = (i: number) => `IMEI:4901542032${String(i).padStart(5, "0")}`;
const nonce = (s: string) => Buffer.from(s.padEnd(24, "x").slice(0, 24), "ascii").toString("base64");

// The cached tree of one device, as its first DM session leaves it.
const TREE = JSON.stringify([
  { uri: ".", kind: "interior", format: "node", type: "", value: "", acl: "Add=*&Get=*&Replace=corp.example" },
  { uri: "./DevInfo", kind: "interior", format: "node", type: "", value: "Man/Mod", acl: "" },
  { uri: "./DevInfo/Man", kind: "leaf", format: "chr", type: "text/plain", value: "Acme", acl: "" },
  { uri: "./Vendor", kind: "interior", format: "node", type: "", value: "Corp", acl: "Get=corp.example+carrier.example" },
  { uri: "./Vendor/Corp", kind: "leaf", format: "chr", type: "text/plain", value: "on", acl: "" },
]);

function sql(dataDir: string, statement: string) {
  const r = spawnSync("sqlite3", [join(dataDir, "handover.db"), statement], { encoding: "utf8" });
  if (r.status !== 0) throw new Error(`sqlite3 failed: ${r.stderr}`);
}

test.beforeAll(() => {
  const { dataDir } = loadState();
  const lines = ["devid,auth,client_name,client_secret,client_nonce,server_name,server_secret,server_nonce,push_address"];
  for (let i = 1; i <= 120; i++) {
    lines.push(
      [devid(i), "md5", `client${i}`, `client secret ${i}`, nonce(`client nonce ${i}`), "corp.example", `server secret ${i}`, nonce(`server nonce ${i}`), ""].join(","),
    );
  }
  const file = join(dataDir, "devices.csv");
  writeFileSync(file, lines.join("\n") + "\n");
  cli(dataDir, ["admin", "devices", "import", file]);
  // What the devices' first sessions would have reported.
  sql(
    dataDir,
    `UPDATE devices SET
       man = CASE CAST(substr(devid, -3) AS INTEGER) % 3 WHEN 0 THEN 'Acme' WHEN 1 THEN 'Globex' ELSE 'Initech' END,
       model = 'X' || (CAST(substr(devid, -3) AS INTEGER) % 2 + 1),
       authority = 'corp.example', state = 'active',
       first_seen = 1795780800000, last_seen = 1795780800000 + CAST(substr(devid, -3) AS INTEGER) * 1000
     WHERE devid LIKE 'IMEI:4901542032%';
     INSERT INTO device_inventory (devid, tree) SELECT devid, '${TREE}' FROM devices WHERE devid = '${devid(7)}' ON CONFLICT (devid) DO UPDATE SET tree = excluded.tree;`,
  );
});

async function signIn(page: Page, name: string) {
  await page.goto("/sign-in");
  await page.getByLabel("User name").fill(name);
  await page.getByLabel("Password").fill(PASSWORD);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

test("a viewer searches, filters and pages the devices", async ({ page }) => {
  await signIn(page, "viewer");
  await page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Devices" }).click();
  await expect(page.getByRole("heading", { name: "Devices" })).toBeVisible();
  await expect(page.getByText("120 devices")).toBeVisible();
  const table = page.getByRole("table", { name: "Devices" });
  await expect(table.getByRole("row")).toHaveCount(51);

  // Search by part of the DevId.
  await page.getByLabel("DevId", { exact: true }).fill("00042");
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page).toHaveURL(/q=00042/);
  await expect(page.getByText("1 device", { exact: true })).toBeVisible();
  await expect(table.getByRole("link", { name: devid(42) })).toBeVisible();

  // Filter by manufacturer, newest first.
  await page.goto("/devices");
  await page.getByLabel("Manufacturer").selectOption("Acme");
  await page.getByLabel("Sort by").selectOption("Last seen");
  await page.getByLabel("Order").selectOption("Descending");
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page).toHaveURL(/man=Acme/);
  await expect(page.getByText("40 devices")).toBeVisible();
  await expect(table.getByRole("row").nth(1)).toContainText(devid(120));

  // A search that matches nothing says so.
  await page.goto("/devices?q=no-such-device");
  await expect(page.getByText("No device matches this search")).toBeVisible();

  // Page through everything.
  await page.goto("/devices");
  const pager = page.getByRole("navigation", { name: "Pagination" });
  await expect(pager).toContainText("Page 1 of 3");
  await pager.getByRole("link", { name: "Next →" }).click();
  await expect(page).toHaveURL(/page=2/);
  await expect(pager).toContainText("Page 2 of 3");
  await expect(table.getByRole("row").nth(1)).toContainText(devid(51));
});

test("a viewer selects devices across pages, or all that match", async ({ page }) => {
  await signIn(page, "viewer");
  await page.goto("/devices");
  await page.waitForLoadState("networkidle");
  await page.getByRole("checkbox", { name: `Select ${devid(1)}` }).check();
  await page.getByRole("checkbox", { name: `Select ${devid(2)}` }).check();
  const selection = page.getByRole("status", { name: "Selection" });
  await expect(selection).toContainText("2 devices selected");
  // The selection outlives paging.
  await page.getByRole("navigation", { name: "Pagination" }).getByRole("link", { name: "Next →" }).click();
  await expect(page).toHaveURL(/page=2/);
  await page.getByRole("checkbox", { name: `Select ${devid(60)}` }).check();
  await expect(selection).toContainText("3 devices selected");
  await page.getByRole("button", { name: "Clear selection" }).click();
  await expect(selection).toBeHidden();
  // Everything that matches a search.
  await page.getByRole("button", { name: "Select all 120 matching" }).click();
  await expect(selection).toContainText("All devices selected");
  await expect(page.getByRole("checkbox", { name: `Select ${devid(55)}` })).toBeChecked();
  await page.getByRole("button", { name: "Clear selection" }).click();
  await expect(page.getByRole("checkbox", { name: `Select ${devid(55)}` })).not.toBeChecked();
});

test("a viewer opens a device and reads its tree and ACLs", async ({ page }) => {
  await signIn(page, "viewer");
  await page.goto(`/devices?q=${encodeURIComponent(devid(7))}`);
  await page.getByRole("link", { name: devid(7) }).click();
  await expect(page).toHaveURL(/\/devices\/IMEI%3A490154203200007$/);
  await expect(page.getByRole("heading", { name: devid(7), level: 1 })).toBeVisible();
  await expect(page.getByRole("heading", { name: "Tree and ACLs" })).toBeVisible();
  const tree = page.getByRole("table", { name: "Management tree with ACLs" });
  const root = tree.locator('tr[data-uri="."]');
  await expect(root).toContainText("Add=*&Get=*&Replace=corp.example");
  // An empty ACL shows the ancestor's, marked as inherited.
  const man = tree.locator('tr[data-uri="./DevInfo/Man"]');
  await expect(man).toContainText("Acme");
  await expect(man).toContainText("Add=*&Get=*&Replace=corp.example (inherited from .)");
  const corp = tree.locator('tr[data-uri="./Vendor/Corp"]');
  await expect(corp).toContainText("Get=corp.example+carrier.example (inherited from ./Vendor)");
  await expect(page.getByText("No DM session yet")).toBeVisible();

  await page.goto("/devices/IMEI%3A000000000000000");
  await expect(page.getByRole("heading", { name: "There is no such device" })).toBeVisible();
});

test("a user without the viewer role sees no devices", async ({ page }) => {
  await signIn(page, "auditor");
  await expect(page.getByRole("navigation", { name: "Main" }).getByRole("link", { name: "Devices" })).toHaveCount(0);
  await page.goto("/devices");
  await expect(page.getByRole("alert")).toContainText("You are not allowed to see devices");
});
