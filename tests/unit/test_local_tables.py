"""Under exactly_once a worker on RocksDB rebuilds its tables from the changelogs, not from an earlier run's files."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from streams.app import RollwatchApp, create_app
from streams.tables import discard_local_tables


def left_by_an_earlier_run(settings: Settings) -> tuple[RollwatchApp, Path]:
    app = create_app(settings)
    table_file = Path(app.conf.tabledir) / "children-3.db" / "000001.log"
    table_file.parent.mkdir(parents=True)
    table_file.write_bytes(b"state of a record whose transaction never committed")
    return app, table_file


def test_rocksdb_files_are_removed_under_exactly_once(tmp_path: Path) -> None:
    settings = Settings(store="rocksdb://", data_dir=tmp_path, processing_guarantee="exactly_once")
    app, table_file = left_by_an_earlier_run(settings)
    assert discard_local_tables(app, settings)
    assert not table_file.exists()
    assert not discard_local_tables(app, settings), "nothing left the second time"


def test_files_are_kept_when_every_write_is_sent_at_once(tmp_path: Path) -> None:
    settings = Settings(store="rocksdb://", data_dir=tmp_path, processing_guarantee="at_least_once")
    app, table_file = left_by_an_earlier_run(settings)
    assert not discard_local_tables(app, settings)
    assert table_file.exists()
