"""`cronium-runtime`: the second entrypoint, driving the same container as the server."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from domain.model import Principal
from entrypoints.version import VERSION

DEFAULT_AUDIT_LIMIT = 100


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

    executions = commands.add_parser("executions", help="executions of the embedded store")
    execution_commands = executions.add_subparsers(
        dest="action", required=True, parser_class=_Parser
    )
    create = execution_commands.add_parser(
        "create", help="create an execution; print its API URL, id and token"
    )
    given = create.add_mutually_exclusive_group()
    given.add_argument("--input", help="the execution's input, as JSON")
    given.add_argument("--input-file", help="a file holding the input as JSON (- for stdin)")
    create.add_argument("--event-name", help="the event's name (default: local)")
    create.add_argument("--event-type", help="the event's type (default: SCRIPT)")
    create.add_argument("--api-url", help="the URL scripts reach the runtime at")
    create.add_argument(
        "--json", action="store_true", help='one JSON object {"apiUrl", "executionId", "token"}'
    )

    variables = commands.add_parser("vars", help="the local user's variables")
    variable_commands = variables.add_subparsers(dest="action", required=True, parser_class=_Parser)
    listing = variable_commands.add_parser("list", help="one key per line")
    listing.add_argument("--json", action="store_true", help="a JSON array of {key, updatedAt}")
    variable_commands.add_parser("get", help="print the value as JSON").add_argument("key")
    setting = variable_commands.add_parser("set", help="set the value, given as JSON")
    setting.add_argument("key")
    setting.add_argument("value", help="the value as JSON, such as 42 or '\"text\"'")
    variable_commands.add_parser("delete", help="remove the variable").add_argument("key")

    trail = commands.add_parser(
        "audit", help="the audit trail kept in the local store (the store sink), oldest first"
    )
    trail.add_argument("--execution", help="only this execution's events")
    trail.add_argument(
        "--limit",
        type=_positive_int,
        default=DEFAULT_AUDIT_LIMIT,
        help=f"the newest N events (default {DEFAULT_AUDIT_LIMIT})",
    )
    trail.add_argument(
        "--json", action="store_true", help="a JSON array of the events in their wire form"
    )

    running = commands.add_parser(
        "run",
        help="run COMMAND against a local runtime and report what it did",
        usage="cronium-runtime run [options] -- COMMAND...",
    )
    given = running.add_mutually_exclusive_group()
    given.add_argument("--input", help="the execution's input, as JSON")
    given.add_argument("--input-file", help="a file holding the input as JSON (- for stdin)")
    running.add_argument(
        "--var",
        action="append",
        default=[],
        metavar="KEY=JSON",
        help="write a variable before the command starts (it persists); repeatable",
    )
    running.add_argument("--event-name", help="the event's name (default: local)")
    running.add_argument("--event-type", help="the event's type (default: SCRIPT)")
    tools = running.add_mutually_exclusive_group()
    tools.add_argument(
        "--dry-run-tools",
        dest="send_tools",
        action="store_false",
        help="answer tool actions without sending anything (the default)",
    )
    tools.add_argument(
        "--send-tools",
        dest="send_tools",
        action="store_true",
        help="send tool actions through the configured built-in tools",
    )
    running.set_defaults(send_tools=False)
    running.add_argument("--state", metavar="DIR", help="the store folder (default: store.path)")
    running.add_argument(
        "--json",
        action="store_true",
        help="one JSON summary on stdout; the command's output on stderr",
    )
    running.add_argument("run_command", nargs=argparse.REMAINDER, help="-- COMMAND...")
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
        run = {
            "serve": _serve,
            "token": _token,
            "executions": _create_execution,
            "vars": _variables,
            "audit": _audit,
            "run": _run,
        }[args.command]
        return run(args)
    except UsageError as error:
        print(f"cronium-runtime: {_one_line(error)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    except Exception as error:  # every failure is one line, never a traceback
        print(f"cronium-runtime: {_one_line(error)}", file=sys.stderr)
        return 1


def _one_line(error: Exception) -> str:
    """The error's message on one line, whatever a file name or a value in it holds."""
    return " ".join(str(error).splitlines()) or type(error).__name__


def _serve(args: argparse.Namespace) -> int:
    from entrypoints.cli.serve import serve

    return serve(workers=args.workers)


def _print(text: str) -> int:
    if text:
        print(text)
    return 0


def _create_execution(args: argparse.Namespace) -> int:
    from entrypoints.cli.local import create_execution, read_input
    from entrypoints.settings import load_settings

    try:
        input_value = read_input(args.input, args.input_file)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return _print(
        create_execution(
            load_settings(),
            input_value=input_value,
            event_name=args.event_name,
            event_type=args.event_type,
            api_url=args.api_url,
            as_json=args.json,
        )
    )


def _variables(args: argparse.Namespace) -> int:
    from entrypoints.cli.local import parse_json, variables
    from entrypoints.settings import load_settings

    value = None
    if args.action == "set":
        try:
            value = parse_json(args.value, "the value")
        except ValueError as error:
            raise UsageError(f"{error} (quote text as JSON: '\"text\"')") from None
    key, as_json = getattr(args, "key", None), getattr(args, "json", False)
    return _print(variables(load_settings(), args.action, key, value, as_json))


def _audit(args: argparse.Namespace) -> int:
    from entrypoints.cli.local import audit_events
    from entrypoints.settings import load_settings

    return _print(audit_events(load_settings(), args.execution, args.limit, args.json))


def _run(args: argparse.Namespace) -> int:
    from entrypoints.cli.local import parse_json, read_input
    from entrypoints.cli.run import RunOptions, run

    command = list(args.run_command)
    if command and command[0] == "--":
        command = command[1:]
    if not command:
        raise UsageError("run: no command given (cronium-runtime run [options] -- COMMAND...)")
    variables = []
    for item in args.var:
        key, equals, text = item.partition("=")
        if not equals or not key:
            raise UsageError(f"--var {item!r}: expected KEY=JSON")
        try:
            variables.append((key, parse_json(text, f"--var {key}")))
        except ValueError as error:
            raise UsageError(f"{error} (quote text as JSON: '\"text\"')") from None
    try:
        input_value = read_input(args.input, args.input_file)
    except ValueError as error:
        raise UsageError(str(error)) from None
    options = RunOptions(
        command=command,
        input_value=input_value,
        variables=variables,
        event_name=args.event_name,
        event_type=args.event_type,
        send_tools=args.send_tools,
        state=args.state,
        as_json=args.json,
    )
    return run(options)


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
