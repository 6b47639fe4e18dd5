"""`disco tokens`: the admin issues, lists and revokes participant tokens of a task.

    disco tokens create --task T [--label "hospital A"]   # prints the token (shown once)
    disco tokens list --task T
    disco tokens revoke --task T --id TOKEN_ID            # closes its live connections

Talks to the server's admin routes (`/tasks/{id}/tokens`) with the admin token: `--admin-token`
or $DISCO_ADMIN_TOKEN. The task must require enrollment (`trainingInformation.requiresEnrollment`).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime
import sys
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

AddServer = Callable[[argparse.ArgumentParser], None]


def add_tokens_parser(commands: Any, add_server: AddServer) -> None:
    """`disco tokens create|list|revoke`."""
    tokens = commands.add_parser(
        "tokens",
        help="participant tokens of a task that requires enrollment (admin)",
        description="Issue, list and revoke participant tokens (needs the server's admin token).",
    )
    actions = tokens.add_subparsers(dest="tokens_command", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="issue a token (printed once on stdout)")
    listing = actions.add_parser("list", help="the task's tokens, by id")
    revoke = actions.add_parser("revoke", help="revoke a token and close its connections")
    for parser in (create, listing, revoke):
        add_server(parser)
        parser.add_argument("--task", required=True, help="task ID")
        parser.add_argument(
            "--admin-token",
            help="the server's admin token (default: $DISCO_ADMIN_TOKEN; prefer the variable)",
        )
    create.add_argument("--label", default="", help="who holds it, e.g. 'hospital A'")
    revoke.add_argument("--id", required=True, dest="token_id", help="the token's id")


def _when(created: object) -> str:
    if not isinstance(created, int | float):
        return "?"
    moment = datetime.datetime.fromtimestamp(created, tz=datetime.UTC)
    return moment.strftime("%Y-%m-%d %H:%M UTC")


async def _call(args: argparse.Namespace) -> int:
    from disco.cli.commands import out, server_of
    from disco.client.publish import admin_token
    from disco.client.remote import ServerError

    token = admin_token(args.admin_token)
    if token is None:
        raise ServerError("the admin token is needed: --admin-token or $DISCO_ADMIN_TOKEN")
    server = server_of(args)
    url = f"{server.url}/tasks/{quote(args.task, safe='')}/tokens"
    headers = {"Authorization": f"Bearer {token}"}
    async with server.http(15) as http:
        if args.tokens_command == "create":
            response = await http.post(url, json={"label": args.label}, headers=headers)
        elif args.tokens_command == "list":
            response = await http.get(url, headers=headers)
        else:
            target = f"{url}/{quote(args.token_id, safe='')}"
            response = await http.delete(target, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400:
        reason = body.get("error") if isinstance(body, dict) else None
        raise ServerError(f"{response.status_code} from {server.url}: {reason or response.text}")
    if args.tokens_command == "create":
        print(
            f"token {body['tokenID']} for task {body['taskID']} issued; it is shown only "
            "now (the server keeps its hash): give it to its holder",
            file=sys.stderr,
        )
        print(body["token"])
    elif args.tokens_command == "list":
        rows = body.get("tokens", [])
        if not rows:
            out.print(f"task {args.task} has no participant tokens", markup=False)
        for row in rows:
            state = "revoked" if row.get("revoked") else f"{row.get('connections', 0)} connected"
            line = f"{row.get('tokenID')}  {_when(row.get('created'))}  {state}"
            out.print(f"{line}  {row.get('label') or ''}".rstrip(), markup=False)
    else:
        out.print(f"token {body['tokenID']} of task {body['taskID']} revoked", markup=False)
    return 0


def tokens_command(args: argparse.Namespace) -> int:
    """`disco tokens ...`."""
    return asyncio.run(_call(args))
