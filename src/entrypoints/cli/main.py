"""`cronium-runtime`: the second entrypoint, driving the same container as the server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from domain.model import Principal
from entrypoints.version import VERSION


class UsageError(Exception):
    """A command line that cannot be carried out as written (exit status 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="cronium-runtime", description="The Cronium Runtime Service.")
    parser.add_argument("--version", action="version", version=f"cronium-runtime {VERSION}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    serve = commands.add_parser("serve", help="run the HTTP service")
    serve.add_argument(
        "--workers", type=_positive_int, help="worker processes (more than 1 needs Valkey)"
    )

    token = commands.add_parser("token", help="print an execution token, nothing else")
    token.add_argument("--execution", required=True, help="the execution id the token opens")
    token.add_argument("--user", help="the user id (default: embedded.userId)")
    token.add_argument("--event", help="the event id")
    token.add_argument("--job", help="the job id")
    token.add_argument("--ttl", help="lifetime such as 30m or 2h (default: auth.tokenExpiration)")
    return parser


def _positive_int(text: str) -> int:
    try:
        number = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        if args.command == "serve":
            from entrypoints.cli.serve import serve

            return serve(workers=args.workers)
        return _token(args)
    except UsageError as error:
        print(f"cronium-runtime: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # every failure is one line, never a traceback
        print(f"cronium-runtime: {error}", file=sys.stderr)
        return 1


def _token(args: argparse.Namespace) -> int:
    from entrypoints.container import Container
    from entrypoints.dev_secret import with_development_secret
    from entrypoints.settings import SettingsError, load_settings, parse_duration

    settings, _ = with_development_secret(load_settings())
    try:
        ttl = parse_duration(args.ttl) if args.ttl else settings.auth.token_expiration
    except (SettingsError, ValueError) as error:
        raise UsageError(f"--ttl: {error}") from None
    if ttl <= 0:
        raise UsageError("--ttl must be longer than zero")
    principal = Principal(
        execution_id=args.execution,
        user_id=args.user or settings.embedded.user_id,
        event_id=args.event,
        job_id=args.job,
    )
    print(Container(settings=settings).token_codec().issue(principal, ttl))
    return 0


if __name__ == "__main__":
    sys.exit(main())
