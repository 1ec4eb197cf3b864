#!/usr/bin/env python3
"""A Cronium script that calls the runtime directly, the way the Cronium helpers do.

Standard library only. Run it locally with:

    ./dev cli run --input '{"name": "Ada"}' -- python3 examples/hello.py

It reads its input and the variable `runs`, writes `runs` + 1, sets its output and the
workflow condition, and sends a Slack message through the runtime's tool endpoint (a dry run
under `cronium-runtime run` unless `--send-tools`).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

API = os.environ["CRONIUM_RUNTIME_API"].rstrip("/")
EXECUTION_ID = os.environ["CRONIUM_EXECUTION_ID"]
TOKEN = os.environ["CRONIUM_EXECUTION_TOKEN"]
EXECUTION = f"{API}/executions/{urllib.parse.quote(EXECUTION_ID, safe='')}"
if urllib.parse.urlsplit(API).scheme not in {"http", "https"}:
    sys.exit(f"CRONIUM_RUNTIME_API must be an http or https URL, not {API!r}")


def call(method: str, url: str, body: Any = None, *, missing_ok: bool = False) -> Any:
    """One request; the answer's JSON. An error answer ends the script, but for a 404 with
    `missing_ok`, which is None (an unknown variable: the helpers return None for it)."""
    headers = {"Authorization": f"Bearer {TOKEN}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    # Every URL starts with API, checked above to be http(s).
    request = urllib.request.Request(url, data=data, headers=headers, method=method)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310
            return json.load(answer)
    except urllib.error.HTTPError as error:
        if error.code == 404 and missing_ok:
            return None
        sys.exit(f"{method} {url}: {error.code} {error.read().decode(errors='replace')}")
    except urllib.error.URLError as error:
        sys.exit(f"{method} {url}: {error.reason}")


def main() -> None:
    given = call("GET", f"{EXECUTION}/input")["data"]
    name = given.get("name", "world") if isinstance(given, dict) else "world"

    found = call("GET", f"{EXECUTION}/variables/runs", missing_ok=True)
    runs = 0 if found is None else found["data"]["value"]
    runs += 1
    call("PUT", f"{EXECUTION}/variables/runs", {"value": runs})

    greeting = f"hello, {name}"
    call("POST", f"{EXECUTION}/output", {"data": {"greeting": greeting, "runs": runs}})
    call("POST", f"{EXECUTION}/condition", {"condition": True})

    # `config`, as the Python and Bash helpers send it (the Node helper sends `params`).
    result = call(
        "POST",
        f"{API}/tool-actions/execute",
        {"tool": "slack", "action": "send_message", "config": {"text": f"{greeting} (run {runs})"}},
    )
    if not result.get("success"):
        sys.exit(f"slack send_message failed: {result.get('code')} {result.get('error')}")

    print(f"{greeting} (run {runs})")
    dry = (result.get("metadata") or {}).get("dryRun")
    print(f"slack send_message: {'dry run, not sent' if dry else 'sent'}")


if __name__ == "__main__":
    main()
