"""The LA's CME register in SQL: children, cases, alerts, deliveries and audit events, fed from the alert stream."""

from sinks.register.audit import AuditEvent
from sinks.register.deliveries import (
    WEBHOOK_CHANNEL,
    DeliveryLog,
    DeliveryRecord,
    MemoryDeliveryLog,
    PendingDelivery,
)
from sinks.register.engine import (
    RegisterNotReady,
    create_register_engine,
    current_revision,
    head_revision,
    migrate,
)
from sinks.register.feed import FeedStats, RegisterFeed, alert_topic_regex
from sinks.register.queries import (
    CaseDetails,
    CaseQuery,
    CaseSummary,
    LARegisterView,
    LATrends,
    OpenCase,
)
from sinks.register.retention import PurgeItem, PurgeReport, RetentionPolicy, add_years
from sinks.register.schema import Base, CaseStatus, DeliveryOutcome
from sinks.register.store import Register, open_register
from sinks.register.writer import BatchResult, MemoryRegisterWriter, RegisterWriter

__all__ = [
    "WEBHOOK_CHANNEL",
    "AuditEvent",
    "Base",
    "BatchResult",
    "CaseDetails",
    "CaseQuery",
    "CaseStatus",
    "CaseSummary",
    "DeliveryLog",
    "DeliveryOutcome",
    "DeliveryRecord",
    "FeedStats",
    "LARegisterView",
    "LATrends",
    "MemoryDeliveryLog",
    "MemoryRegisterWriter",
    "OpenCase",
    "PendingDelivery",
    "PurgeItem",
    "PurgeReport",
    "Register",
    "RegisterFeed",
    "RegisterNotReady",
    "RegisterWriter",
    "RetentionPolicy",
    "add_years",
    "alert_topic_regex",
    "create_register_engine",
    "current_revision",
    "head_revision",
    "migrate",
    "open_register",
]
