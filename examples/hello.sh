#!/usr/bin/env bash
# A Cronium script that calls the runtime directly, the way the Cronium helpers do.
#
# bash, curl and jq. Run it locally with:
#
#     ./dev cli run --input '{"name": "Ada"}' -- bash examples/hello.sh
#
# It reads its input and the variable `runs`, writes `runs` + 1, sets its output and the
# workflow condition, and sends a Slack message through the runtime's tool endpoint (a dry
# run under `cronium-runtime run` unless `--send-tools`).
set -euo pipefail

API=${CRONIUM_RUNTIME_API%/}
EXECUTION="$API/executions/$(jq -rn --arg id "$CRONIUM_EXECUTION_ID" '$id | @uri')"
AUTH="Authorization: Bearer $CRONIUM_EXECUTION_TOKEN"

# call METHOD URL [JSON]: the answer's body on stdout. An error answer ends the script, but
# with MISSING_OK=1 a 404 prints nothing (an unknown variable: the helpers return null for it).
call() {
  local method=$1 url=$2 body=${3-} answer status
  local args=(-sS -X "$method" -H "$AUTH" -H 'Accept: application/json' -w '\n%{http_code}')
  if [ -n "$body" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$body"); fi
  answer=$(curl "${args[@]}" "$url")
  status=${answer##*$'\n'}
  answer=${answer%$'\n'*}
  if [ "$status" = 404 ] && [ "${MISSING_OK:-0}" = 1 ]; then return 0; fi
  if [ "${status:0:1}" != 2 ]; then
    echo "$method $url: $status $answer" >&2
    exit 1
  fi
  printf '%s\n' "$answer"
}

name=$(call GET "$EXECUTION/input" | jq -r '(.data | objects | .name) // "world"')

found=$(MISSING_OK=1 call GET "$EXECUTION/variables/runs")
runs=$(( $(jq -n --argjson found "${found:-null}" '$found.data.value // 0') + 1 ))
call PUT "$EXECUTION/variables/runs" "$(jq -cn --argjson n "$runs" '{value: $n}')" >/dev/null

greeting="hello, $name"
call POST "$EXECUTION/output" \
  "$(jq -cn --arg g "$greeting" --argjson n "$runs" '{data: {greeting: $g, runs: $n}}')" >/dev/null
call POST "$EXECUTION/condition" '{"condition": true}' >/dev/null

# `config`, as the Python and Bash helpers send it (the Node helper sends `params`).
text="$greeting (run $runs)"
result=$(call POST "$API/tool-actions/execute" \
  "$(jq -cn --arg t "$text" '{tool: "slack", action: "send_message", config: {text: $t}}')")
if [ "$(jq -r '.success' <<<"$result")" != true ]; then
  echo "slack send_message failed: $(jq -r '"\(.code) \(.error)"' <<<"$result")" >&2
  exit 1
fi

echo "$text"
if [ "$(jq -r '.metadata.dryRun // false' <<<"$result")" = true ]; then
  echo "slack send_message: dry run, not sent"
else
  echo "slack send_message: sent"
fi
