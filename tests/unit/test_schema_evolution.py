"""Schema evolution under Avro resolution: old readers read new data and new readers read old data."""

from __future__ import annotations

import copy
import io
from datetime import date
from typing import Any

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
