"""`rollwatch publish` validation pass, CSV mapping and the publisher SDK, with no broker."""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from cli.commands.publish import connection_of, scan_file, write_rejects
from cli.main import main
from config.settings import Settings
from processors.identifiers import ProblemCode
from processors.records import ClockTick, InputRecord, RollEvent
from rollwatch_client.connection import KafkaConnection
from rollwatch_client.publisher import (
    CSV_COLUMNS,
    ClockPublisher,
    InvalidRecordError,
    RollEventPublisher,
    roll_event_from_csv_row,
    roll_event_to_csv_row,
    roll_events_to_csv,
)
from schemas.codec import AvroCodec
from schemas.jsonformat import parse_line
from tests.shared import SHARED_SCENARIOS

SCENARIOS = SHARED_SCENARIOS
#: Nothing listens here: a publish that got as far as Kafka would fail with exit code 2, not 1.
NO_BROKER = "127.0.0.1:1"


def scenario_records() -> list[tuple[str, InputRecord]]:
    records = []
    for path in sorted(SCENARIOS.glob("*.jsonl")):
        records += [parse_line(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    return records


def scenario_roll_events() -> list[RollEvent]:
    return [record for _, record in scenario_records() if isinstance(record, RollEvent)]


def jsonl(lines: list[str]) -> str:
    return "\n".join(lines) + "\n"


def good_lines() -> list[str]:
    return [
        line
        for path in sorted(SCENARIOS.glob("*.jsonl"))
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]


def with_value(line: str, **changes: Any) -> str:
    envelope = json.loads(line)
    envelope["value"].update(changes)
    return json.dumps(envelope)


@pytest.fixture
def no_broker(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROLLWATCH_BOOTSTRAP_SERVERS", NO_BROKER)


# ---- validation pass ---------------------------------------------------------------------------------------


def bad_jsonl(tmp_path: Path) -> Path:
    good = good_lines()
    roll_line = good[0]
    lines = [
        good[0],
        "{not json",
        good[1],
        with_value(roll_line, upn="Y330215124052"),  # wrong check letter
        '{"topic": "roll.evnts", "value": {}}',
        "",
        with_value(roll_line, upn="12", event_id="nope"),  # two problems on one line
        good[2],
    ]
    path = tmp_path / "bad.jsonl"
    path.write_text(jsonl(lines), encoding="utf-8")
    return path


def test_scan_lists_every_bad_line_with_its_number_and_reasons(tmp_path: Path) -> None:
    scan = scan_file(bad_jsonl(tmp_path), "jsonl")
    assert scan.fatal is None
    assert scan.valid == 3
    assert [reject.line_number for reject in scan.rejects] == [2, 4, 5, 7]
    reasons = {reject.line_number: reject.reasons for reject in scan.rejects}
    assert reasons[2][0].startswith("BAD_JSON")
    assert reasons[4][0].startswith(f"{ProblemCode.UPN_CHECK_LETTER} (upn)")
    assert reasons[5][0].startswith("UNKNOWN_TOPIC")
    assert {reason.split(" ")[0] for reason in reasons[7]} == {"EVENT_ID_FORMAT", "UPN_FORMAT"}


def test_publish_refuses_a_bad_file_and_sends_nothing(
    tmp_path: Path, no_broker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = bad_jsonl(tmp_path)
    assert main(["publish", str(path)]) == 1
    err = capsys.readouterr().err
    for number in (2, 4, 5, 7):
        assert f"{path}:{number}: " in err
    assert f"{path}:7: EVENT_ID_FORMAT" in err and f"{path}:7: UPN_FORMAT" in err
    assert "4 of 7 lines are invalid; nothing sent" in err
    assert "Child51" not in err and "2014-07-16" not in err, "errors must not quote personal data"
    assert not list(tmp_path.glob("*.rejects.jsonl"))


def test_scenario_files_pass_validation() -> None:
    for path in sorted(SCENARIOS.glob("*.jsonl")):
        scan = scan_file(path, "jsonl")
        assert (scan.fatal, scan.rejects) == (None, []), path.name
        assert scan.valid == len([line for line in path.read_text().splitlines() if line.strip()])


def test_missing_file_is_a_usage_error(tmp_path: Path, no_broker: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["publish", str(tmp_path / "absent.jsonl")]) == 2
    assert "no such file" in capsys.readouterr().err


def test_rejects_file_keeps_the_original_text_and_reasons(tmp_path: Path) -> None:
    source = bad_jsonl(tmp_path)
    scan = scan_file(source, "jsonl")
    rejects = tmp_path / "rejects.jsonl"
    write_rejects(scan.rejects, rejects)
    written = [json.loads(line) for line in rejects.read_text(encoding="utf-8").splitlines()]
    original = source.read_text(encoding="utf-8").splitlines()
    assert [entry["line"] for entry in written] == [2, 4, 5, 7]
    assert all(entry["text"] == original[entry["line"] - 1] for entry in written)
    assert written[1]["reasons"][0].startswith("UPN_CHECK_LETTER")


# ---- CSV ---------------------------------------------------------------------------------------------------


def test_csv_round_trips_every_scenario_roll_event(tmp_path: Path) -> None:
    events = scenario_roll_events()
    assert any(event.destination for event in events) and any(not event.destination for event in events)
    path = tmp_path / "roll.csv"
    path.write_text(roll_events_to_csv(events), encoding="utf-8")
    scan = scan_file(path, "csv")
    assert (scan.fatal, scan.rejects, scan.valid) == (None, [], len(events))
    assert [roll_event_from_csv_row(roll_event_to_csv_row(event)) for event in events] == events


def test_csv_bad_rows_are_listed_with_line_numbers(
    tmp_path: Path, no_broker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    events = scenario_roll_events()
    removed = next(event for event in events if event.ground is not None)
    rows = [roll_event_to_csv_row(event) for event in events[:3]]
    rows.append({**roll_event_to_csv_row(removed), "ground": ""})  # REMOVED without a ground
    rows.append({**roll_event_to_csv_row(removed), "school_special": "maybe"})
    rows.append({**roll_event_to_csv_row(removed), "upn": "Y330215124052"})
    rows.append({**roll_event_to_csv_row(removed), "destination_kind": "", "destination_la_code": "331"})
    text = roll_events_to_csv([])  # header only
    lines = [text.rstrip("\n")]
    for row in rows:
        lines.append(",".join(f'"{row[column]}"' for column in CSV_COLUMNS))
    lines.append('"too","few"')
    path = tmp_path / "roll.csv"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")

    scan = scan_file(path, "csv")
    assert scan.valid == 3
    reasons = {reject.line_number: reject.reasons[0] for reject in scan.rejects}
    assert list(reasons) == [5, 6, 7, 8, 9]
    assert reasons[5].startswith("GROUND_MISSING")
    assert reasons[6].startswith("BAD_FIELD") and "school_special" in reasons[6]
    assert reasons[7].startswith("UPN_CHECK_LETTER")
    assert reasons[8].startswith("MISSING_FIELD") and "destination_kind" in reasons[8]
    assert reasons[9].startswith("BAD_FIELD") and "2 fields" in reasons[9]

    assert main(["publish", str(path)]) == 1
    err = capsys.readouterr().err
    assert all(f"{path}:{number}: " in err for number in reasons)


def test_csv_with_a_bad_header_is_refused_whole(
    tmp_path: Path, no_broker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "roll.csv"
    header = ",".join(column for column in CSV_COLUMNS if column != "upn") + ",pupil_number"
    path.write_text(header + "\n", encoding="utf-8")
    scan = scan_file(path, "csv")
    assert scan.fatal is not None and "missing column(s) upn" in scan.fatal and "'pupil_number'" in scan.fatal
    assert main(["publish", str(path), "--skip-invalid"]) == 1
    assert "nothing sent" in capsys.readouterr().err


# ---- publisher SDK with a stand-in producer ------------------------------------------------------------------


@dataclass
class _Future:
    def add_errback(self, callback: Any) -> _Future:
        return self


@dataclass
class FakeProducer:
    partition_ids: set[int] = field(default_factory=lambda: {0, 1, 2})
    sent: list[dict[str, Any]] = field(default_factory=list)
    flushed: int = 0
    closed: bool = False

    def send(self, topic: str, value: bytes | None = None, key: bytes | None = None,
             partition: int | None = None) -> _Future:
        self.sent.append({"topic": topic, "value": value, "key": key, "partition": partition})
        return _Future()

    def partitions_for(self, topic: str) -> set[int]:
        return self.partition_ids

    def flush(self, timeout: float | None = None) -> None:
        self.flushed += 1

    def close(self, timeout: float | None = None) -> None:
        self.closed = True


CONNECTION = KafkaConnection("127.0.0.1:9092")


def test_a_connection_gives_kafka_python_its_servers_and_security() -> None:
    plain = KafkaConnection(" a:9092, b:9093 ").kafka_options()
    assert plain["bootstrap_servers"] == ["a:9092", "b:9093"]
    assert plain["security_protocol"] == "PLAINTEXT"
    assert "sasl_plain_password" not in plain and "ssl_context" not in plain
    sasl = KafkaConnection("a:9092", security_protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-512",
                           sasl_username="mis", sasl_password="secret").kafka_options()
    assert (sasl["sasl_mechanism"], sasl["sasl_plain_username"], sasl["sasl_plain_password"]) == (
        "SCRAM-SHA-512", "mis", "secret")
    assert sasl["ssl_context"] is not None
    assert "secret" not in repr(KafkaConnection("a:9092", sasl_password="secret"))
    with pytest.raises(ValueError, match="bootstrap"):
        KafkaConnection(" , ")
    with pytest.raises(ValueError, match="sasl_mechanism"):
        KafkaConnection("a:9092", security_protocol="SASL_PLAINTEXT")


def test_the_application_connects_the_client_as_its_settings_say() -> None:
    settings = Settings(bootstrap_servers="k1:9092,k2:9092", security_protocol="SASL_PLAINTEXT",
                        sasl_username="app", sasl_password="pw", topic_prefix="staging.")  # type: ignore[arg-type]
    connection = connection_of(settings)
    assert connection.bootstrap_list == ["k1:9092", "k2:9092"]
    assert connection.topic_prefix == "staging."
    options = connection.kafka_options()
    assert options["sasl_plain_password"] == "pw"
    assert options["sasl_mechanism"] == settings.sasl_mechanism
    assert "kafka_client" in options


def test_roll_event_publisher_keys_by_upn_and_sends_avro() -> None:
    producer = FakeProducer()
    codec = AvroCodec()
    event = scenario_roll_events()[0]
    with RollEventPublisher(CONNECTION, topic_prefix="t1.", producer=producer, codec=codec) as publisher:  # type: ignore[arg-type]
        publisher.publish(event)
    [message] = producer.sent
    assert message["topic"] == "t1.roll.events"
    assert message["key"] == event.upn.encode()
    assert message["partition"] is None
    assert codec.decode(message["value"], RollEvent) == event
    assert producer.flushed >= 1
    assert not producer.closed, "a producer passed in belongs to the caller"


def test_topics_take_the_connection_prefix_unless_one_is_given() -> None:
    connection = KafkaConnection("127.0.0.1:9092", topic_prefix="staging.")
    producer = FakeProducer()
    assert RollEventPublisher(connection, producer=producer).topic == "staging.roll.events"  # type: ignore[arg-type]
    assert ClockPublisher(connection, topic_prefix="", producer=producer).topic == "clock.ticks"  # type: ignore[arg-type]


def test_publish_raises_one_error_listing_every_problem_and_sends_nothing() -> None:
    producer = FakeProducer()
    event = scenario_roll_events()[0]
    broken = replace(event, upn="Y330215124052", school=replace(event.school, urn="12"))
    publisher = RollEventPublisher(CONNECTION, producer=producer)  # type: ignore[arg-type]
    with pytest.raises(InvalidRecordError) as raised:
        publisher.publish(broken)
    assert {problem.code for problem in raised.value.problems} == {
        ProblemCode.UPN_CHECK_LETTER,
        ProblemCode.URN_FORMAT,
    }
    assert "2 problem(s)" in str(raised.value)
    assert producer.sent == []
    with pytest.raises(TypeError):
        publisher.publish(ClockTick(today=event.effective_date))  # type: ignore[arg-type]


def test_clock_publisher_sends_each_tick_to_every_partition() -> None:
    producer = FakeProducer(partition_ids={2, 0, 1, 3})
    codec = AvroCodec()
    tick = ClockTick(today=scenario_roll_events()[0].effective_date)
    publisher = ClockPublisher(CONNECTION, producer=producer, codec=codec)  # type: ignore[arg-type]
    publisher.publish(tick)
    assert [message["partition"] for message in producer.sent] == [0, 1, 2, 3]
    assert all(message["key"] is None for message in producer.sent)
    assert all(codec.decode(message["value"], ClockTick) == tick for message in producer.sent)
    assert publisher.sent == 4


MARKS_CSV = (
    "school_urn,school_laestab,school_name,date,upn,am,pm\n"
    "140501,3342001,Shirley Primary,2025-01-13,V330317124071,/,\\\n"
    "140501,3342001,Shirley Primary,2025-01-13,T330317224072,N,N\n"
    "140501,3342001,Shirley Primary,2025-01-13,T330317224072,H,N\n"
    "140501,3342001,Shirley Primary,2025-01-14,V330317124071,O,O\n"
    "140501,3342001,Shirley Primary,2025-01-14,BADUPN,O,O\n"
)


def test_a_marks_csv_is_grouped_into_registers_per_school_and_day_and_bad_rows_refused_alone(
    tmp_path: Path,
) -> None:
    from cli.commands.publish import read_lines
    from processors.records import AttendanceRegister

    path = tmp_path / "marks.csv"
    path.write_text(MARKS_CSV, encoding="utf-8")
    scan = scan_file(path, "csv")
    assert scan.valid == 2
    assert [(r.line_number, r.reasons[0].split(" ")[0]) for r in scan.rejects] == [
        (4, "MARK_CODE_UNKNOWN"), (6, "UPN_FORMAT")
    ]
    assert "marks[0]" not in " ".join(r.reasons[0] for r in scan.rejects)
    registers = [line.record for line in read_lines(path, "csv") if line.record is not None]
    assert all(isinstance(r, AttendanceRegister) for r in registers)
    assert [(str(r.date), [m.upn for m in r.marks]) for r in registers] == [  # type: ignore[union-attr]
        ("2025-01-13", ["V330317124071", "T330317224072"]), ("2025-01-14", ["V330317124071"])
    ]
    again = [line.record for line in read_lines(path, "csv") if line.record is not None]
    # The same file gives the same register ids, so sending it twice changes nothing.
    assert [r.register_id for r in again] == [r.register_id for r in registers]  # type: ignore[union-attr]


def test_a_register_is_keyed_by_its_school_and_sent_as_avro() -> None:
    from rollwatch_client.publisher import AttendancePublisher
    from schemas.jsonformat import parse_line as parse

    line = (SHARED_SCENARIOS / "v2" / "p07_absence_enquiries_due.jsonl").read_text(encoding="utf-8").splitlines()[0]
    _topic, register = parse(line)
    producer = FakeProducer()
    with AttendancePublisher(CONNECTION, topic_prefix="t1.", producer=producer) as publisher:  # type: ignore[arg-type]
        publisher.publish(register)  # type: ignore[arg-type]
    [message] = producer.sent
    assert message["topic"] == "t1.attendance.registers"
    assert message["key"] == b"140501"
    assert AvroCodec().decode_any(message["value"]) == register


def test_referrals_are_keyed_by_upn_else_by_referral_id_and_a_replay_file_of_them_is_checked(tmp_path: Path) -> None:
    from rollwatch_client.publisher import InvalidRecordError, ReferralPublisher
    from schemas.jsonformat import parse_line as parse
    from tests.scenarios.referrals import referral

    with_upn = parse((SHARED_SCENARIOS / "v2" / "p09_referral_not_on_roll.jsonl").read_text().strip())[1]
    without = parse(json.dumps(referral(None, "331", "2025-03-03", anonymous=True)))[1]
    producer = FakeProducer()
    with ReferralPublisher(CONNECTION, topic_prefix="t1.", producer=producer) as publisher:  # type: ignore[arg-type]
        publisher.publish(with_upn)  # type: ignore[arg-type]
        publisher.publish(without)  # type: ignore[arg-type]
        with pytest.raises(InvalidRecordError):
            publisher.publish(replace(without, la_code="999"))  # type: ignore[type-var]
    assert [(m["topic"], m["key"]) for m in producer.sent] == [
        ("t1.cme.referrals", b"Q330317324073"), ("t1.cme.referrals", without.referral_id.encode()),  # type: ignore[union-attr]
    ]
    assert AvroCodec().decode_any(producer.sent[1]["value"]) == without
    path = tmp_path / "referrals.jsonl"
    path.write_text(json.dumps(referral(None, "331", "2025-03-03")) + "\n" + json.dumps(
        referral(None, "999", "2025-03-03")) + "\n", encoding="utf-8")
    scan = scan_file(path, "jsonl")
    assert scan.valid == 1 and [(r.line_number, r.reasons[0].split(" ")[0]) for r in scan.rejects] == [
        (2, "LA_CODE_UNKNOWN")]
