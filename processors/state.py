"""Per-child state: what Rollwatch remembers about one child between records."""

from __future__ import annotations

from datetime import date

from msgspec import Struct

from processors.records import AlertChild, EHEMethod, EventType, Ground, Rule

# State is made of msgspec Structs: as immutable as frozen dataclasses, but built in C, and every record
# builds several. gc=False because state never refers back to itself, so the cycle collector has no reason
# to rescan the millions of entries a large replay or memory store holds. array_like=True stores each
# Struct as its field values in order (streams/statecodec.py), so a new field only ever goes last, with a
# default, for states stored before it to still read.

#: Most entries a child's state keeps of each kind. A child's real history is a few dozen roll changes at
#: most; a sender flooding one UPN would otherwise grow its state past what a changelog message can hold.
MAX_ROLL_ENTRIES = 500
MAX_NOTICES = 200
MAX_SEEN_IDS = 2000


def state_limit_problem(state: ChildState) -> str | None:
    """What bound a child's state breaks, if any."""
    for what, count, limit in (
        ("roll changes", len(state.rolls), MAX_ROLL_ENTRIES),
        ("EHE notifications", len(state.notices), MAX_NOTICES),
        ("record ids", len(state.seen_ids), MAX_SEEN_IDS),
    ):
        if count > limit:
            return f"the child's state would hold {count} {what}, more than the {limit} kept for one child"
    return None


class RollEntry(Struct, frozen=True, gc=False, array_like=True):
    """One applied roll change; `seq` is its arrival order within the child."""

    event_type: EventType
    school_urn: str
    effective_date: date
    seq: int
    event_id: str
    #: The school's LA (its LAESTAB's first three digits); empty in entries stored before it was kept.
    school_la: str = ""


class NoticeEntry(Struct, frozen=True, gc=False, array_like=True):
    """One applied EHE notification."""

    notification_id: str
    la_code: str
    method: EHEMethod
    received_on: date


class StatusEntry(Struct, frozen=True, gc=False, array_like=True):
    """The latest safeguarding status applied (arrival order), reduced to what the rules read."""

    la_code: str
    child_protection_plan: bool
    looked_after: bool
    school_attendance_order: bool

    @property
    def protected(self) -> bool:
        return self.child_protection_plan or self.looked_after


class Removal(Struct, frozen=True, gc=False, array_like=True):
    """The removal a deadline or a case refers back to."""

    event_id: str
    school_urn: str
    school_name: str
    school_la: str
    effective_date: date
    ground: Ground
    destination_la: str | None


class Deadline(Struct, frozen=True, gc=False, array_like=True):
    """A deadline rule waiting for the business date to pass `due` (the last school day of its window)."""

    rule: Rule
    removal: Removal
    window_start: date
    due: date


class Case(Struct, frozen=True, gc=False, array_like=True):
    """The child's open CME case, and every LA that holds it.

    A case opened by a referral (or linked to the child from one) has no removal: `opened_by` is None and
    `referral_id` names the referral. `linked` lists the cases of referrals without a UPN that an officer
    linked to this child while this case was open: they end with it."""

    case_id: str
    opened_by: Removal | None
    opened_on: date
    opening_rule: Rule
    holders: tuple[str, ...]
    social_care_alerted: tuple[str, ...] = ()
    referral_id: str | None = None
    linked: tuple[str, ...] = ()


class ChildState(Struct, frozen=True, gc=False, array_like=True):
    """What is known of one child. `upn` is the key the state is stored under: the child's UPN, or, for a
    referral without a UPN (`by_referral`), that referral's id, whose case the state then holds alone."""

    upn: str
    child: AlertChild | None = None
    rolls: tuple[RollEntry, ...] = ()
    notices: tuple[NoticeEntry, ...] = ()
    status: StatusEntry | None = None
    case: Case | None = None
    deadlines: tuple[Deadline, ...] = ()
    seen_ids: frozenset[str] = frozenset()
    closed_case_ids: tuple[str, ...] = ()
    by_referral: bool = False

    @property
    def protected(self) -> bool:
        return self.status is not None and self.status.protected

    def latest_at(self, school_urn: str) -> RollEntry | None:
        """The latest roll change at a school, by effective date, then arrival."""
        latest: RollEntry | None = None
        for entry in self.rolls:
            if entry.school_urn == school_urn and (
                latest is None or (entry.effective_date, entry.seq) > (latest.effective_date, latest.seq)
            ):
                latest = entry
        return latest

    def on_roll_schools(self) -> list[RollEntry]:
        """The ADDED entries through which the child is on roll somewhere now, one per school."""
        schools = {entry.school_urn for entry in self.rolls}
        on_roll = []
        for urn in sorted(schools):
            latest = self.latest_at(urn)
            if latest is not None and latest.event_type is EventType.ADDED:
                on_roll.append(latest)
        return on_roll

    def has_roll_change(self, event_type: EventType, school_urn: str, effective_date: date) -> bool:
        for e in self.rolls:  # a plain loop: this runs for every roll change, and any() over a generator is slower
            if e.school_urn == school_urn and e.effective_date == effective_date and e.event_type is event_type:
                return True
        return False

    def additions(self) -> list[RollEntry]:
        return [e for e in self.rolls if e.event_type is EventType.ADDED]
