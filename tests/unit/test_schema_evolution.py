"""Schema evolution under Avro resolution: old readers read new data and new readers read old data."""

from __future__ import annotations

import copy
import io
import json
from datetime import date
from typing import Any

import avro.errors
import avro.io
import avro.schema
import fastavro
import pytest

from processors.records import ClockTick, RollEvent
from schemas.codec import SINGLE_OBJECT_MARKER, AvroCodec, load_schema, schema_fingerprint
from schemas.errors import CodecError, CodecErrorCode
from tests.unit.test_avro_interop import plain
from tests.unit.test_codec import admission, removal

NEW_FIELD = {
    "name": "mis_pupil_id",
    "type": ["null", "string"],
    "default": None,
    "doc": "The MIS's own pupil identifier, when it shares one.",
}


def roll_event_v2() -> dict[str, Any]:
    """The next RollEvent: one new optional field, added in the middle to show position does not matter."""
    schema = copy.deepcopy(load_schema("RollEvent"))
    schema["fields"].insert(3, copy.deepcopy(NEW_FIELD))
    return schema


def write_single_object(schema: dict[str, Any], datum: dict[str, Any]) -> bytes:
    body = io.BytesIO()
    fastavro.schemaless_writer(body, fastavro.parse_schema(copy.deepcopy(schema)), datum)
    return SINGLE_OBJECT_MARKER + schema_fingerprint(schema) + body.getvalue()


def test_old_reader_reads_new_data_once_the_new_schema_is_registered() -> None:
    old_reader = AvroCodec()
    new_schema = roll_event_v2()
    data = write_single_object(new_schema, plain(removal()) | {"mis_pupil_id": "MIS-000123"})
    with pytest.raises(CodecError) as before_registration:
        old_reader.decode(data, RollEvent)

    fingerprint = old_reader.register_writer_schema(new_schema)
    decoded = old_reader.decode(data, RollEvent)

    assert before_registration.value.code == CodecErrorCode.UNKNOWN_SCHEMA
    assert fingerprint == data[2:10]
    assert fingerprint != old_reader.fingerprint(RollEvent)
    assert decoded == removal()


def test_new_reader_reads_old_data_once_the_old_schema_is_registered() -> None:
    old_writer = AvroCodec()
    new_reader = AvroCodec(current_schemas={"RollEvent": roll_event_v2()})
    records = [removal(), admission()]
    old_messages = [old_writer.encode(record) for record in records]
    with pytest.raises(CodecError) as before_registration:
        new_reader.decode(old_messages[0], RollEvent)

    new_reader.register_writer_schema(load_schema("RollEvent"))
    decoded = [new_reader.decode(message, RollEvent) for message in old_messages]

    assert before_registration.value.code == CodecErrorCode.UNKNOWN_SCHEMA
    assert decoded == records


def test_new_writer_fills_the_new_field_with_its_default_and_old_reader_still_reads_it() -> None:
    new_codec = AvroCodec(current_schemas={"RollEvent": roll_event_v2()})
    old_codec = AvroCodec()
    old_codec.register_writer_schema(roll_event_v2())

    data = new_codec.encode(removal())
    raw = fastavro.schemaless_reader(io.BytesIO(data[10:]), fastavro.parse_schema(roll_event_v2()))
    assert isinstance(raw, dict)

    assert data[2:10] == schema_fingerprint(roll_event_v2())
    assert raw["mis_pupil_id"] is None
    assert old_codec.decode(data, RollEvent) == removal()


def test_reader_default_fills_a_field_the_writer_did_not_have() -> None:
    # A writer from before standard_transition existed: the reader's default (false) applies.
    schema_without_flag = copy.deepcopy(load_schema("RollEvent"))
    schema_without_flag["fields"] = [
        field for field in schema_without_flag["fields"] if field["name"] != "standard_transition"
    ]
    datum = plain(removal(standard_transition=False))
    del datum["standard_transition"]
    data = write_single_object(schema_without_flag, datum)
    codec = AvroCodec()
    codec.register_writer_schema(schema_without_flag)

    decoded = codec.decode(data, RollEvent)

    assert decoded == removal(standard_transition=False)


def test_a_new_required_field_without_default_cannot_read_old_data() -> None:
    breaking = copy.deepcopy(load_schema("ClockTick"))
    breaking["fields"].append({"name": "zone", "type": "string", "doc": "Time zone of the business date."})
    new_reader = AvroCodec(current_schemas={"ClockTick": breaking})
    new_reader.register_writer_schema(load_schema("ClockTick"))
    old_message = AvroCodec().encode(ClockTick(today=date(2025, 1, 31)))

    with pytest.raises(CodecError) as caught:
        new_reader.decode(old_message, ClockTick)

    assert caught.value.code == CodecErrorCode.INCOMPATIBLE_SCHEMA


def test_registering_is_idempotent_and_the_current_schema_is_already_known() -> None:
    codec = AvroCodec()
    current = codec.fingerprint(RollEvent)

    assert codec.register_writer_schema(load_schema("RollEvent")) == current
    assert codec.register_writer_schema(roll_event_v2()) == codec.register_writer_schema(roll_event_v2())
    assert codec.decode(codec.encode(removal()), RollEvent) == removal()


def test_fingerprint_ignores_docs_and_defaults_but_not_fields() -> None:
    documented_differently = copy.deepcopy(load_schema("ClockTick"))
    documented_differently["doc"] = "Reworded."
    documented_differently["fields"][0]["doc"] = "Reworded too."

    assert schema_fingerprint(documented_differently) == schema_fingerprint(load_schema("ClockTick"))
    assert schema_fingerprint(roll_event_v2()) != schema_fingerprint(load_schema("RollEvent"))


def test_a_replacement_schema_must_name_the_record_it_replaces() -> None:
    renamed = copy.deepcopy(load_schema("ClockTick"))
    renamed["name"] = "Tick"

    with pytest.raises(CodecError) as wrong_name:
        AvroCodec(current_schemas={"ClockTick": renamed})
    with pytest.raises(CodecError) as unknown_record:
        AvroCodec(current_schemas={"Invoice": load_schema("ClockTick")})

    assert wrong_name.value.code == CodecErrorCode.UNKNOWN_SCHEMA
    assert unknown_record.value.code == CodecErrorCode.UNKNOWN_SCHEMA


def previous_alert_schema() -> dict[str, Any]:
    import json
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath("history/Alert.1.avsc").read_text(encoding="utf-8"))


def named_alert(**changes: Any) -> Any:
    from dataclasses import replace

    from tests.unit.test_codec import sample_records

    first = next(r for r in sample_records() if type(r).__name__ == "Alert")
    return replace(first, **changes)


def test_a_reader_of_the_previous_alert_schema_reads_new_alerts_that_name_the_child() -> None:
    from processors.records import Alert

    old_reader = AvroCodec(current_schemas={"Alert": previous_alert_schema()})
    old_reader.register_writer_schema(load_schema("Alert"))
    alert = named_alert()

    assert old_reader.decode(AvroCodec().encode(alert), Alert) == alert


def test_a_reader_of_the_previous_alert_schema_refuses_an_unnamed_alert_with_a_code_not_a_crash() -> None:
    from processors.records import Alert

    old_reader = AvroCodec(current_schemas={"Alert": previous_alert_schema()})
    old_reader.register_writer_schema(load_schema("Alert"))

    with pytest.raises(CodecError):
        old_reader.decode(AvroCodec().encode(named_alert(child=None)), Alert)


def test_alerts_written_by_the_previous_release_still_read_without_registering_anything() -> None:
    from processors.records import Alert
    from schemas.mapping import to_fields

    alert = named_alert()
    fields = to_fields(alert)
    fields["child"] = fields["child"][1]  # the previous schema's child is a plain record, not a union
    data = write_single_object(previous_alert_schema(), fields)

    assert data[2:10] != AvroCodec().fingerprint(Alert)
    assert AvroCodec().decode(data, Alert) == alert


# --- referrals: the Alert's optional UPN and referral id, the CaseAction's new actions (design.md, v2) ---------

#: Java reference fingerprints (Apache Avro 1.12.0, SchemaNormalization.parsingFingerprint64, least significant
#: byte first) of the schemas earlier releases wrote with: messages still in the topics carry them.
HISTORY_JAVA_FINGERPRINTS = {
    "Alert.1": "7bd57ee018b87494",
    "Alert.2": "8dae572b6707a7e2",
    "CaseAction.1": "901a31d5145d7b66",
}


def history_schema(name: str) -> dict[str, Any]:
    import json
    from importlib import resources

    return json.loads(resources.files("schemas").joinpath(f"history/{name}.avsc").read_text(encoding="utf-8"))


def referral_alert(**changes: Any) -> Any:
    """A REFERRAL_NOT_ON_ROLL alert about a child with a UPN: it carries the referral id as well."""
    from processors.records import Rule

    return named_alert(rule=Rule.REFERRAL_NOT_ON_ROLL, school_urn=None,
                       referral_id="00000000-0000-4000-b000-000000000001", **changes)


@pytest.mark.parametrize("name", sorted(HISTORY_JAVA_FINGERPRINTS))
def test_history_schemas_keep_the_fingerprints_the_java_reference_gives_them(name: str) -> None:
    assert schema_fingerprint(history_schema(name)).hex() == HISTORY_JAVA_FINGERPRINTS[name]


@pytest.mark.parametrize("previous", ["Alert.1", "Alert.2"])
def test_a_reader_of_a_previous_alert_schema_reads_new_alerts_that_have_a_upn(previous: str) -> None:
    from processors.records import Alert

    old_reader = AvroCodec(current_schemas={"Alert": history_schema(previous)})
    old_reader.register_writer_schema(load_schema("Alert"))
    for alert in (named_alert(), named_alert(child=None) if previous == "Alert.2" else named_alert()):
        assert old_reader.decode(AvroCodec().encode(alert), Alert) == alert


@pytest.mark.parametrize("previous", ["Alert.1", "Alert.2"])
@pytest.mark.parametrize("upn", [None, "W330215224052"], ids=["without-upn", "with-upn"])
def test_a_reader_of_a_previous_alert_schema_refuses_referral_alerts_with_a_code(
    previous: str, upn: str | None
) -> None:
    # A previous reader knows neither referral rule (an enum has no default to fall back to), nor an alert
    # without a UPN: LA consumers take the new schema before referrals are sent (docs/decisions/015).
    from processors.records import Alert

    old_reader = AvroCodec(current_schemas={"Alert": history_schema(previous)})
    old_reader.register_writer_schema(load_schema("Alert"))

    with pytest.raises(CodecError) as caught:
        old_reader.decode(AvroCodec().encode(referral_alert(upn=upn)), Alert)

    assert caught.value.code == CodecErrorCode.INCOMPATIBLE_SCHEMA


@pytest.mark.parametrize("previous", ["Alert.1", "Alert.2"])
def test_a_reader_of_a_previous_alert_schema_refuses_a_missing_upn_itself_with_a_code(previous: str) -> None:
    # The UPN alone, on a rule the old reader knows: the null branch has nowhere to go in a plain string.
    from processors.records import Alert

    old_reader = AvroCodec(current_schemas={"Alert": history_schema(previous)})
    old_reader.register_writer_schema(load_schema("Alert"))

    with pytest.raises(CodecError) as caught:
        old_reader.decode(AvroCodec().encode(named_alert(upn=None, referral_id="r-1")), Alert)

    assert caught.value.code == CodecErrorCode.INCOMPATIBLE_SCHEMA


@pytest.mark.parametrize("previous", ["Alert.1", "Alert.2"])
def test_the_reference_library_resolves_new_alerts_that_have_a_upn_once_its_union_departure_is_undone(
    previous: str,
) -> None:
    # The Python `avro` library departs from the specification here: it refuses a writer's union against a
    # reader's plain type before looking at the branch written, where the specification (and the Java
    # implementation, tests/integration/test_avro_java_resolution.py) resolves the branch. Undone by giving
    # its reader the branch the writer chose, the rest of the resolution is the library's own.
    from tests.unit.test_avro_interop import plain

    writer = avro.schema.parse(json.dumps(load_schema("Alert")))
    reader = avro.schema.parse(json.dumps(history_schema(previous)))
    alert = named_alert()
    body = io.BytesIO(AvroCodec().encode(alert)[10:])

    with pytest.raises(avro.errors.SchemaResolutionException, match="Schemas do not match"):
        avro.io.DatumReader(writer, reader).read(avro.io.BinaryDecoder(io.BytesIO(body.getvalue())))
    datum = _read_with_union_branch_resolved(writer, reader, body)

    expected = plain(alert)
    del expected["referral_id"]
    assert datum == expected


class _SpecReader(avro.io.DatumReader):  # type: ignore[misc]
    """The reference library's reader, resolving a writer's union against a reader's plain type as the
    specification says: read the branch written, then resolve that branch against the reader's type."""

    def read_data(self, writers_schema: Any, readers_schema: Any, decoder: Any) -> Any:
        if isinstance(writers_schema, avro.schema.UnionSchema) and not isinstance(
            readers_schema, avro.schema.UnionSchema
        ):
            branch = writers_schema.schemas[int(decoder.read_long())]
            return self.read_data(branch, readers_schema, decoder)
        return super().read_data(writers_schema, readers_schema, decoder)


def _read_with_union_branch_resolved(writer: Any, reader: Any, body: io.BytesIO) -> Any:
    return _SpecReader(writer, reader).read(avro.io.BinaryDecoder(body))


@pytest.mark.parametrize("upn", [None, "W330215224052"], ids=["without-upn", "with-upn"])
def test_the_reference_library_refuses_referral_alerts_with_the_previous_reader(upn: str | None) -> None:
    # Refused by the specification's resolution too (_SpecReader): an unknown rule symbol, or a null UPN.
    writer = avro.schema.parse(json.dumps(load_schema("Alert")))
    reader = avro.schema.parse(json.dumps(history_schema("Alert.2")))
    for alert in (referral_alert(upn=upn), named_alert(upn=upn, referral_id="r-1")):
        if alert.upn is not None and alert.rule == "MISSING_NO_DESTINATION":
            continue  # an old rule with a UPN is simply readable, as tested above
        body = io.BytesIO(AvroCodec().encode(alert)[10:])
        with pytest.raises(avro.errors.AvroException):
            _read_with_union_branch_resolved(writer, reader, body)


def test_case_actions_of_the_first_release_still_read_and_a_close_reads_with_the_first_schema() -> None:
    from datetime import UTC, datetime

    from processors.records import CaseAction, CaseActionType
    from schemas.mapping import to_fields

    first_release = CaseAction(
        action_id="00000000-0000-4000-c000-000000000001", upn="W330215224052",
        case_id="00000000-0000-5000-8000-00000000ca5e", action=CaseActionType.CLOSE, reason="Found in Wales.",
        by="officer.336", at=datetime(2025, 2, 3, 10, 30, tzinfo=UTC),
    )
    old_fields = {key: value for key, value in to_fields(first_release).items()
                  if key in {f["name"] for f in history_schema("CaseAction.1")["fields"]}}
    old_message = write_single_object(history_schema("CaseAction.1"), old_fields)
    old_reader = AvroCodec(current_schemas={"CaseAction": history_schema("CaseAction.1")})
    old_reader.register_writer_schema(load_schema("CaseAction"))

    assert AvroCodec().decode(old_message, CaseAction) == first_release
    assert old_reader.decode(AvroCodec().encode(first_release), CaseAction) == first_release
