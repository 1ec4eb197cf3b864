"""Mints a token per execution with the service's own CLI, `cronium-runtime token`, called
in this one process rather than started once per token (a start takes most of a second,
and the benchmark needs hundreds of tokens).

    python -m bench.mint_tokens TTL < "execution user" lines > "execution token" lines

Run it with the service's environment, so the tokens are signed with its JWT secret.
"""

from __future__ import annotations

import contextlib
import io
import sys

from entrypoints.cli.main import main as cronium_runtime


def main() -> int:
    ttl = sys.argv[1]
    for line in sys.stdin:
        execution, user = line.split()
        printed = io.StringIO()
        with contextlib.redirect_stdout(printed):
            status = cronium_runtime(
                ["token", "--execution", execution, "--user", user, "--ttl", ttl]
            )
        if status != 0:
            return status  # the CLI has said why on stderr
        sys.stdout.write(f"{execution} {printed.getvalue().strip()}\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
