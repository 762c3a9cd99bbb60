"""`aps-api`: serve the API (default), or manage API keys.

    aps-api [serve] --host 127.0.0.1 --port 8080 [--workers N] [--no-access-log]
                                                # N: $APS_API_WORKERS, else one process per CPU
    aps-api keys create NAME [--db-url URL]     # prints the new key once, alone on a line
    aps-api keys list [--db-url URL]
    aps-api keys revoke ID [--db-url URL]

The server reads its settings from APS_API_* variables (see aps_api.settings). The keys commands need
write access, so they take an admin database URL from --db-url or APS_API_ADMIN_DATABASE_URL.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

ADMIN_URL_ENV = "APS_API_ADMIN_DATABASE_URL"
_COMMANDS = {"serve", "keys"}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="aps-api", description="Read-only APS results API.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the HTTP server (the default command)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8080)
    serve.add_argument(
        "--workers", type=int, default=None,
        help="server processes (default: $APS_API_WORKERS, else one per CPU this process may use; rate "
             "limits are per process)",
    )
    serve.add_argument(
        "--log-level", default="info", choices=["critical", "error", "warning", "info", "debug"]
    )
    serve.add_argument(
        "--no-access-log", action="store_true",
        help="do not log one line per request (production: the Prometheus metrics count requests)",
    )

    keys = commands.add_parser("keys", help="create, list or revoke API keys")
    keys.add_argument("--db-url", default=None, help=f"admin database URL (default: ${ADMIN_URL_ENV})")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it (once)")
    create.add_argument("name", help="who or what will use the key")
    key_commands.add_parser("list", help="list keys (prefix, name, state; never the key)")
    revoke = key_commands.add_parser("revoke", help="revoke a key by id")
    revoke.add_argument("id", type=int)
    for sub in (create, revoke, key_commands.choices["list"]):
        sub.add_argument(
            "--db-url", default=argparse.SUPPRESS, help=f"admin database URL (default: ${ADMIN_URL_ENV})"
        )
    return parser


def default_workers(configured: int | None) -> int:
    """Server processes when `--workers` is not given: APS_API_WORKERS (settings.workers) if set, else one
    per CPU the process may run on (a container's cpuset counts, not the host's cores): one process serves
    one core's worth of requests (the event loop and the JSON work are single-threaded)."""
    return configured if configured is not None else max(1, len(os.sched_getaffinity(0)))


def _serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from aps_api.settings import ENV_PREFIX, APISettings

    try:
        settings = APISettings()  # type: ignore[call-arg]  # fail early, with a readable message
    except ValidationError as exc:
        problems = "; ".join(
            f"{ENV_PREFIX}{'_'.join(str(p) for p in error['loc']).upper()}: {error['msg']}"
            for error in exc.errors()
        )
        print(f"aps-api: invalid settings: {problems}", file=sys.stderr)
        return 2
    workers = args.workers if args.workers is not None else default_workers(settings.workers)
    uvicorn.run(
        "aps_api.app:create_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=workers,
        log_level=args.log_level,
        access_log=not args.no_access_log,
        # Named, not "auto": without them uvicorn would fall back to asyncio's loop and the pure-Python
        # h11 parser quietly, at several times the CPU per request.
        loop="uvloop",
        http="httptools",
    )
    return 0


def _keys(args: argparse.Namespace) -> int:
    from aps_api import api_keys as keys

    db_url = args.db_url or os.environ.get(ADMIN_URL_ENV)
    if not db_url:
        print(f"aps-api keys: give an admin database URL with --db-url or {ADMIN_URL_ENV}", file=sys.stderr)
        return 2
    if args.keys_command == "create":
        try:
            created = keys.create_key(db_url, args.name)
        except ValueError as exc:
            print(f"aps-api keys: {exc}", file=sys.stderr)
            return 2
        print(
            f"created API key id={created.id} name={created.name!r}; it is shown only once:", file=sys.stderr
        )
        print(created.key)
        return 0
    if args.keys_command == "list":
        print(f"{'id':>6}  {'prefix':<12}  {'state':<8}  {'created':<25}  name")
        for info in keys.list_keys(db_url):
            state = "revoked" if info.revoked_at else "active"
            created_at = info.created_at.isoformat(timespec="seconds")
            print(f"{info.id:>6}  {info.key_prefix:<12}  {state:<8}  {created_at:<25}  {info.name}")
        return 0
    if keys.revoke_key(db_url, args.id):
        print(f"revoked API key id={args.id}")
        return 0
    print(f"aps-api keys: no active key with id {args.id}", file=sys.stderr)
    return 1


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or (argv[0] not in _COMMANDS and argv[0] not in ("-h", "--help")):
        argv.insert(0, "serve")  # `aps-api --host H --port P` serves
    args = _parser().parse_args(argv)
    return _serve(args) if args.command == "serve" else _keys(args)


if __name__ == "__main__":
    sys.exit(main())
