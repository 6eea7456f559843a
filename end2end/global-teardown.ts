import { loadState } from "./servers";

export default async function globalTeardown() {
  const { pid } = loadState();
  try {
    process.kill(pid, "SIGTERM");
  } catch {
    // already gone
  }
}
