"""``callstack token``: print a bearer token for the Core API, minted by the data dir's local issuer.

    TOKEN=$(callstack token)
    curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:63280/instances/<id>/async-completions ...

With Entra ID configured (FLLM_AUTH_TENANT_ID), tokens come from Entra ID instead, e.g.
``az account get-access-token --scope api://<client id>/Data.Read --query accessToken -o tsv``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from services.auth.config import AuthConfig, AuthConfigError
from services.auth.local_issuer import DEFAULT_TTL_S, MAX_TTL_S, LocalIssuer, TokenUser
from services.common.settings import Settings, SettingsError

DEFAULTS = TokenUser()


def cmd_token(args: argparse.Namespace) -> int:
    try:
        data_dir = Path(args.data_dir) if args.data_dir else Settings().data_dir  # FLLM_DATA_DIR
        config = AuthConfig.from_env(data_dir)
    except (AuthConfigError, SettingsError) as error:
        print(f"callstack token: {error}", file=sys.stderr)
        return 2
    if not config.local:
        scope = f"api://{config.client_id}/Data.Read" if config.client_id else "api://<Core API client id>/Data.Read"
        print("callstack token: the Core API trusts Entra ID here (FLLM_AUTH_*); get a token from it, e.g.\n"
              f"  az account get-access-token --scope {scope} --query accessToken -o tsv", file=sys.stderr)
        return 2
    if not 0 < args.ttl <= MAX_TTL_S:
        print(f"callstack token: --ttl must be between 1 and {MAX_TTL_S} seconds", file=sys.stderr)
        return 2
    issuer = LocalIssuer.ensure(data_dir)  # the same key `callstack up` uses (created here if it is first)
    user = TokenUser(upn=args.upn, name=args.name, oid=args.oid, groups=tuple(args.group or ()))
    token = issuer.mint(user, args.ttl)
    if args.json:
        print(json.dumps({"access_token": token, "token_type": "Bearer", "expires_in": int(args.ttl)}))
    else:
        print(token)
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    text = "print a bearer token for the Core API (the data dir's local issuer)"
    command = sub.add_parser("token", help=text, description=__doc__,
                             formatter_class=argparse.RawDescriptionHelpFormatter)
    command.add_argument("--data-dir", help="the data dir whose issuer signs it (default .callstack)")
    command.add_argument("--upn", default=DEFAULTS.upn, help=f"the user's UPN (default {DEFAULTS.upn})")
    command.add_argument("--name", default=DEFAULTS.name, help="the user's display name")
    command.add_argument("--oid", default=DEFAULTS.oid, help="the user's object id")
    command.add_argument("--group", action="append", help="a group id (repeatable)")
    command.add_argument("--ttl", type=float, default=DEFAULT_TTL_S, help="lifetime in seconds (default 3600)")
    command.add_argument("--json", action="store_true", help="print {access_token, token_type, expires_in}")
    command.set_defaults(func=cmd_token)
