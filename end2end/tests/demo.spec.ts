// Across both portals of `handover demo`: the operator hands part of two
// devices to the enterprise, four eyes on its side, the enterprise accepts,
// both sides watch it live; an abort, a viewer, a forged request, an expiry.
import { test, expect, Browser, Page } from "@playwright/test";
import { join } from "node:path";
import { ROOT } from "../servers";
import { Demo, ENT_URL, ENTERPRISE_ID, OP_URL, OPERATOR_ID, startDemo, stopDemo } from "../demo";

const SUBTREE = "./Vendor/Corp";
let demo: Demo;

test.beforeAll(async () => {
  test.setTimeout(90_000);
  demo = await startDemo(6);
});

test.afterAll(async () => {
  if (demo) await stopDemo(demo);
});

/** A signed-in page of its own browser context on one portal. */
async function portal(browser: Browser, url: string, user: string): Promise<Page> {
  const context = await browser.newContext({ baseURL: url });
  const page = await context.newPage();
  await page.goto("/sign-in");
  await page.getByLabel("User name").fill(user);
  await page.getByLabel("Password").fill(demo.passwords[user]);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
  return page;
}

async function api(url: string, token: string, path: string, body?: object) {
  const r = await fetch(url + path, {
    method: body ? "POST" : "GET",
    headers: { authorization: `Bearer ${token}`, "content-type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  return { status: r.status, body: (await r.json()) as any };
}

/** The operator's request through the JSON API: partial, ./Vendor/Corp. */
async function requestByApi(devid: string, expires?: Date): Promise<number> {
  const r = await api(OP_URL, demo.token("operator", "ops-operator"), "/api/v1/delegations", {
    devices: [devid], peer: ENTERPRISE_ID, type: "partial", scope: [{ uri: SUBTREE, rights: ["Get", "Replace"] }],
    term: expires ? "temporary" : "permanent", ...(expires ? { expires: expires.toISOString() } : {}), reason: "demo check",
  });
  expect(r.status, JSON.stringify(r.body)).toBe(201);
  return r.body.delegations[0];
}

/** The enterprise's number for the delegation of `devid` it received last. */
async function enterpriseId(devid: string): Promise<number> {
  let id = 0;
  await expect
    .poll(async () => {
      const r = await api(ENT_URL, demo.token("enterprise", "it-viewer"), "/api/v1/delegations");
      const row = (r.body.delegations ?? []).filter((d: any) => d.devid === devid).sort((a: any, b: any) => b.id - a.id)[0];
      id = row?.id ?? 0;
      return id;
    }, { timeout: 15_000 })
    .toBeGreaterThan(0);
  return id;
}

/**
 * Remembers every state the page shows from now on, and marks the window:
 * a reload or a navigation would lose both.
 */
async function watchStates(page: Page): Promise<number> {
  return page.evaluate(() => {
    const w = window as any;
    w.marker = Math.random();
    w.states = [];
    const note = () => {
      const t = document.querySelector("[data-testid=state]")?.textContent?.trim();
      if (t && w.states[w.states.length - 1] !== t) w.states.push(t);
    };
    note();
    new MutationObserver(note).observe(document.body, { childList: true, characterData: true, subtree: true });
    return w.marker;
  });
}

async function statesSeen(page: Page, marker: number): Promise<string[]> {
  const [m, states] = await page.evaluate(() => [(window as any).marker, (window as any).states]);
  expect(m, "the page was not reloaded").toBe(marker);
  return states;
}

/** A live delegation page, once its stream is connected. */
async function openLive(page: Page, id: number) {
  await page.goto(`/delegations/${id}`);
  await expect(page.getByTestId("live")).toContainText("Live");
}

async function auditShows(page: Page, events: string[]) {
  await page.getByRole("link", { name: "This delegation in the audit log →" }).click();
  await expect(page).toHaveURL(/\/audit\?delegation=/);
  const table = page.getByRole("table", { name: "Audit entries" });
  for (const e of events) await expect(table.getByRole("row", { name: new RegExp(e.replace(".", "\\.")) }).first()).toBeVisible();
  await page.getByRole("button", { name: "Verify chain" }).click();
  await expect(page.getByRole("status").filter({ hasText: /chain/ })).toContainText("The chain is intact");
}

test("a partial temporary delegation of two devices: four eyes, the peer accepts, both sides watch it live", async ({ browser }) => {
  test.setTimeout(120_000);
  const [d1, d2] = demo.devices;

  // Operator A picks two devices and requests a partial, temporary delegation.
  const op = await portal(browser, OP_URL, "ops-operator");
  await op.goto("/devices");
  await op.waitForLoadState("networkidle");
  await op.getByRole("checkbox", { name: `Select ${d1}` }).check();
  await op.getByRole("checkbox", { name: `Select ${d2}` }).check();
  await expect(op.getByRole("status", { name: "Selection" })).toContainText("2 devices selected");
  await op.getByRole("link", { name: "Request delegation" }).click();
  await expect(op.getByRole("heading", { name: "Request a delegation" })).toBeVisible();
  await op.waitForLoadState("networkidle");
  await op.getByLabel("Hand over to").selectOption(ENTERPRISE_ID);
  await op.getByLabel(/^Partial/).check();
  await op.getByRole("checkbox", { name: `Get on ${SUBTREE}`, exact: true }).check();
  await op.getByRole("checkbox", { name: `Replace on ${SUBTREE}`, exact: true }).check();
  await op.getByLabel("Temporary").check();
  await op.getByLabel("Ends on").fill(new Date(Date.now() + 7 * 86_400_000).toISOString().slice(0, 10));
  await op.getByLabel("Reason").fill("Ticket 815: the enterprise manages its apps");
  await op.getByRole("button", { name: "Preview" }).click();
  for (const d of [d1, d2]) {
    await expect(op.getByRole("article", { name: `Preview for ${d}` })).toContainText(ENTERPRISE_ID);
  }
  await op.getByRole("button", { name: "Send request" }).click();
  await expect(op).toHaveURL(/\/delegations\?batch=\d+/);
  const sent = op.getByRole("table", { name: "Delegations" });
  const ids: number[] = [];
  for (const d of [d1, d2]) {
    const href = await sent.getByRole("link", { name: d }).getAttribute("href");
    ids.push(Number(/\/delegations\/(\d+)$/.exec(href ?? "")![1]));
  }

  // Operator A cannot approve: no button, and a forged call is refused.
  await op.goto("/approvals");
  await expect(op.getByRole("article", { name: `Request for ${d1}` })).toContainText("Your request: another approver decides.");
  await expect(op.getByRole("button", { name: /^Approve/ })).toHaveCount(0);
  const forged = await op.request.post("/api/approvals/approve", { form: { id: String(ids[0]) } });
  expect(forged.status()).toBe(403);

  // The operator's live page of the first device, from its first state.
  const opLive = await op.context().newPage();
  await openLive(opLive, ids[0]);
  await expect(opLive.getByTestId("state")).toHaveText("AwaitingRequestApproval");
  const opMarker = await watchStates(opLive);

  // Approver A approves both.
  const approverA = await portal(browser, OP_URL, "ops-approver");
  await approverA.goto("/approvals");
  await approverA.waitForLoadState("networkidle");
  for (const d of [d1, d2]) {
    await approverA.getByRole("button", { name: `Approve request for ${d}` }).click();
    await expect(approverA.getByRole("article", { name: `Request for ${d}` })).toHaveCount(0);
  }
  await expect(opLive.getByTestId("state")).toHaveText("AwaitingAccept");

  // The enterprise received them; its live page of the first device.
  const entIds = [await enterpriseId(d1), await enterpriseId(d2)];
  const approverB = await portal(browser, ENT_URL, "it-approver");
  const entLive = await approverB.context().newPage();
  await openLive(entLive, entIds[0]);
  await expect(entLive.getByTestId("state")).toHaveText("AwaitingApproval");
  const entMarker = await watchStates(entLive);

  // Approver B accepts the incoming requests, shown with the peer's identity.
  await approverB.goto("/approvals");
  await approverB.waitForLoadState("networkidle");
  for (const d of [d1, d2]) {
    const incoming = approverB.getByRole("article", { name: `Request for ${d}` });
    await expect(incoming).toContainText(OPERATOR_ID);
    await expect(incoming).toContainText("verified");
    await approverB.getByRole("button", { name: `Approve request for ${d}` }).click();
    await expect(incoming).toHaveCount(0);
  }

  // Both live pages arrive at Completed on their own.
  const sides = [
    { page: opLive, marker: opMarker, name: "operator", waypoints: ["AwaitingRequestApproval", "AwaitingAccept", "Completed"] },
    { page: entLive, marker: entMarker, name: "enterprise", waypoints: ["AwaitingApproval", "Completed"] },
  ];
  for (const { page, marker, name, waypoints } of sides) {
    await expect(page.getByTestId("state")).toHaveText("Completed", { timeout: 30_000 });
    const timeline = page.getByTestId("timeline");
    await expect(timeline.locator("[data-status=now]")).toHaveCount(0);
    await expect(timeline.locator("[data-status=stopped]")).toHaveCount(0);
    await expect(timeline.locator("[data-status=done]").last()).toContainText(`${ENTERPRISE_ID} manages the scope`);
    const states = await statesSeen(page, marker);
    console.log(`${name} page, live: ${states.join(" → ")}`);
    // In order, each seen on the page as it happened (the steps between
    // them may come faster than the page draws).
    expect(states.filter((s) => waypoints.includes(s))).toEqual(waypoints);
  }
  await expect(opLive.getByTestId("sequence").locator("[data-message]").first()).toBeVisible();
  await opLive.screenshot({ path: join(ROOT, "docs", "delegation-completed.png"), fullPage: true });

  // The device pages of both sides show the enterprise managing ./Vendor/Corp.
  const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
  for (const d of [d1, d2]) {
    for (const page of [opLive, entLive]) {
      await page.goto(`/devices/${encodeURIComponent(d)}`);
      const map = page.getByRole("table", { name: "Authorities by subtree" });
      await expect(map.getByRole("row", { name: new RegExp(`${escape(ENTERPRISE_ID)}.*${escape(SUBTREE)} Get, ?Replace`) })).toBeVisible();
      // The rest stays with the operator.
      await expect(map.getByRole("row", { name: new RegExp(`^${escape(OPERATOR_ID)}`) })).toBeVisible();
    }
  }

  // The audit logs of both sides hold the steps and verify.
  const auditorA = await portal(browser, OP_URL, "ops-auditor");
  await auditorA.goto(`/delegations/${ids[0]}`);
  await auditShows(auditorA, ["delegation.requested", "delegation.approved", "delegation.completed"]);
  const auditorB = await portal(browser, ENT_URL, "it-auditor");
  await auditorB.goto(`/delegations/${entIds[0]}`);
  await auditShows(auditorB, ["delegation.approved", "delegation.completed"]);
});

test("an abort in the middle ends it on both sides, live, and the device stays with the operator", async ({ browser }) => {
  const d = demo.devices[2];
  const id = await requestByApi(d);
  expect((await api(OP_URL, demo.token("operator", "ops-approver"), `/api/v1/delegations/${id}/approve`, {})).status).toBe(200);
  const entId = await enterpriseId(d);

  const op = await portal(browser, OP_URL, "ops-operator");
  await openLive(op, id);
  await expect(op.getByTestId("state")).toHaveText("AwaitingAccept");
  const opMarker = await watchStates(op);
  const ent = await portal(browser, ENT_URL, "it-viewer");
  await openLive(ent, entId);
  await expect(ent.getByTestId("state")).toHaveText("AwaitingApproval");
  const entMarker = await watchStates(ent);

  await op.getByLabel("Reason for aborting").fill("wrong device");
  await op.getByRole("button", { name: "Abort" }).click();
  await expect(op.getByTestId("state")).toHaveText("Aborted");
  await expect(op.getByTestId("timeline").locator("[data-status=stopped]")).toContainText("wrong device");
  await expect(ent.getByTestId("state")).toHaveText("Aborted");
  for (const [page, marker, first] of [[op, opMarker, "AwaitingAccept"], [ent, entMarker, "AwaitingApproval"]] as const) {
    const states = await statesSeen(page, marker);
    expect([states[0], states.at(-1)]).toEqual([first, "Aborted"]);
  }

  // Nothing moved: the operator still manages all of the device.
  await op.goto(`/devices/${encodeURIComponent(d)}`);
  const map = op.getByRole("table", { name: "Authorities by subtree" });
  await expect(map).toContainText(OPERATOR_ID);
  await expect(map).not.toContainText(ENTERPRISE_ID);
  // And the enterprise has nothing left to accept.
  const approverB = await portal(browser, ENT_URL, "it-approver");
  await approverB.goto("/approvals");
  await expect(approverB.getByRole("article", { name: `Request for ${d}` })).toHaveCount(0);
  // Both audit logs record the abort.
  const auditorA = await portal(browser, OP_URL, "ops-auditor");
  await auditorA.goto(`/delegations/${id}`);
  await auditShows(auditorA, ["delegation.aborted"]);
  const auditorB = await portal(browser, ENT_URL, "it-auditor");
  await auditorB.goto(`/delegations/${entId}`);
  await auditShows(auditorB, ["delegation.aborted"]);
});

test("a viewer sees no approve or abort controls, and forged requests are refused", async ({ browser }) => {
  const d = demo.devices[3];
  const id = await requestByApi(d);
  const viewer = await portal(browser, OP_URL, "ops-viewer");

  await viewer.goto("/approvals");
  await expect(viewer.getByRole("article", { name: `Request for ${d}` })).toBeVisible();
  await expect(viewer.getByRole("button", { name: /^(Approve|Reject)/ })).toHaveCount(0);
  await openLive(viewer, id);
  await expect(viewer.getByTestId("state")).toHaveText("AwaitingRequestApproval");
  await expect(viewer.getByRole("button", { name: /^(Abort|Revoke|Retry)/ })).toHaveCount(0);

  // The portal's own calls, made by hand with the viewer's session.
  const approve = await viewer.request.post("/api/approvals/approve", { form: { id: String(id) } });
  expect(approve.status()).toBe(403);
  const abort = await viewer.request.post("/api/delegations/act", { form: { id: String(id), act: "abort", reason: "x" } });
  expect(abort.status()).toBe(403);
  // From another site, even with a session.
  const crossSite = await viewer.request.post("/api/approvals/approve", {
    headers: { Origin: "http://evil.example" },
    form: { id: String(id) },
  });
  expect(crossSite.status()).toBe(403);
  // The API with the viewer's token.
  const byToken = await api(OP_URL, demo.token("operator", "ops-viewer"), `/api/v1/delegations/${id}/approve`, {});
  expect(byToken.status).toBe(403);

  await viewer.reload();
  await expect(viewer.getByTestId("state")).toHaveText("AwaitingRequestApproval");
});

test("a temporary delegation reaches its expiry and reverts on both sides", async ({ browser }) => {
  test.setTimeout(120_000);
  const d = demo.devices[4];
  // Whole seconds: the API keeps the expiry to the second.
  const expires = new Date(Math.ceil((Date.now() + 25_000) / 1000) * 1000);
  const id = await requestByApi(d, expires);
  expect((await api(OP_URL, demo.token("operator", "ops-approver"), `/api/v1/delegations/${id}/approve`, {})).status).toBe(200);
  const entId = await enterpriseId(d);
  expect((await api(ENT_URL, demo.token("enterprise", "it-approver"), `/api/v1/delegations/${entId}/approve`, {})).status).toBe(200);

  const op = await portal(browser, OP_URL, "ops-viewer");
  await openLive(op, id);
  await expect(op.getByTestId("state")).toHaveText("Completed", { timeout: 15_000 });
  const opMarker = await watchStates(op);
  const ent = await portal(browser, ENT_URL, "it-viewer");
  await openLive(ent, entId);
  await expect(ent.getByTestId("state")).toHaveText("Completed", { timeout: 15_000 });
  const entMarker = await watchStates(ent);
  expect(Date.now(), "completed before its expiry").toBeLessThan(expires.getTime());

  await expect(op.getByTestId("state")).toHaveText("Revoked", { timeout: 60_000 });
  await expect(ent.getByTestId("state")).toHaveText("Revoked", { timeout: 15_000 });
  expect(Date.now()).toBeGreaterThanOrEqual(expires.getTime());
  expect((await statesSeen(op, opMarker)).at(-1)).toBe("Revoked");
  expect((await statesSeen(ent, entMarker)).at(-1)).toBe("Revoked");

  await op.goto(`/devices/${encodeURIComponent(d)}`);
  const map = op.getByRole("table", { name: "Authorities by subtree" });
  await expect(map).toContainText(OPERATOR_ID);
  await expect(map).not.toContainText(ENTERPRISE_ID);
});
