"""The raw archive (``--archive DIR``): every record a streaming run receives, as received,
for audit and replay (``python -m run replay --from-archive``).

Layout: ``DIR/dt=YYYY-MM-DD/hour=HH/part-*.jsonl.gz`` by the hour (UTC) the record was
received; one JSON object per line::

    {"received_at": "...Z", "source": "projects/p/subscriptions/s#e-17/3",
     "event_time": "...Z", "attributes": {"event_id": "e-17", ...}, "payload": "{...}"}

``payload`` is the record's bytes as UTF-8 text, or ``payload_base64`` when they are not
UTF-8; ``source`` is the delivery id every bronze, silver and dead-letter row carries, so a
replayed record is recognised as the one received. An envelope message is archived as its
records (one line each, with the message's attributes).

When it is written: on the local runner the live source writes each round it read to the
hour's file of the run (a gzip member appended and fsynced) *before* handing the records
on, so nothing is acknowledged or committed that is not archived; a crash while writing
leaves a truncated last member, which the reader drops (those records were never handed
on, so they are delivered again). On Dataflow a step right after the read writes one file
per bundle; the service acknowledges a bundle's messages only once the bundle's work,
this file included, is committed.
"""
from __future__ import annotations

import base64
import gzip
import json
import logging
import os
import uuid
import zlib
from datetime import datetime, timedelta, timezone

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems

from beam_pipelines.errors import UserError

log = logging.getLogger(__name__)

_US = 1_000_000


def _iso(micros: int | None) -> str | None:
    if micros is None:
        return None
    return (datetime(1970, 1, 1, tzinfo=timezone.utc) + timedelta(microseconds=micros)
            ).isoformat().replace("+00:00", "Z")


def hour_folder(directory: str, received: datetime) -> str:
    return FileSystems.join(directory, f"dt={received:%Y-%m-%d}", f"hour={received:%H}")


def archive_line(record, event_micros: int | None, received_at: str) -> bytes:
    """One RawRecord → its archive line (with a newline)."""
    payload = record.payload
    entry = {"received_at": received_at, "source": record.source,
             "event_time": _iso(event_micros),
             "attributes": dict(getattr(record, "attributes", None) or {})}
    if isinstance(payload, str):
        entry["payload"] = payload
    else:
        try:
            entry["payload"] = bytes(payload).decode("utf-8")
        except UnicodeDecodeError:
            entry["payload_base64"] = base64.b64encode(bytes(payload)).decode("ascii")
    return json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def payload_of(entry: dict) -> bytes:
    if "payload_base64" in entry:
        return base64.b64decode(entry["payload_base64"])
    return entry.get("payload", "").encode("utf-8")


class ArchiveWriter:
    """The local runner's archive: one file per hour and run, a gzip member per round."""

    def __init__(self, directory: str, clock=None, append: bool | None = None):
        self.directory = directory
        self._clock = clock or (lambda: datetime.now(timezone.utc))
        self._run = f"{datetime.now(timezone.utc):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"
        #: a local file is appended to; an object store cannot append: a file a round
        self._append = "://" not in directory if append is None else append

    def write(self, items) -> None:
        """``[(event_micros, RawRecord)]`` → archived, durably, before returning."""
        if not items:
            return
        received = self._clock()
        stamp = received.isoformat().replace("+00:00", "Z")
        data = b"".join(archive_line(r, m, stamp) for m, r in items)
        member = gzip.compress(data, compresslevel=6, mtime=0)
        folder = hour_folder(self.directory, received)
        # (LiveRead calls this under its own lock: one round at a time.)
        if not self._append:
            _write_file(FileSystems.join(folder, f"part-{self._run}-{uuid.uuid4().hex[:8]}"
                                                 ".jsonl.gz"), member)
        else:
            os.makedirs(folder, exist_ok=True)
            path = os.path.join(folder, f"part-{self._run}.jsonl.gz")
            with open(path, "ab") as fh:
                fh.write(member)
                fh.flush()
                os.fsync(fh.fileno())


def _write_file(path: str, data: bytes) -> None:
    """``data`` (gzip already) as the file ``path`` of any file system: not compressed
    again, as Beam would by the name's .gz."""
    from apache_beam.io.filesystem import CompressionTypes

    if "://" not in path:
        os.makedirs(os.path.dirname(path), exist_ok=True)
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as fh:
        fh.write(data)


class ArchiveRecordsFn(beam.DoFn):
    """Dataflow: timestamped RawRecords → one archive file per bundle and hour (no
    output; the records flow on beside it)."""

    def __init__(self, directory: str):
        self._directory = directory

    def start_bundle(self):
        self._lines: dict[str, list[bytes]] = {}

    def process(self, record, timestamp=beam.DoFn.TimestampParam):
        received = datetime.now(timezone.utc)
        line = archive_line(record, timestamp.micros,
                            received.isoformat().replace("+00:00", "Z"))
        self._lines.setdefault(hour_folder(self._directory, received), []).append(line)

    def finish_bundle(self):
        for folder, lines in self._lines.items():
            _write_file(FileSystems.join(folder, f"part-{uuid.uuid4().hex}.jsonl.gz"),
                        gzip.compress(b"".join(lines), mtime=0))
        self._lines = {}


class ArchiveRecords(beam.PTransform):
    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, records):
        return records | "WriteArchive" >> beam.ParDo(ArchiveRecordsFn(self._directory))


# ---- reading ------------------------------------------------------------------------------
def parse_time(text: str, flag: str) -> datetime:
    """``2026-12-06T10:00``, ``2026-12-06 10:00:00Z``, ``2026-12-06`` → an aware UTC time."""
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{flag} {text!r} is not a time (e.g. 2026-12-06T10:00Z)") from None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else \
        value.astimezone(timezone.utc)


def archive_files(directory: str, start: datetime | None = None,
                  end: datetime | None = None) -> list[str]:
    """The archive's files of the hours that overlap [start, end)."""
    pattern = FileSystems.join(directory, "dt=*", "hour=*", "*.jsonl.gz")
    try:
        found = [m.path for m in FileSystems.match([pattern])[0].metadata_list]
    except Exception as exc:  # noqa: BLE001 - the file system's own words
        raise UserError(f"--from-archive {directory}: {exc}") from None
    chosen = []
    for path in sorted(found):
        parts = path.replace("\\", "/").split("/")
        try:
            day = parts[-3].removeprefix("dt=")
            hour = int(parts[-2].removeprefix("hour="))
            begins = datetime.fromisoformat(day).replace(hour=hour, tzinfo=timezone.utc)
        except ValueError:
            continue  # not a folder of the archive's layout
        if (start is None or begins + timedelta(hours=1) > start) and \
                (end is None or begins < end):
            chosen.append(path)
    return chosen


def _members(fh, path: str, chunk_bytes: int = 1 << 20):
    """The text of each complete gzip member, the file read a chunk at a time (a member is
    a poll round locally, a bundle on Dataflow); a cut-short last member (a write a crash
    interrupted) is dropped with a warning."""
    inflate, text, started = zlib.decompressobj(wbits=31), bytearray(), False
    while chunk := fh.read(chunk_bytes):
        data = chunk
        while data:
            started = True
            try:
                text += inflate.decompress(data)
            except zlib.error as exc:
                log.warning("%s: unreadable from here on (%s); the rest is skipped", path,
                            exc)
                return
            if not inflate.eof:
                break
            yield bytes(text)
            data = inflate.unused_data
            inflate, text, started = zlib.decompressobj(wbits=31), bytearray(), False
    if started:
        log.warning("%s: its last write was cut short; what it held is skipped", path)


def read_archive_file(path: str, start: datetime | None = None,
                      end: datetime | None = None):
    """An archive file → its entries (dicts) received within [start, end)."""
    with FileSystems.open(path, compression_type="uncompressed") as fh:
        for text in _members(fh, path):
            for line in text.splitlines():
                if not line.strip():
                    continue
                entry = json.loads(line)
                received = datetime.fromisoformat(entry["received_at"].replace("Z", "+00:00"))
                if (start is None or received >= start) and (end is None or received < end):
                    yield entry
