// Starts Handover for the browser tests: a fresh data directory, users made
// with the CLI, the portal on a loopback port. Nothing here touches ./data.
import { spawn, spawnSync, ChildProcess } from "node:child_process";
import { mkdtempSync, writeFileSync, readFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";

export const ROOT = resolve(__dirname, "..");
export const BIN = join(ROOT, "target", "debug", "handover");
// E2E_PORT lets two runs on one machine use their own server and state file.
export const PORT = Number(process.env.E2E_PORT ?? 3400);
export const STATE_FILE = join(tmpdir(), `handover-e2e-state-${PORT}.json`);

export const PASSWORD = "correct horse battery staple";
export const USERS: Record<string, string[]> = {
  admin: ["admin"],
  auditor: ["auditor"],
  viewer: ["viewer"],
  operator: ["operator", "viewer"],
  approver: ["approver", "viewer"],
};

export function cli(dataDir: string, args: string[], input?: string): string {
  const r = spawnSync(BIN, ["--data-dir", dataDir, ...args], { input, encoding: "utf8" });
  if (r.status !== 0) {
    throw new Error(`handover ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
  }
  return r.stdout;
}

export async function waitForHealth(url: string, child: ChildProcess): Promise<void> {
  for (let i = 0; i < 300; i++) {
    if (child.exitCode !== null) throw new Error(`server exited with ${child.exitCode}`);
    try {
      const r = await fetch(url);
      if (r.ok) return;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${url} did not become healthy in 30 s`);
}

export async function startServer(port: number, serverId: string) {
  if (!existsSync(BIN)) throw new Error(`${BIN} is missing: run cargo leptos build first`);
  const dataDir = mkdtempSync(join(tmpdir(), "handover-e2e-"));
  for (const [name, roles] of Object.entries(USERS)) {
    cli(dataDir, ["admin", "user", "create", name, ...roles.flatMap((r) => ["--role", r]), "--password-stdin"], PASSWORD + "\n");
  }
  const child = spawn(
    BIN,
    [
      "--data-dir", dataDir, "serve",
      "--portal-addr", `127.0.0.1:${port}`,
      "--dm-addr", "127.0.0.1:0",
      "--peer-addr", "127.0.0.1:0",
      "--server-id", serverId,
      "--site-root", join(ROOT, "target", "site"),
    ],
    { stdio: ["ignore", "inherit", "inherit"], env: { ...process.env, HANDOVER_LOG: "warn" } },
  );
  await waitForHealth(`http://127.0.0.1:${port}/healthz`, child);
  return { child, dataDir };
}

export function saveState(state: object) {
  writeFileSync(STATE_FILE, JSON.stringify(state));
}

export function loadState(): { pid: number; dataDir: string } {
  return JSON.parse(readFileSync(STATE_FILE, "utf8"));
}
