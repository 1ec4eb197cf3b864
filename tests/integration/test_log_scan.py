"""What the service writes, at debug level, never carries a credential or a value: no token,
no secret, no variable, output, input or tool parameter, whatever the requests were."""

from __future__ import annotations

import http.client
import json
import time
import uuid
from typing import TYPE_CHECKING

import jwt
import pytest

if TYPE_CHECKING:
    from conftest import RunCli, ServerProcess, StartServer


def distinctive(label: str) -> str:
    return f"{label}-{uuid.uuid4().hex}"


def send_raw(server: ServerProcess, method: str, path: str, token: str, body: bytes) -> int:
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            method,
            path,
            body=body,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        answer = connection.getresponse()
        answer.read()
        return answer.status
    finally:
        connection.close()


@pytest.mark.parametrize("log_format", ["json", "text"])
def test_a_debug_run_logs_no_token_secret_or_value(
    start_server: StartServer, run_cli: RunCli, log_format: str
) -> None:
    secrets = {
        "JWT secret": distinctive("jwt-secret-at-least-32-bytes"),
        "backend token": distinctive("backend-token"),
        "internal token": distinctive("internal-token"),
        "audit key": distinctive("audit-hmac-key"),
        "email password": distinctive("email-password"),
    }
    server = start_server(
        LOG_LEVEL="debug",
        LOG_FORMAT=log_format,
        JWT_SECRET=secrets["JWT secret"],
        BACKEND_TOKEN=secrets["backend token"],
        INTERNAL_TOKEN=secrets["internal token"],
        AUDIT_HMAC_KEY=secrets["audit key"],
        TOOLS_EMAIL_PASSWORD=secrets["email password"],
        TOOLS_DRY_RUN="true",
    )
    values = {
        "input": distinctive("input-value"),
        "variable": distinctive("variable-value"),
        "output": distinctive("output-value"),
        "tool parameter": distinctive("tool-param"),
        "webhook header": distinctive("webhook-header"),
        "bad body": distinctive("bad-body"),
    }
    created = run_cli(
        server.env, "executions", "create", "--json", "--input", json.dumps({"v": values["input"]})
    )
    assert created.returncode == 0, created.stderr
    execution = json.loads(created.stdout)
    other = json.loads(run_cli(server.env, "executions", "create", "--json").stdout)
    token = execution["token"]
    forged = jwt.encode(
        {"executionId": execution["executionId"], "userId": "local", "exp": int(time.time()) + 60},
        distinctive("another-secret-also-32-bytes-long"),
        algorithm="HS256",
    )
    run = f"/executions/{execution['executionId']}"
    auth = {"Authorization": f"Bearer {token}"}

    answers = [
        server.request("GET", f"{run}/input", headers=auth),
        server.request("GET", f"{run}/context", headers=auth),
        server.request(
            "PUT", f"{run}/variables/k", body={"value": values["variable"]}, headers=auth
        ),
        server.request("GET", f"{run}/variables/k", headers=auth),
        server.request("GET", f"{run}/variables", headers=auth),
        server.request("POST", f"{run}/output", body={"data": values["output"]}, headers=auth),
        server.request("POST", f"{run}/condition", body={"condition": True}, headers=auth),
        server.request(
            "POST",
            "/tool-actions/execute",
            body={"tool": "log", "action": "note", "params": {"text": values["tool parameter"]}},
            headers={**auth, "Idempotency-Key": "scan-1"},
        ),
        server.request(
            "POST",
            "/tool-actions/execute",
            body={
                "tool": "webhook",
                "action": "post",
                "config": {
                    "body": {"v": values["tool parameter"]},
                    "headers": {"X-Token": values["webhook header"]},
                },
            },
            headers=auth,
        ),
        server.request("DELETE", f"{run}/variables/k", headers=auth),
        server.request(
            "POST",
            f"/internal/executions/{other['executionId']}/revoke",
            headers={"Authorization": f"Bearer {secrets['internal token']}"},
        ),
    ]
    refused = [
        server.request("GET", f"{run}/input", headers={"Authorization": f"Bearer {forged}"}),
        server.request("GET", f"{run}/input", headers={"Authorization": f"Bearer {token}x"}),
        server.request(
            "POST",
            f"/internal/executions/{other['executionId']}/revoke",
            headers={"Authorization": f"Bearer {secrets['backend token']}"},
        ),
        server.request("GET", f"/executions/{other['executionId']}/input", headers=auth),
    ]
    bad_body = send_raw(
        server, "PUT", f"{run}/variables/k", token, f'{{"value": "{values["bad body"]}'.encode()
    )
    assert [answer.status for answer in answers] == [200] * len(answers)
    assert [answer.status for answer in refused] == [401, 401, 401, 403]
    assert bad_body == 400

    assert server.stop() == 0
    logs = server.stdout + server.stderr
    assert "GET /executions/{execution_id}/input 401" in logs  # the refusals were logged
    leaks = {
        **secrets,
        **values,
        "execution token": token,
        "forged token": forged,
        # A token's claims and signature, should a line carry only a part of it.
        "execution token payload": token.split(".")[1],
        "execution token signature": token.split(".")[2],
        "forged token signature": forged.split(".")[2],
    }
    for name, leak in leaks.items():
        lines = [line for line in logs.splitlines() if leak in line]
        assert not lines, f"the {name} is in the log: {lines[:3]}"
