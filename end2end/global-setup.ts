import { startServer, saveState } from "./servers";

export default async function globalSetup() {
  const { child, dataDir } = await startServer(3400, "corp.example");
  saveState({ pid: child.pid, dataDir });
  child.unref();
}
