"""Who may do what on Kafka: each Rollwatch role's ACL bindings, as plain data for `rollwatch access`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from processors.records import (
    ATTENDANCE_REGISTERS,
    CASE_ACTIONS,
    CLOCK_TICKS,
    CME_REFERRALS,
    EHE_NOTIFICATIONS,
    INPUT_TOPICS,
    ROLL_EVENTS,
    SAFEGUARDING_STATUS,
    Recipient,
    alert_topic,
    dead_letter_topic,
)

ResourceKind = Literal["TOPIC", "GROUP", "TRANSACTIONAL_ID", "CLUSTER"]
PatternKind = Literal["LITERAL", "PREFIXED"]
Operation = Literal[
    "READ", "WRITE", "CREATE", "DESCRIBE", "DESCRIBE_CONFIGS", "ALTER_CONFIGS", "IDEMPOTENT_WRITE", "ALL"
]

#: Kafka's one cluster resource is always named so.
CLUSTER_NAME = "kafka-cluster"
#: The roles that read one LA's alerts for one recipient, and that recipient.
LA_ROLES = {
    "cme-officer": Recipient.CME_OFFICER,
    "social-care": Recipient.SOCIAL_CARE,
    "ehe-service": Recipient.EHE_SERVICE,
}
#: What an MIS (or the EHE service, social care's system, the scheduler) sends: never case.actions.
MIS_TOPICS = (ROLL_EVENTS, EHE_NOTIFICATIONS, SAFEGUARDING_STATUS, CLOCK_TICKS, ATTENDANCE_REGISTERS)
#: The compacted topic (under the deployment's prefix) where `rollwatch dlq republish` records what it sent.
DLQ_REPUBLISHED = "dlq.republished"
ROLES = (*LA_ROLES, "mis", "worker", "register", "ops", "ops-metrics")
ROLE_HELP = {
    "cme-officer": "read the LA's la.<LA>.alerts.cme-officer topic",
    "social-care": "read the LA's la.<LA>.alerts.social-care topic",
    "ehe-service": "read the LA's la.<LA>.alerts.ehe-service topic",
    "mis": "write the input topics " + ", ".join(MIS_TOPICS),
    "worker": "the stream worker: read inputs, write alerts and dead letters, its changelogs, group and transactions",
    "register": "register sync, case work and referral intake: read every alert topic, case.actions and "
    "cme.referrals, write case.actions and cme.referrals",
    "ops": "work dead letters (rollwatch dlq list, show, republish): read <input>.dlq, read and write "
    "dlq.republished, write the input topics",
    "ops-metrics": "the dead-letter exporter (rollwatch dlq exporter): read <input>.dlq and dlq.republished only",
}


class AccessError(ValueError):
    """A role was asked for with the wrong arguments (an unknown role, a missing or malformed LA code)."""


@dataclass(frozen=True, order=True)
class Binding:
    """One ALLOW rule for one user, on any host: `operation` on the resource(s) `name` (and pattern) denote."""

    resource: ResourceKind
    name: str
    pattern: PatternKind
    operation: Operation

    def describe(self) -> str:
        scope = f"{self.name}*" if self.pattern == "PREFIXED" else self.name
        return f"{self.operation} {self.resource.lower().replace('_', '-')} {scope}"


def _grant(resource: ResourceKind, name: str, pattern: PatternKind, *operations: Operation) -> list[Binding]:
    return [Binding(resource, name, pattern, operation) for operation in operations]


def role_bindings(
    role: str,
    *,
    la_code: str | None = None,
    topic_prefix: str = "",
    app_id: str = "rollwatch",
    register_group: str = "rollwatch-register",
) -> list[Binding]:
    """The ALLOW bindings a user of `role` needs, and nothing more, for a deployment's prefix and names."""
    if role not in ROLES:
        raise AccessError(f"unknown role {role!r}; the roles are {', '.join(ROLES)}")
    if role in LA_ROLES:
        if la_code is None or not re.fullmatch(r"\d{3}", la_code):
            raise AccessError(f"the {role} role belongs to one LA: give its 3-digit code with --la")
    elif la_code is not None:
        raise AccessError(f"the {role} role is not per LA; leave out --la")
    bindings: list[Binding] = []

    def topic(name: str) -> str:
        return f"{topic_prefix}{name}"

    if role in LA_ROLES:
        alerts = topic(alert_topic(str(la_code), LA_ROLES[role]))
        bindings += _grant("TOPIC", alerts, "LITERAL", "READ", "DESCRIBE")
        # A consumer group named after the topic, and only such, so that one LA's groups cannot be joined
        # (or their offsets read) by another's.
        bindings += _grant("GROUP", alerts, "PREFIXED", "READ", "DESCRIBE")
    elif role == "mis":
        for name in MIS_TOPICS:
            bindings += _grant("TOPIC", topic(name), "LITERAL", "WRITE", "DESCRIBE")
    elif role == "worker":
        for name in INPUT_TOPICS:
            bindings += _grant("TOPIC", topic(name), "LITERAL", "READ", "DESCRIBE", "DESCRIBE_CONFIGS")
            bindings += _grant("TOPIC", topic(dead_letter_topic(name)), "LITERAL", "WRITE", "DESCRIBE", "CREATE")
        # The live clock sends its own ticks.
        bindings += _grant("TOPIC", topic(CLOCK_TICKS), "LITERAL", "WRITE")
        bindings += _grant("TOPIC", topic("la."), "PREFIXED", "WRITE", "DESCRIBE", "CREATE", "DESCRIBE_CONFIGS")
        # Changelogs and Faust's own topics (<app id>-...), which it creates, reads and writes.
        bindings += _grant("TOPIC", f"{app_id}-", "PREFIXED", "ALL")
        bindings += _grant("GROUP", app_id, "PREFIXED", "READ", "DESCRIBE")
        bindings += _grant("TRANSACTIONAL_ID", app_id, "PREFIXED", "WRITE", "DESCRIBE")
        bindings += _grant("CLUSTER", CLUSTER_NAME, "LITERAL", "CREATE", "IDEMPOTENT_WRITE", "DESCRIBE_CONFIGS")
    elif role == "register":
        bindings += _grant("TOPIC", topic("la."), "PREFIXED", "READ", "DESCRIBE")
        bindings += _grant("TOPIC", topic(CASE_ACTIONS), "LITERAL", "READ", "WRITE", "DESCRIBE")
        # The LA's own intake (the dashboard's referral form and the partners' endpoint) publishes referrals
        # for the worker to decide, and register sync reads them back to keep the referrer's details, which
        # alerts never carry; partner agencies never reach Kafka themselves.
        bindings += _grant("TOPIC", topic(CME_REFERRALS), "LITERAL", "READ", "WRITE", "DESCRIBE")
        bindings += _grant("GROUP", register_group, "LITERAL", "READ", "DESCRIBE")
    else:
        # `rollwatch dlq` reads by partition with no consumer group (it commits nothing), so neither role has
        # a group; the exporter's role may only read, so a long-running process holds no right to write.
        for name in INPUT_TOPICS:
            bindings += _grant("TOPIC", topic(dead_letter_topic(name)), "LITERAL", "READ", "DESCRIBE")
        bindings += _grant("TOPIC", topic(DLQ_REPUBLISHED), "LITERAL", "READ", "DESCRIBE")
        if role == "ops":
            # Republishing sends each letter back to its input and records it; the first run creates the record
            # topic. An idempotent producer needs no IDEMPOTENT_WRITE on the cluster since Kafka 3.0 (KIP-679):
            # WRITE on a topic is enough.
            bindings += _grant("TOPIC", topic(DLQ_REPUBLISHED), "LITERAL", "WRITE", "CREATE")
            for name in INPUT_TOPICS:
                bindings += _grant("TOPIC", topic(name), "LITERAL", "WRITE", "DESCRIBE")
    return sorted(set(bindings))


def env_file_text(values: dict[str, str]) -> str:
    """An env file (KEY=value lines) that `set -a; . FILE` and `rollwatch --env-file FILE` both read."""
    for key, value in values.items():
        if not re.fullmatch(r"[A-Z][A-Z0-9_]*", key) or re.search(r"[\s'\"\\$`#]", value):
            raise AccessError(f"{key} cannot go into an env file as it stands")
    return "".join(f"{key}={value}\n" for key, value in values.items())
