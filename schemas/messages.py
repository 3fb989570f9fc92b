"""The Pub/Sub message contract, shared by the publisher (``generators/publisher.py``) and
the pipelines' sources (``beam_pipelines/io/live_sources.py``, ``beam_pipelines/ops/pubsub.py``):
the attribute names and the envelope, declared once so the two cannot drift.

A message carries one event, or with ``envelope=ndjson`` several, one per line; its
``event_time`` is the ISO 8601 time of its earliest event (the source's timestamp) and its
``event_id`` a unique id (the source's redelivery key).
"""
from __future__ import annotations

EVENT_TIME_ATTRIBUTE = "event_time"
EVENT_ID_ATTRIBUTE = "event_id"
ENVELOPE_ATTRIBUTE = "envelope"
ENVELOPE_NDJSON = "ndjson"


def message_attributes(event_time: str, event_id: str, envelope: int) -> dict[str, str]:
    """The attributes of a message of a publisher packing up to ``envelope`` events a
    message (every such message is an envelope, even a last one holding one event)."""
    attributes = {EVENT_TIME_ATTRIBUTE: event_time, EVENT_ID_ATTRIBUTE: event_id}
    if envelope > 1:
        attributes[ENVELOPE_ATTRIBUTE] = ENVELOPE_NDJSON
    return attributes


def split_envelope(data: bytes, attributes: dict | None) -> list[tuple[int, bytes]]:
    """A message's data → its events with their line numbers in it: one (line 0), or one
    per non-empty line of an NDJSON envelope (an empty message is one empty event, so it
    is dead-lettered rather than lost)."""
    if (attributes or {}).get(ENVELOPE_ATTRIBUTE) == ENVELOPE_NDJSON:
        return [(i, line) for i, line in enumerate(data.split(b"\n")) if line or i == 0]
    return [(0, data)]
