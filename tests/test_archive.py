"""The raw archive (``--archive``): every record as received, by hour, with its message's
attributes; a crash mid-write loses nothing that was handed on."""
from __future__ import annotations

import gzip
import logging
from datetime import datetime, timezone

import pytest

from beam_pipelines.errors import UserError
from beam_pipelines.io.archive import (
    ArchiveWriter,
    archive_files,
    parse_time,
    payload_of,
    read_archive_file,
)
from transforms.bronze import RawRecord

T0 = datetime(2026, 12, 6, 10, 59, 59, tzinfo=timezone.utc)


class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


def test_each_round_is_appended_to_the_hours_file_and_read_back_as_received(tmp_path):
    clock = Clock(T0)
    writer = ArchiveWriter(str(tmp_path), clock)
    writer.write([(1_000_000, RawRecord(b'{"a": 1}', "sub#e1", attributes={"event_id": "e1"})),
                  (2_000_000, RawRecord(b"\xff\xfe not utf-8", "sub#e2"))])
    writer.write([(3_000_000, RawRecord('{"b": "ü"}', "sub#e3/0"))])
    clock.now = T0.replace(hour=11, minute=0, second=1)
    writer.write([(4_000_000, RawRecord(b"{}", "sub#e4"))])

    files = archive_files(str(tmp_path))
    assert [f.split(str(tmp_path))[1].rsplit("/", 1)[0] for f in files] == [
        "/dt=2026-12-06/hour=10", "/dt=2026-12-06/hour=11"]
    with gzip.open(files[0]) as fh:  # any gzip reader reads the appended members
        assert len(fh.read().splitlines()) == 3
    entries = list(read_archive_file(files[0]))
    assert [payload_of(e) for e in entries] == [b'{"a": 1}', b"\xff\xfe not utf-8",
                                                '{"b": "ü"}'.encode()]
    assert entries[0]["attributes"] == {"event_id": "e1"}
    assert entries[0]["event_time"] == "1970-01-01T00:00:01Z"
    assert "payload_base64" in entries[1] and entries[2]["source"] == "sub#e3/0"
    assert entries[0]["received_at"] == "2026-12-06T10:59:59Z"
    # The window picks the hour folders, then the exact times.
    late = archive_files(str(tmp_path), parse_time("2026-12-06T11:00", "--start"))
    assert late == files[1:]
    assert list(read_archive_file(files[0], end=parse_time("2026-12-06T10:59:59", "-"))) == []


def test_a_write_cut_short_by_a_crash_drops_only_that_round(tmp_path, caplog):
    writer = ArchiveWriter(str(tmp_path), Clock(T0))
    writer.write([(1, RawRecord(b"kept", "s#1"))])
    path = archive_files(str(tmp_path))[0]
    whole = gzip.compress(b'{"received_at": "2026-12-06T10:59:59Z", "payload": "lost"}\n')
    with open(path, "ab") as fh:
        fh.write(whole[: len(whole) // 2])
    with caplog.at_level(logging.WARNING):
        entries = list(read_archive_file(path))
    assert [payload_of(e) for e in entries] == [b"kept"]
    assert "cut short" in caplog.text


def test_times_are_checked_and_read_as_utc():
    assert parse_time("2026-12-06", "--start") == datetime(2026, 12, 6, tzinfo=timezone.utc)
    assert parse_time("2026-12-06T11:00+01:00", "--end").hour == 10
    with pytest.raises(UserError, match="--start 'yesterday' is not a time"):
        parse_time("yesterday", "--start")


def test_a_live_source_archives_a_round_before_handing_it_on(tmp_path):
    """LiveRead writes what the poller returned before returning it: the archive holds a
    round by the time any step can see (and a writer acknowledge) its records."""
    from beam_pipelines.io.live_sources import LiveRead, Poller

    class TwoRecords(Poller):
        def open(self):
            pass

        def close(self):
            pass

        def poll(self, now):
            return [(1_000_000, RawRecord(b'{"x": 1}', "p#1", attributes={"k": "v"})),
                    (2_000_000, RawRecord(b'{"x": 2}', "p#2"))]

    read = LiveRead(TwoRecords(), pause_s=0, batches=True)
    archived = []

    class Spy(ArchiveWriter):
        def write(self, items):
            super().write(items)
            archived.append(len(list(read_archive_file(archive_files(str(tmp_path))[0]))))

    read.archive = Spy(str(tmp_path))
    out, _, _ = read.read(now=1_800_000_000.0)
    assert archived == [2] and len(out) == 1 and out[0].value.num_rows == 2
    entries = list(read_archive_file(archive_files(str(tmp_path))[0]))
    assert [e["source"] for e in entries] == ["p#1", "p#2"]
    assert entries[0]["attributes"] == {"k": "v"}


def test_an_archive_file_is_read_a_chunk_at_a_time_across_members(tmp_path):
    """Members and lines that straddle the reader's chunks come out whole."""
    from beam_pipelines.io.archive import _members

    writer = ArchiveWriter(str(tmp_path), Clock(T0))
    for round_ in range(5):
        writer.write([(i, RawRecord(b'{"n": %d}' % (round_ * 100 + i), f"s#{round_}-{i}"))
                      for i in range(50)])
    path = archive_files(str(tmp_path))[0]
    with open(path, "rb") as fh:
        members = list(_members(fh, path, chunk_bytes=37))
    assert len(members) == 5 and all(len(m.splitlines()) == 50 for m in members)
    assert [payload_of(e) for e in read_archive_file(path)][-1] == b'{"n": 449}'


def test_where_files_cannot_be_appended_to_each_round_is_a_file_of_its_own(tmp_path):
    """An object store (gs://) cannot append: a file a round, read back alike (here on
    the local file system through the same calls)."""
    writer = ArchiveWriter(str(tmp_path), Clock(T0), append=False)
    writer.write([(1, RawRecord(b'{"a": 1}', "s#1"))])
    writer.write([(2, RawRecord(b'{"a": 2}', "s#2"))])
    files = archive_files(str(tmp_path))
    assert len(files) == 2
    assert sorted(payload_of(e) for f in files for e in read_archive_file(f)) == [
        b'{"a": 1}', b'{"a": 2}']


def test_dataflows_archive_step_writes_a_file_per_bundle_beside_the_records(tmp_path):
    import apache_beam as beam
    from apache_beam.testing.test_pipeline import TestPipeline
    from apache_beam.transforms.window import TimestampedValue

    from beam_pipelines.io.archive import ArchiveRecords

    records = [RawRecord(b'{"n": %d}' % i, f"sub#e{i}", attributes={"event_id": f"e{i}"})
               for i in range(20)]
    with TestPipeline(runner="FnApiRunner") as p:
        (p | beam.Create(records) | beam.Map(lambda r: TimestampedValue(r, 1_767_600_000))
         | ArchiveRecords(str(tmp_path)))
    entries = [e for f in archive_files(str(tmp_path)) for e in read_archive_file(f)]
    assert sorted(payload_of(e) for e in entries) == sorted(r.payload for r in records)
    assert {e["attributes"]["event_id"] for e in entries} == {f"e{i}" for i in range(20)}
    assert all(e["event_time"] == "2026-01-05T08:00:00Z" for e in entries)
