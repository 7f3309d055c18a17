// End-to-end tests of the web UI in headless Chromium against a real `nightshift serve`
// with one worker, running `command` agent tasks on a local bare git repository.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startServer, launchBrowser, bareRepo, eventually, signIn, SCREENSHOTS } from "./harness.mjs";

let server, browser, context, repo, scratch;
const timings = {};

// The repository's own check takes a moment so the validating phase is visible.
const FILES = {
  "greeting.txt": "hello world\n",
  ".nightshift.toml": '[checks]\ntest = ["sh test.sh"]\n',
  "test.sh": "sleep 2\ngrep -q goodbye greeting.txt || { echo 'greeting does not say goodbye'; exit 1; }\n",
};
const AGENT = "sleep 1; echo step-one; sleep 1; echo step-two; sed -i 's/hello/goodbye/' greeting.txt";

before(async () => {
  scratch = mkdtempSync(join(tmpdir(), "nightshift-ui-repo-"));
  repo = bareRepo(scratch, FILES);
  server = await startServer();
  browser = await launchBrowser();
  context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  await signIn(context, server);
  mkdirSync(SCREENSHOTS, { recursive: true });
});

after(async () => {
  await browser?.close();
  await server?.stop();
  if (scratch) rmSync(scratch, { recursive: true, force: true });
  console.log("timings (ms):", JSON.stringify(timings));
});

async function openPage() {
  const page = await context.newPage();
  page.on("dialog", (d) => d.accept());
  return page;
}

function timed(name, fn) {
  return async () => {
    const start = Date.now();
    try {
      await fn();
    } finally {
      timings[name] = Date.now() - start;
    }
  };
}

let firstTaskId;

test("create a task from the form and watch it live", { timeout: 120_000 }, timed("create_and_watch", async () => {
  const page = await openPage();
  await page.goto(`${server.url}/p/default/tasks/new`);
  await page.fill("#instructions", "Say goodbye to the world");
  await page.fill("#repo", repo);
  await page.selectOption("#agent", "command");
  await page.fill("#agent_command", AGENT);
  await page.fill("#timeout", "5m");
  await page.click("button[type=submit]");
  await page.waitForURL(/\/p\/default\/tasks\/\d+$/);
  firstTaskId = Number(page.url().split("/").pop());
  // A marker that a reload would wipe: everything below must arrive without one.
  await page.evaluate(() => { window.__noReload = true; });

  const phases = new Set();
  const progress = new Set();
  await eventually(async () => {
    const status = await page.locator("#live [data-status]").getAttribute("data-status");
    const phase = await page.locator("#phase").textContent({ timeout: 50 }).catch(() => null);
    if (phase) phases.add(phase.trim());
    progress.add(Number(await page.locator("#live progress").getAttribute("value")));
    return status === "succeeded";
  }, "the run to succeed", 90_000);
  assert.ok(phases.size >= 2, `saw the phases move: ${[...phases]}`);
  assert.ok(progress.size >= 3, `saw the progress bar move: ${[...progress]}`);
  assert.equal(Math.max(...progress), 100);

  // The log: history and live lines, phases and the agent's output.
  await eventually(async () => (await page.locator("#log li").count()) > 3, "log lines");
  const log = await page.locator("#log").textContent();
  assert.match(log, /step-one/);
  assert.match(log, /step-two/);
  // The result: the diff with a header per file and the checks table.
  await eventually(async () => (await page.locator(".file-header").count()) > 0, "the diff");
  assert.match(await page.locator(".file-header").first().textContent(), /greeting\.txt/);
  assert.match(await page.locator(".diff .add").allTextContents().then((t) => t.join("\n")), /goodbye/);
  assert.match(await page.locator("table.checks").textContent(), /sh test\.sh/);
  assert.equal(await page.evaluate(() => window.__noReload), true, "no reload happened");
  assert.equal(await page.locator("#announce").textContent(), "Run 1 succeeded", "the end is announced");
  await page.screenshot({ path: join(SCREENSHOTS, "task-detail.png"), fullPage: true });
  await page.close();
}));

test("cancel a running task and retry a failed one, live in the list", { timeout: 120_000 }, timed("cancel_and_retry", async () => {
  const list = await openPage();
  await list.goto(`${server.url}/p/default/tasks`);
  await list.evaluate(() => { window.__noReload = true; });
  const sleeper = await server.api("POST", "/tasks", {
    repo, instructions: "Sleep for a long time", agent: { kind: "command", command: "sleep 600" },
  });
  const row = (id) => list.locator(`#task-rows tr[data-task="${id}"]`);
  await eventually(async () => (await row(sleeper.id).getAttribute("data-status")) === "running", "the sleeper to run in the list");

  const detail = await openPage();
  await detail.goto(`${server.url}/p/default/tasks/${sleeper.id}`);
  await detail.click("#cancel");
  await eventually(async () => (await detail.locator("#live [data-status]").getAttribute("data-status")) === "cancelled", "the run to be cancelled");
  await eventually(async () => (await row(sleeper.id).getAttribute("data-status")) === "cancelled", "the list to show cancelled");

  const failing = await server.api("POST", "/tasks", {
    repo, instructions: "Fail on purpose", agent: { kind: "command", command: "echo about to fail; exit 3" },
  });
  await eventually(async () => (await row(failing.id).getAttribute("data-status")) === "failed", "the failing task to fail in the list");
  await detail.goto(`${server.url}/p/default/tasks/${failing.id}`);
  assert.match(await detail.locator("#failure").textContent(), /agent/);
  await detail.click("#retry");
  await detail.waitForURL(new RegExp(`/tasks/${failing.id}$`));
  await eventually(async () => (await detail.locator(".timeline li").count()) === 2, "run 2 in the timeline");
  await eventually(async () => {
    const runs = await server.api("GET", `/tasks/${failing.id}`);
    return runs.runs.length === 2 && runs.runs[1].status === "failed";
  }, "run 2 to fail");
  await eventually(async () => (await row(failing.id).getAttribute("data-status")) === "failed"
    && /run 2/.test(await row(failing.id).textContent()), "the list to show the retried run");
  await eventually(async () => (await detail.locator("#log-run").textContent()) === "2", "the log to follow run 2");
  assert.equal(await list.evaluate(() => window.__noReload), true, "the list never reloaded");
  // The filters narrow the list (and keep narrowing while it updates).
  await list.selectOption("select[name=status]", "cancelled");
  await list.click("form.filters button[type=submit]");
  await list.waitForURL(/status=cancelled/);
  assert.deepEqual(await list.locator("#task-rows tr").evaluateAll((rows) => rows.map((r) => r.dataset.task)), [String(sleeper.id)]);
  await list.goto(`${server.url}/p/default/tasks`);
  await list.screenshot({ path: join(SCREENSHOTS, "tasks.png"), fullPage: true });
  await list.close();
  await detail.close();
}));

test("save a succeeded task as a template and use it", { timeout: 120_000 }, timed("templates", async () => {
  const page = await openPage();
  await page.goto(`${server.url}/p/default/tasks/${firstTaskId}`);
  await page.click("#save-template");
  await page.fill("#name", "say-goodbye");
  await page.fill("#description", "Says goodbye to someone");
  await page.fill("#m0_text", "world");
  await page.fill("#m0_name", "target");
  await page.fill("#m0_pattern", "[a-z]+");
  await page.click("#from-task-form button[type=submit]");
  await page.waitForURL(/\/templates\/say-goodbye$/);
  assert.match(await page.locator("pre.instructions").textContent(), /Say goodbye to the \{\{target\}\}/);

  // An invalid value is refused in the form, naming the parameter.
  await page.click("#use-template");
  await page.fill("#repo", repo);
  await page.fill("#param-target", "Not Valid!");
  const refused = page.waitForResponse((r) => r.request().method() === "POST");
  await page.click("#new-task button[type=submit]");
  assert.equal((await refused).status(), 422);
  assert.match(await page.locator("#form-error").textContent(), /parameter target/);
  assert.equal(await page.locator("#param-target").getAttribute("aria-invalid"), "true");

  await page.fill("#param-target", "moon");
  await page.click("#new-task button[type=submit]");
  await page.waitForURL(/\/tasks\/\d+$/);
  const id = Number(page.url().split("/").pop());
  assert.match(await page.locator(".instructions").first().textContent(), /Say goodbye to the moon/);
  await eventually(async () => (await page.locator("#live [data-status]").getAttribute("data-status")) === "succeeded", "the templated task to succeed", 90_000);

  await page.goto(`${server.url}/p/default/templates/say-goodbye`);
  const usage = page.locator(`#usage tr[data-task="${id}"]`);
  assert.match(await usage.textContent(), /target=moon/);
  assert.match(await usage.textContent(), /succeeded/);
  assert.equal((await page.locator("#success-rate").textContent()).trim(), "100%");
  await page.screenshot({ path: join(SCREENSHOTS, "template-detail.png"), fullPage: true });
  await page.goto(`${server.url}/p/default/templates`);
  await page.screenshot({ path: join(SCREENSHOTS, "templates.png"), fullPage: true });
  await page.goto(`${server.url}/p/default/tasks/new?template=say-goodbye`);
  await page.screenshot({ path: join(SCREENSHOTS, "new-task-from-template.png"), fullPage: true });
  await page.close();
}));

test("a template's checks override runs instead of the repository's checks", { timeout: 120_000 }, timed("checks_override", async () => {
  await server.api("POST", "/templates", {
    name: "checked", instructions: "Say goodbye with {{greeting}}",
    parameters: [{ name: "greeting", type: "string", required: true }],
    agent: { kind: "command", command: "sed -i 's/hello/goodbye/' greeting.txt" },
    checks: ["echo override-check && grep -q goodbye greeting.txt"],
  });
  const task = await server.api("POST", "/templates/checked/tasks", { repo, params: { greeting: "a wave" } });
  const page = await openPage();
  await page.goto(`${server.url}/p/default/tasks/${task.id}`);
  await eventually(async () => (await page.locator("#live [data-status]").getAttribute("data-status")) === "succeeded", "the run to succeed", 90_000);
  await eventually(async () => (await page.locator("table.checks").count()) === 1, "the checks table");
  const checks = await page.locator("table.checks").textContent();
  assert.match(checks, /template checked v1/);
  assert.match(checks, /echo override-check/);
  assert.doesNotMatch(checks, /sh test\.sh/);
  await page.close();
}));

test("the bell counts a finished run of the signed-in admin", { timeout: 120_000 }, timed("bell", async () => {
  const page = await openPage();
  await page.goto(`${server.url}/p/default/notifications`);
  await page.click("text=Mark all read");
  await page.waitForURL(/\/notifications$/);
  assert.equal((await page.locator("#bell-count").textContent()).trim(), "0");
  await page.goto(`${server.url}/p/default/tasks`);
  const task = await server.api("POST", "/tasks", {
    repo, instructions: "Say goodbye quickly", agent: { kind: "command", command: "sed -i 's/hello/goodbye/' greeting.txt" },
  });
  await eventually(async () => (await page.locator("#bell-count").textContent()).trim() === "1", "the bell to count the finished run", 90_000);
  assert.match(await page.locator("#bell").getAttribute("aria-label"), /1 unread/);
  await page.click("#bell");
  const entry = page.locator("#notifications li.unread button").first();
  assert.match(await entry.textContent(), /Say goodbye quickly/);
  await entry.click();
  await page.waitForURL(new RegExp(`/tasks/${task.id}$`));
  assert.equal((await page.locator("#bell-count").textContent()).trim(), "0");
  await page.close();
}));

test("insights: a chart of the period, a line per template, one template's outcomes", { timeout: 60_000 }, timed("insights", async () => {
  const page = await openPage();
  // A new version of the template states the manual work it replaces.
  await page.goto(`${server.url}/p/default/templates/say-goodbye/edit`);
  await page.fill("#manual_effort_minutes", "90");
  await page.click("button:has-text('Save new version')");
  await page.waitForURL(/\/templates\/say-goodbye$/);

  await page.goto(`${server.url}/p/default/insights`);
  const ended = Number((await page.locator("#runs-ended").textContent()).trim());
  assert.ok(ended >= 4, `the runs of the tests before ended: ${ended}`);
  // The last 30 days, a bar a day; today's holds every run so far.
  const bars = page.locator("#chart svg g");
  assert.equal(await bars.count(), 30);
  assert.match(await bars.last().locator("title").textContent(), /: \d+ succeeded, \d+ failed/);
  const height = Number(await bars.last().locator("rect.ok").getAttribute("height"))
    + Number(await bars.last().locator("rect.bad").getAttribute("height"));
  assert.ok(height > 0, "today's bar is drawn");
  assert.match(await page.locator("#templates").textContent(), /say-goodbye/);
  // Without a forge nothing merged, and the page says why no time was saved.
  assert.match(await page.locator("#time-saved").textContent(), /no merged pull request/);
  await page.screenshot({ path: join(SCREENSHOTS, "insights.png"), fullPage: true });

  // One template's tasks alone, chosen in the form.
  await page.selectOption("#template", "say-goodbye");
  await page.click("form.period button[type=submit]");
  await page.waitForURL(/template=say-goodbye/);
  assert.equal((await page.locator("#tasks-created").textContent()).trim(), "1");
  assert.match(await page.locator("#period").textContent(), /tasks of template say-goodbye/);
  assert.equal(await page.locator("#template").inputValue(), "say-goodbye");
  await page.close();
}));

test("keyboard: a skip link and visible focus", { timeout: 30_000 }, timed("keyboard", async () => {
  const page = await openPage();
  await page.goto(`${server.url}/p/default/tasks`);
  await page.keyboard.press("Tab");
  assert.equal(await page.evaluate(() => document.activeElement.textContent), "Skip to content");
  const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
  assert.notEqual(outline, "none");
  await page.close();
}));

test("tool calls in the log are collapsed and user text stays text", { timeout: 30_000 }, timed("log_rendering", async () => {
  const page = await openPage();
  await page.goto(`${server.url}/p/default/tasks/1`);
  // The log renderer on an agent's tool call, as the claude-code driver stores it.
  const shape = await page.evaluate(() => {
    const li = renderEvent({ kind: "agent", seq: 999, at: Date.now(), message: "Bash <img src=x onerror=alert(1)>",
      data: { type: "tool_call", name: "Bash", input: { command: "ls" } } });
    return { tag: li.firstElementChild?.tagName, open: li.firstElementChild?.open, imgs: li.querySelectorAll("img").length,
      summary: li.querySelector("summary").textContent, body: li.querySelector("pre").textContent };
  });
  assert.equal(shape.tag, "DETAILS");
  assert.equal(shape.open, false);
  assert.equal(shape.imgs, 0);
  assert.match(shape.summary, /tool call: Bash <img/);
  assert.match(shape.body, /"command": "ls"/);
  await page.close();
}));

test("readable at 200 % zoom and in the dark scheme", { timeout: 30_000 }, timed("zoom_and_dark", async () => {
  // 200 % zoom of a 1280 px window lays out like a 640 px one at scale 2.
  // The signed-in session carries over: only the window changes.
  const zoomed = await browser.newContext({ viewport: { width: 640, height: 450 }, deviceScaleFactor: 2, colorScheme: "dark",
    storageState: await context.storageState() });
  const page = await zoomed.newPage();
  for (const path of ["/p/default/tasks", "/p/default/tasks/1", "/p/default/templates/say-goodbye", "/p/default/tasks/new"]) {
    await page.goto(`${server.url}${path}`);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `${path} scrolls sideways by ${overflow}px at 200 %`);
  }
  const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
  assert.equal(bg, "rgb(13, 17, 23)", "the dark scheme applies");
  await page.goto(`${server.url}/p/default/tasks`);
  await page.screenshot({ path: join(SCREENSHOTS, "tasks-dark-200.png"), fullPage: true });
  await zoomed.close();
}));

test("sign-in: pages ask for a token, a wrong one is refused, sign-out ends the session", { timeout: 30_000 }, timed("sign_in", async () => {
  const fresh = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  const page = await fresh.newPage();
  await page.goto(`${server.url}/p/default/templates`);
  await page.waitForURL(/\/signin\?next=%2Fp%2Fdefault%2Ftemplates$/);
  await page.fill("#token", "nst_not-a-token");
  await page.click("button[type=submit]");
  assert.match(await page.locator("#signin-error").textContent(), /unknown or revoked/);
  await page.fill("#token", server.token);
  await page.click("button[type=submit]");
  await page.waitForURL(`${server.url}/p/default/templates`);
  assert.equal((await page.locator(".user").textContent()).trim(), "admin");
  await page.click("a.signout");
  await page.waitForURL(/\/signout$/);
  await page.click("button[type=submit]");
  await page.waitForURL(/\/signin$/);
  await page.goto(`${server.url}/p/default/tasks`);
  await page.waitForURL(/\/signin\?next=/);
  await fresh.close();
}));
