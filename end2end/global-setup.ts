import { startServer, saveState, PORT } from "./servers";

export default async function globalSetup() {
  const { child, dataDir } = await startServer(PORT, "corp.example");
  saveState({ pid: child.pid, dataDir });
  child.unref();
}
