// A Cronium script that calls the runtime directly, the way the Cronium helpers do.
//
// Node 18 or later (the built-in fetch), no packages. Run it locally with:
//
//     ./dev cli run --input '{"name": "Ada"}' -- node examples/hello.mjs
//
// It reads its input and the variable `runs`, writes `runs` + 1, sets its output and the
// workflow condition, and sends a Slack message through the runtime's tool endpoint (a dry
// run under `cronium-runtime run` unless `--send-tools`).

const API = process.env.CRONIUM_RUNTIME_API.replace(/\/+$/, "");
const TOKEN = process.env.CRONIUM_EXECUTION_TOKEN;
const EXECUTION = `${API}/executions/${encodeURIComponent(process.env.CRONIUM_EXECUTION_ID)}`;

// One request; the answer's JSON. An error answer ends the script, but for a 404 with
// `missingOk`, which is null (an unknown variable: the helpers return null for it).
async function call(method, url, body, { missingOk = false } = {}) {
  const headers = { Authorization: `Bearer ${TOKEN}`, Accept: "application/json" };
  const init = { method, headers };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const answer = await fetch(url, init);
  if (answer.status === 404 && missingOk) return null;
  if (!answer.ok) {
    console.error(`${method} ${url}: ${answer.status} ${await answer.text()}`);
    process.exit(1);
  }
  return answer.json();
}

const given = (await call("GET", `${EXECUTION}/input`)).data;
const name = given !== null && typeof given === "object" && "name" in given ? given.name : "world";

const found = await call("GET", `${EXECUTION}/variables/runs`, undefined, { missingOk: true });
const runs = (found === null ? 0 : found.data.value) + 1;
await call("PUT", `${EXECUTION}/variables/runs`, { value: runs });

const greeting = `hello, ${name}`;
await call("POST", `${EXECUTION}/output`, { data: { greeting, runs } });
await call("POST", `${EXECUTION}/condition`, { condition: true });

// `config`, as the Python and Bash helpers send it (the Node helper sends `params`).
const result = await call("POST", `${API}/tool-actions/execute`, {
  tool: "slack",
  action: "send_message",
  config: { text: `${greeting} (run ${runs})` },
});
if (!result.success) {
  console.error(`slack send_message failed: ${result.code} ${result.error}`);
  process.exit(1);
}

console.log(`${greeting} (run ${runs})`);
console.log(`slack send_message: ${result.metadata?.dryRun ? "dry run, not sent" : "sent"}`);
