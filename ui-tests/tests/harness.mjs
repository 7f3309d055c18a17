// Test fixtures: a real `nightshift serve` on a free port with a temp data dir, a bare git
// repository made with git, and Debian's Chromium driven by playwright-core.
import { spawn, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join, resolve, dirname } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

export const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
export const SCREENSHOTS = join(ROOT, "docs/screenshots");

function freePort() {
  return new Promise((ok, fail) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", fail);
    srv.listen(0, "127.0.0.1", () => {
      const { port } = srv.address();
      srv.close(() => ok(port));
    });
  });
}

function git(cwd, ...args) {
  return execFileSync("git", args, {
    cwd,
    encoding: "utf8",
    env: { ...process.env, GIT_AUTHOR_NAME: "t", GIT_AUTHOR_EMAIL: "t@example.com", GIT_COMMITTER_NAME: "t", GIT_COMMITTER_EMAIL: "t@example.com" },
  });
}

/// A bare repository with `files` committed on main; returns its file:// URL.
export function bareRepo(root, files) {
  const bare = join(root, "remote.git");
  const work = join(root, "seed");
  git(root, "init", "-q", "--bare", "-b", "main", bare);
  git(root, "init", "-q", "-b", "main", work);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(dirname(join(work, name)), { recursive: true });
    writeFileSync(join(work, name), text);
  }
  git(work, "add", "-A");
  git(work, "commit", "-q", "-m", "seed");
  git(work, "push", "-q", bare, "main");
  return `file://${bare}`;
}

export async function startServer() {
  const bin = process.env.NIGHTSHIFT_BIN || join(ROOT, "target/debug/nightshift");
  const dir = mkdtempSync(join(tmpdir(), "nightshift-ui-"));
  const port = await freePort();
  const log = [];
  const child = spawn(bin, ["serve", "--data-dir", join(dir, "data"), "--listen", `127.0.0.1:${port}`, "--workers", "1"], {
    env: { ...process.env, NIGHTSHIFT_LOG: process.env.NIGHTSHIFT_LOG || "warn" },
    stdio: ["ignore", "pipe", "pipe"],
  });
  child.stdout.on("data", (d) => log.push(String(d)));
  child.stderr.on("data", (d) => log.push(String(d)));
  const url = `http://127.0.0.1:${port}`;
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`nightshift serve exited: ${log.join("")}`);
    try {
      const res = await fetch(`${url}/api/v1/health`);
      if (res.ok) break;
    } catch (_) { /* not yet listening */ }
    if (Date.now() > deadline) throw new Error(`nightshift serve did not start: ${log.join("")}`);
    await new Promise((r) => setTimeout(r, 100));
  }
  // The first start makes the server admin (admin of the default project) and writes its
  // token here; the tests act as that admin.
  const token = readFileSync(join(dir, "data", "admin.token"), "utf8").trim();
  return {
    url,
    dir,
    log,
    token,
    async api(method, path, body) {
      const headers = { authorization: `Bearer ${token}` };
      if (body) headers["content-type"] = "application/json";
      const res = await fetch(`${url}/api/v1/projects/default${path}`, {
        method,
        headers,
        body: body ? JSON.stringify(body) : undefined,
      });
      const json = await res.json();
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${JSON.stringify(json)}`);
      return json;
    },
    async stop() {
      child.kill("SIGTERM");
      await new Promise((r) => (child.exitCode !== null ? r() : child.once("exit", r)));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/// Signs `context` in through the sign-in page, as a person would: every page needs it.
export async function signIn(context, server, next = "/p/default/tasks") {
  const page = await context.newPage();
  await page.goto(`${server.url}${next}`);
  await page.waitForURL(/\/signin\?next=/);
  await page.fill("#token", server.token);
  await page.click("button[type=submit]");
  await page.waitForURL(`${server.url}${next}`);
  await page.close();
}

export async function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

/// Polls `probe` until it returns a truthy value (returned) or the time is up.
export async function eventually(probe, what, ms = 60_000) {
  const deadline = Date.now() + ms;
  let last;
  for (;;) {
    try {
      last = await probe();
      if (last) return last;
    } catch (e) {
      last = e;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what} (last: ${last})`);
    await new Promise((r) => setTimeout(r, 150));
  }
}
