// Starts `handover demo` for the tests that cross two portals: an operator
// (DMS-1, managing a small simulated fleet) and an enterprise, each other's
// peers, on loopback ports of their own. The users' passwords are read off
// the table the demo prints once at its first start.
import { spawn, ChildProcess } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { BIN, ROOT, cli } from "./servers";

// DEMO_PORT moves every listener, for two runs on one machine.
const BASE = Number(process.env.DEMO_PORT ?? 3500);
export const OP_URL = `http://127.0.0.1:${BASE}`;
export const ENT_URL = `http://127.0.0.1:${BASE + 1}`;
export const OPERATOR_ID = "operator.demo.localhost";
export const ENTERPRISE_ID = "enterprise.demo.localhost";

export interface Demo {
  child: ChildProcess;
  dir: string;
  /** user name → password, both sides (`ops-…`, `it-…`). */
  passwords: Record<string, string>;
  /** The operator's devices, sorted. */
  devices: string[];
  token(side: "operator" | "enterprise", user: string): string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function healthy(url: string): Promise<boolean> {
  try {
    return (await fetch(url)).ok;
  } catch {
    return false;
  }
}

/** Rows of the password table: `  http://… ops-admin  admin, viewer  PASSWORD`. */
export function parsePasswords(stdout: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of stdout.split("\n")) {
    const m = /^\s+http:\/\/\S+\s+((?:ops|it)-[a-z0-9]+)\s+.*\s(\S+)\s*$/.exec(line);
    if (m) out[m[1]] = m[2];
  }
  return out;
}

export async function startDemo(devices: number): Promise<Demo> {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo leptos build first`);
  const dir = mkdtempSync(join(tmpdir(), "handover-demo-e2e-"));
  const started = Date.now();
  const child = spawn(
    BIN,
    [
      "demo", "--dir", dir, "--devices", String(devices),
      "--base-port", String(BASE), "--dm-port", String(BASE + 80),
      "--peer-port", String(BASE + 43), "--push-port", String(BASE + 90),
      "--site-root", join(ROOT, "target", "site"),
    ],
    { stdio: ["ignore", "pipe", "inherit"], env: { ...process.env, HANDOVER_LOG: "warn" } },
  );
  let stdout = "";
  child.stdout!.setEncoding("utf8");
  child.stdout!.on("data", (s: string) => (stdout += s));

  const stop = async (why: string): Promise<never> => {
    await stopDemo({ child, dir } as Demo);
    throw new Error(`${why}\n--- demo output ---\n${stdout}`);
  };
  // Both portals up, the table printed, the fleet's first sessions done: 60 s at most.
  const deadline = Date.now() + 60_000;
  while (!(/first sessions done/.test(stdout) && (await healthy(`${OP_URL}/healthz`)) && (await healthy(`${ENT_URL}/healthz`)))) {
    if (child.exitCode !== null) await stop(`the demo exited with ${child.exitCode}`);
    if (Date.now() > deadline) await stop("the demo did not get ready in 60 s");
    await sleep(200);
  }
  const passwords = parsePasswords(stdout);
  if (Object.keys(passwords).length !== 12) await stop("the password table has not 12 users");

  const tokens = new Map<string, string>();
  const token = (side: "operator" | "enterprise", user: string) => {
    const key = `${side}/${user}`;
    if (!tokens.has(key)) tokens.set(key, cli(join(dir, side), ["admin", "token", "create", "--user", user]).trim());
    return tokens.get(key)!;
  };
  // Every device has been read (inventory and tree) by the operator.
  let list: { devid: string; last_seen: number | null }[] = [];
  while (Date.now() < deadline) {
    const r = await fetch(`${OP_URL}/api/v1/devices`, { headers: { authorization: `Bearer ${token("operator", "ops-viewer")}` } });
    list = ((await r.json()) as any).devices ?? [];
    if (list.length === devices && list.every((d) => d.last_seen)) break;
    await sleep(200);
  }
  if (list.length !== devices || !list.every((d) => d.last_seen)) await stop("the fleet was not read in time");
  console.log(`demo with ${devices} devices ready in ${((Date.now() - started) / 1000).toFixed(1)} s`);
  return { child, dir, passwords, devices: list.map((d) => d.devid).sort(), token };
}

export async function stopDemo(demo: Pick<Demo, "child" | "dir">) {
  const { child, dir } = demo;
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise((r) => child.once("exit", r));
    child.kill("SIGTERM");
    await Promise.race([exited, sleep(10_000)]);
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }
  rmSync(dir, { recursive: true, force: true });
}
