"""Domain records: the frozen dataclasses and enums behind every topic's contract."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from enum import StrEnum


class EventType(StrEnum):
    ADDED = "ADDED"
    REMOVED = "REMOVED"


class Ground(StrEnum):
    """Grounds for deletion, reg 9(1) of the 2024 pupil registration regulations."""

    A_REGISTERED_ELSEWHERE = "A_REGISTERED_ELSEWHERE"
    B_NURSERY_ENDED = "B_NURSERY_ENDED"
    C_DUAL_REGISTRATION_ENDED = "C_DUAL_REGISTRATION_ENDED"
    D_SAO_AMENDED = "D_SAO_AMENDED"
    E_SAO_REVOKED = "E_SAO_REVOKED"
    F_HOME_EDUCATION = "F_HOME_EDUCATION"
    G_MOVED_AWAY = "G_MOVED_AWAY"
    H_NOT_RETURNED_FROM_LEAVE = "H_NOT_RETURNED_FROM_LEAVE"
    I_CONTINUOUS_ABSENCE = "I_CONTINUOUS_ABSENCE"
    J_DETAINED = "J_DETAINED"
    K_DIED = "K_DIED"
    L_CEASED_COMPULSORY_AGE = "L_CEASED_COMPULSORY_AGE"
    M_BOARDING_FEES_UNPAID = "M_BOARDING_FEES_UNPAID"
    N_LEFT_INDEPENDENT_SCHOOL = "N_LEFT_INDEPENDENT_SCHOOL"
    O_PERMANENTLY_EXCLUDED = "O_PERMANENTLY_EXCLUDED"


class DestinationKind(StrEnum):
    SCHOOL = "SCHOOL"
    OTHER_LA = "OTHER_LA"
    ABROAD = "ABROAD"
    UNKNOWN = "UNKNOWN"


class EHEMethod(StrEnum):
    WRITTEN = "WRITTEN"
    ORAL = "ORAL"


class Recipient(StrEnum):
    CME_OFFICER = "CME_OFFICER"
    SOCIAL_CARE = "SOCIAL_CARE"
    EHE_SERVICE = "EHE_SERVICE"

    @property
    def topic_suffix(self) -> str:
        """The recipient part of an `la.<LA>.alerts.<recipient>` topic name."""
        return self.value.lower().replace("_", "-")


class Severity(StrEnum):
    IMMEDIATE = "IMMEDIATE"
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    INFO = "INFO"


class Rule(StrEnum):
    MISSING_NO_DESTINATION = "MISSING_NO_DESTINATION"
    TRANSITION_NOT_COMPLETED = "TRANSITION_NOT_COMPLETED"
    TRANSFER_NOT_STARTED = "TRANSFER_NOT_STARTED"
    MOVED_OUT_OF_AREA = "MOVED_OUT_OF_AREA"
    EHE_NOTIFIED = "EHE_NOTIFIED"
    EHE_NOT_CONFIRMED = "EHE_NOT_CONFIRMED"
    EHE_CONSENT_REQUIRED = "EHE_CONSENT_REQUIRED"
    EHE_PROTECTED_CHILD = "EHE_PROTECTED_CHILD"
    ORAL_EHE_INDICATION = "ORAL_EHE_INDICATION"
    EXCLUDED_NO_PROVISION = "EXCLUDED_NO_PROVISION"
    CHILD_LOCATED = "CHILD_LOCATED"
    OPEN_CASE_PROTECTED = "OPEN_CASE_PROTECTED"
    ABSENCE_ENQUIRIES_DUE = "ABSENCE_ENQUIRIES_DUE"
    NOT_RETURNED_FROM_LEAVE = "NOT_RETURNED_FROM_LEAVE"
    ABSENCE_REMOVAL_UNSUPPORTED = "ABSENCE_REMOVAL_UNSUPPORTED"
    NO_SHOW_AFTER_ADMISSION = "NO_SHOW_AFTER_ADMISSION"
    REFERRAL_NOT_ON_ROLL = "REFERRAL_NOT_ON_ROLL"
    REFERRAL_ON_ROLL = "REFERRAL_ON_ROLL"


@dataclass(frozen=True, slots=True)
class Child:
    forename: str
    surname: str
    date_of_birth: date
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class School:
    urn: str
    laestab: str
    name: str
    special: bool

    @property
    def la_code(self) -> str:
        return self.laestab[:3]


@dataclass(frozen=True, slots=True)
class Destination:
    kind: DestinationKind
    school_urn: str | None = None
    school_laestab: str | None = None
    la_code: str | None = None

    @property
    def destination_la(self) -> str | None:
        """The destination LA: the given LA code, else the LA digits of the school's LAESTAB."""
        if self.la_code:
            return self.la_code
        if self.school_laestab:
            return self.school_laestab[:3]
        return None


@dataclass(frozen=True, slots=True)
class RollEvent:
    event_id: str
    event_type: EventType
    upn: str
    child: Child
    school: School
    effective_date: date
    recorded_at: datetime
    source_system: str
    ground: Ground | None = None
    destination: Destination | None = None
    standard_transition: bool = False


@dataclass(frozen=True, slots=True)
class EHENotification:
    notification_id: str
    upn: str
    la_code: str
    method: EHEMethod
    received_on: date
    school_urn: str | None = None


@dataclass(frozen=True, slots=True)
class SocialWorker:
    name: str
    email: str


@dataclass(frozen=True, slots=True)
class SafeguardingStatus:
    upn: str
    la_code: str
    child_protection_plan: bool
    looked_after: bool
    school_attendance_order: bool
    updated_at: datetime
    social_worker: SocialWorker | None = None

    @property
    def protected(self) -> bool:
        return self.child_protection_plan or self.looked_after


@dataclass(frozen=True, slots=True)
class AttendanceMark:
    """One pupil's day at a school: the morning and afternoon session codes (domain.md 5)."""

    upn: str
    am: str
    pm: str


@dataclass(frozen=True, slots=True)
class AttendanceRegister:
    """One school's marks for one day; a school may split a day into several registers."""

    register_id: str
    school: School
    date: date
    recorded_at: datetime
    marks: tuple[AttendanceMark, ...]


@dataclass(frozen=True, slots=True)
class MarkBatch:
    """The marks of one register whose children live on one partition, with each mark's index in the
    register (what a per-mark dead letter names)."""

    register_id: str
    school: School
    date: date
    recorded_at: datetime
    marks: tuple[AttendanceMark, ...]
    indexes: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ClockTick:
    today: date


class ReferralConcern(StrEnum):
    NOT_IN_SCHOOL = "NOT_IN_SCHOOL"
    NOT_ATTENDING = "NOT_ATTENDING"
    EDUCATION_UNSUITABLE = "EDUCATION_UNSUITABLE"
    NEW_TO_AREA = "NEW_TO_AREA"
    OTHER = "OTHER"


class ReferrerAgency(StrEnum):
    SCHOOL = "SCHOOL"
    HEALTH = "HEALTH"
    HOUSING = "HOUSING"
    POLICE = "POLICE"
    YOUTH_JUSTICE = "YOUTH_JUSTICE"
    SOCIAL_CARE = "SOCIAL_CARE"
    VOLUNTARY = "VOLUNTARY"
    PUBLIC = "PUBLIC"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class ReferralChild:
    """A referred child as the referrer knows them."""

    forename: str
    surname: str
    date_of_birth: date | None = None
    postcode: str | None = None


@dataclass(frozen=True, slots=True)
class Referrer:
    """Who referred; anonymous when neither name nor contact is given."""

    agency: ReferrerAgency
    name: str | None = None
    contact: str | None = None

    @property
    def anonymous(self) -> bool:
        """Neither name nor contact given; blank counts as not given."""
        return not (self.name or "").strip() and not (self.contact or "").strip()


@dataclass(frozen=True, slots=True)
class CMEReferral:
    """A practitioner's or the public's report of a child who may be missing education."""

    referral_id: str
    received_on: date
    la_code: str
    upn: str | None
    child: ReferralChild
    concern: ReferralConcern
    referrer: Referrer
    details: str | None = None

    @property
    def key(self) -> str:
        """The message key on cme.referrals: the UPN, else the referral id."""
        return self.upn or self.referral_id


class CaseActionType(StrEnum):
    CLOSE = "CLOSE"
    NOTE = "NOTE"
    ASSIGN = "ASSIGN"
    LINK = "LINK"


class CloseReason(StrEnum):
    LOCATED_AT_SCHOOL = "LOCATED_AT_SCHOOL"
    HOME_EDUCATION_CONFIRMED = "HOME_EDUCATION_CONFIRMED"
    LEFT_ENGLAND_CONFIRMED = "LEFT_ENGLAND_CONFIRMED"
    MOVED_TO_OTHER_LA = "MOVED_TO_OTHER_LA"
    DIED = "DIED"
    OTHER = "OTHER"


class EnquiryKind(StrEnum):
    SCHOOL_CONTACTED = "SCHOOL_CONTACTED"
    FAMILY_CONTACTED = "FAMILY_CONTACTED"
    HOME_VISIT = "HOME_VISIT"
    OTHER_LA_CONTACTED = "OTHER_LA_CONTACTED"
    LOST_PUPIL_DATABASE_CHECKED = "LOST_PUPIL_DATABASE_CHECKED"
    HEALTH_OR_HOUSING_CHECKED = "HEALTH_OR_HOUSING_CHECKED"
    OTHER = "OTHER"


@dataclass(frozen=True, slots=True)
class CaseEnquiry:
    """One reasonable enquiry an officer made on a case, and what it found."""

    kind: EnquiryKind
    outcome: str


@dataclass(frozen=True, slots=True)
class CaseAction:
    """An officer's work on a CME case: closing and linking change the child's state; every action is recorded."""

    action_id: str
    upn: str | None
    case_id: str
    action: CaseActionType
    reason: str
    by: str
    at: datetime
    referral_id: str | None = None
    close_reason: CloseReason | None = None
    enquiry: CaseEnquiry | None = None
    assignee: str | None = None
    la_code: str | None = None

    @property
    def key(self) -> str:
        """The message key on case.actions: the UPN, else the referral id."""
        return self.upn or self.referral_id or ""


@dataclass(frozen=True, slots=True)
class AlertChild:
    """What an officer needs to identify the child: no address, no postcode."""

    forename: str
    surname: str
    date_of_birth: date


@dataclass(frozen=True, slots=True)
class Alert:
    alert_id: str
    rule: Rule
    recipient: Recipient
    la_code: str
    severity: Severity
    upn: str | None
    child: AlertChild | None
    school_urn: str | None
    raised_on: date
    reason: str
    trigger_event_ids: tuple[str, ...] = field(default_factory=tuple)
    case_id: str | None = None
    referral_id: str | None = None

    @property
    def key(self) -> str:
        """The message key on the alert topics: the UPN, else the referral id."""
        return self.upn or self.referral_id or ""

    @property
    def topic(self) -> str:
        return alert_topic(self.la_code, self.recipient)


@dataclass(frozen=True, slots=True)
class DeadLetter:
    raw: bytes
    source_topic: str
    partition: int
    offset: int
    error_code: str
    message: str


InputRecord = (
    RollEvent | EHENotification | SafeguardingStatus | ClockTick | CaseAction | AttendanceRegister | CMEReferral
)

#: Input topic names, the public contract of design.md.
ROLL_EVENTS = "roll.events"
EHE_NOTIFICATIONS = "ehe.notifications"
SAFEGUARDING_STATUS = "safeguarding.status"
CLOCK_TICKS = "clock.ticks"
CASE_ACTIONS = "case.actions"
ATTENDANCE_REGISTERS = "attendance.registers"
CME_REFERRALS = "cme.referrals"
#: The record each input topic carries.
INPUT_RECORD_TYPES: dict[str, type[InputRecord]] = {
    ROLL_EVENTS: RollEvent,
    EHE_NOTIFICATIONS: EHENotification,
    SAFEGUARDING_STATUS: SafeguardingStatus,
    CLOCK_TICKS: ClockTick,
    CASE_ACTIONS: CaseAction,
    ATTENDANCE_REGISTERS: AttendanceRegister,
    CME_REFERRALS: CMEReferral,
}
INPUT_TOPICS = tuple(INPUT_RECORD_TYPES)
#: The worker's own topic of register marks split by the partition of each child (key: register id), named
#: after its application id as its changelogs are: `<app id>-mark-batches`.
MARK_BATCHES_SUFFIX = "mark-batches"


def alert_topic(la_code: str, recipient: Recipient) -> str:
    """The topic of one LA's alerts for one recipient, before any deployment prefix."""
    return f"la.{la_code}.alerts.{recipient.topic_suffix}"


def dead_letter_topic(source_topic: str) -> str:
    return f"{source_topic}.dlq"
