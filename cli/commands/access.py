"""`rollwatch access grant|list|revoke`: Kafka users (SCRAM) and their ACLs per LA and role."""

from __future__ import annotations

import argparse
import re
import secrets
import sys
import textwrap
from pathlib import Path
from typing import Any

from config.access import ROLE_HELP, ROLES, AccessError, Binding, env_file_text, role_bindings
from config.settings import Settings

#: A user's password: 192 random bits, URL-safe so that it fits an env file and SCRAM's syntax as it is.
PASSWORD_BYTES = 24

EPILOG = textwrap.dedent(
    """\
    Every action runs as the administrator in the ROLLWATCH_* settings, e.g. after
    `set -a; . .rollwatch/kafka/admin.env; set +a` for `rollwatch broker start --secure`.

    roles:
    """
) + "".join(
    textwrap.fill(text, width=100, initial_indent=f"  {role:<12} ", subsequent_indent=" " * 15) + "\n"
    for role, text in ROLE_HELP.items()
) + textwrap.dedent(
    """
    examples:
      rollwatch access grant --role cme-officer --la 330 --user officer330 --output officer330.env
      rollwatch --env-file officer330.env alerts --la 330 --recipient CME_OFFICER
      rollwatch access list
      rollwatch access grant --role ops --user ops-anna --output ops-anna.env
      rollwatch access grant --role ops-metrics --user rollwatch-dlq-exporter --output dlq-exporter.env
      rollwatch access revoke --user officer330
    """
)


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "access",
        help="grant, list or revoke Kafka access per LA and role",
        description="Create Kafka users (SCRAM-SHA-512) with the ACLs of one Rollwatch role, list them, revoke them.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="access_action", metavar="ACTION", required=True)
    grant = actions.add_parser(
        "grant",
        help="create a user with a role's ACLs and write its settings to an env file",
        description="Create (or reset the password of) a SCRAM user, add the ACLs of its role, and write the "
        "user's ROLLWATCH_* settings to --output (mode 0600).",
    )
    grant.add_argument("--role", required=True, choices=ROLES, help="what the user may do (see `access --help`)")
    grant.add_argument("--la", metavar="CODE", help="the 3-digit LA code (cme-officer, social-care, ehe-service)")
    grant.add_argument("--user", required=True, help="user name, e.g. officer330")
    grant.add_argument("--output", required=True, type=Path, metavar="FILE", help="env file to write (mode 0600)")
    actions.add_parser("list", help="list users and their ACLs", description="List SCRAM users and every ACL.")
    revoke = actions.add_parser(
        "revoke", help="delete a user's ACLs and credentials", description="Delete a user's ACLs and credentials."
    )
    revoke.add_argument("--user", required=True, help="user name")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.errors import KafkaError

    from cli.failures import require_kafka

    name = f"rollwatch access {args.access_action}"
    user = getattr(args, "user", None)
    if user is not None and not re.fullmatch(r"[A-Za-z0-9._-]{1,64}", user):
        print(f"{name}: a user name is 1 to 64 letters, digits, '.', '_' or '-'", file=sys.stderr)
        return 2
    require_kafka(settings)
    try:
        if args.access_action == "grant":
            return _grant(args, settings)
        admin = _admin(settings)
        try:
            if args.access_action == "list":
                return _list(admin)
            return _revoke(admin, args.user)
        finally:
            admin.close()
    except AccessError as error:
        print(f"{name}: {error}", file=sys.stderr)
    except KafkaError as error:
        print(f"{name}: Kafka refused or failed: {type(error).__name__}: {error}", file=sys.stderr)
    except OSError as error:
        print(f"{name}: {error}", file=sys.stderr)
    return 2


def _admin(settings: Settings) -> Any:
    from kafka import KafkaAdminClient

    from config.kafka import client_options

    return KafkaAdminClient(client_id="rollwatch-access", request_timeout_ms=15000, **client_options(settings))


def _acl(user: str, binding: Binding) -> Any:
    from kafka.admin import ACL, ACLOperation, ACLPermissionType, ACLResourcePatternType, ResourcePattern, ResourceType

    pattern = ResourcePattern(
        ResourceType[binding.resource], binding.name, ACLResourcePatternType[binding.pattern]
    )
    return ACL(f"User:{user}", "*", ACLOperation[binding.operation], ACLPermissionType.ALLOW, pattern)


def _user_filter(user: str | None) -> Any:
    from kafka.admin import (
        ACLFilter,
        ACLOperation,
        ACLPermissionType,
        ACLResourcePatternType,
        ResourcePatternFilter,
        ResourceType,
    )

    pattern = ResourcePatternFilter(ResourceType.ANY, None, ACLResourcePatternType.ANY)
    principal = f"User:{user}" if user is not None else None
    return ACLFilter(principal, None, ACLOperation.ANY, ACLPermissionType.ANY, pattern)


def _grant(args: argparse.Namespace, settings: Settings) -> int:
    from kafka.admin import ScramMechanism, UserScramCredentialUpsertion

    bindings = role_bindings(
        args.role,
        la_code=args.la,
        topic_prefix=settings.topic_prefix,
        app_id=settings.app_id,
        register_group=settings.register_group,
    )
    password = secrets.token_urlsafe(PASSWORD_BYTES)
    values = {
        "ROLLWATCH_BOOTSTRAP_SERVERS": settings.bootstrap_servers,
        "ROLLWATCH_SECURITY_PROTOCOL": settings.security_protocol,
        "ROLLWATCH_SASL_MECHANISM": "SCRAM-SHA-512",
        "ROLLWATCH_SASL_USERNAME": args.user,
        "ROLLWATCH_SASL_PASSWORD": password,
    }
    if settings.ssl_cafile is not None:
        values["ROLLWATCH_SSL_CAFILE"] = str(settings.ssl_cafile.absolute())
    if settings.topic_prefix:
        values["ROLLWATCH_TOPIC_PREFIX"] = settings.topic_prefix
    # The ACLs name the worker's app id and the register's group: the user must run under those names.
    if args.role == "worker":
        values["ROLLWATCH_APP_ID"] = settings.app_id
    if args.role == "register":
        values["ROLLWATCH_REGISTER_GROUP"] = settings.register_group
    text = env_file_text(values)
    admin = _admin(settings)
    try:
        failures = admin.alter_user_scram_credentials(
            [UserScramCredentialUpsertion(args.user, ScramMechanism.SCRAM_SHA_512, password)]
        )
        problem = failures.get(args.user)
        if problem:
            raise AccessError(f"Kafka did not store the credentials of {args.user}: {problem}")
        result = admin.create_acls([_acl(args.user, binding) for binding in bindings])
        if result.get("failed"):
            first = result["failed"][0]
            raise AccessError(f"Kafka did not store {len(result['failed'])} ACL(s) of {args.user}, e.g. {first}")
    finally:
        admin.close()
    _write_private(args.output, text)
    print(f"Granted {args.role}{f' for LA {args.la}' if args.la else ''} to {args.user}:")
    for binding in bindings:
        print(f"  {binding.describe()}")
    print(f"Settings of {args.user} (keep this file private): {args.output}")
    return 0


def _write_private(path: Path, text: str) -> None:
    import os

    path.unlink(missing_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(text)


def _list(admin: Any) -> int:
    from kafka.errors import NoError

    users = admin.describe_user_scram_credentials()
    acls, error = admin.describe_acls(_user_filter(None))
    if error is not None and not isinstance(error, NoError) and error is not NoError:
        print(f"rollwatch access list: Kafka did not list the ACLs: {error}", file=sys.stderr)
        return 2
    by_user: dict[str, list[str]] = {name: [] for name in users}
    for acl in acls:
        name = acl.principal.partition(":")[2]
        pattern = acl.resource_pattern
        scope = f"{pattern.resource_name}*" if pattern.pattern_type.name == "PREFIXED" else pattern.resource_name
        line = (
            f"{acl.permission_type.name} {acl.operation.name} {pattern.resource_type.name.lower().replace('_', '-')} "
            f"{scope}"
        )
        by_user.setdefault(name, []).append(line)
    if not by_user:
        print("No users.")
    for name in sorted(by_user):
        lines = sorted(by_user[name])
        print(f"{name}: {'SCRAM credentials' if name in users else 'no credentials'}, {len(lines)} ACL(s)")
        for line in lines:
            print(f"  {line}")
    return 0


def _revoke(admin: Any, user: str) -> int:
    from kafka.admin import ScramMechanism, UserScramCredentialDeletion

    results = admin.delete_acls([_user_filter(user)])
    removed = sum(len(matched) for _, matched, _ in results)
    described = admin.describe_user_scram_credentials([user])
    mechanisms = [info["mechanism"] for info in (described.get(user) or {}).get("credential_infos", [])]
    if mechanisms:
        failures = admin.alter_user_scram_credentials(
            [UserScramCredentialDeletion(user, ScramMechanism(m) if not isinstance(m, ScramMechanism) else m)
             for m in mechanisms]
        )
        if failures.get(user):
            raise AccessError(f"Kafka did not delete the credentials of {user}: {failures[user]}")
    print(f"Revoked {user}: {removed} ACL(s) and {len(mechanisms)} credential(s) deleted.")
    return 0
