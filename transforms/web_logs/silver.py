"""Silver of the web logs on batches: a span's bronze rows → deduplicated, geolocated,
private silver rows, and dead letters.

The same steps as the row-level :class:`transforms.web_logs.row_silver.CleanWebLogs`, on columns:
copies of a line (every field of :data:`transforms.web_logs.row_silver.IDENTITY` equal) are found
by one sort, the survivor being the copy from the first source; each distinct address is
geolocated and reduced once, each distinct user agent described once, each distinct
(address, agent) hashed once. A status outside the HTTP range is a dead letter through the
row-level function, with the row-level message.
"""
from __future__ import annotations

from datetime import datetime

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from schemas.web_logs import GEO_FIELDS, MAX_RESPONSE_BYTES, WEB_LOGS_SILVER
from transforms.batches import conform, dense_codes, dictionary, rows_of
from transforms.dead_letters import dead_letter, rejection_of
from transforms.geo import UNKNOWN, GeoDatabase, Place
from transforms.web_logs.row_silver import IDENTITY, PrivacyPolicy, describe_agent, to_web_silver

_US = 1_000_000


class WebSilverBatch:
    """Silver rows, the dead letters, and how many rows each geolocation status has."""

    __slots__ = ("records", "dead_letters", "geo_statuses")

    def __init__(self, records: pa.Table, dead_letters: list[dict],
                 geo_statuses: dict[str, int]):
        self.records = records
        self.dead_letters = dead_letters
        self.geo_statuses = geo_statuses


def duplicate_positions(bronze: pa.Table) -> tuple[np.ndarray, np.ndarray]:
    """(positions of the copies to drop, position of the copy each one lost to): lines equal
    in every identity field, the survivor being the copy from the first source (in text
    order, as the row-level step sorts them)."""
    n = bronze.num_rows
    if n < 2:
        return np.empty(0, np.int64), np.empty(0, np.int64)
    keys = [dense_codes(bronze.column(name)) for name in IDENTITY]
    sources = dictionary(pc.fill_null(bronze.column("source"), ""))
    rank = np.empty(len(sources.dictionary), np.int64)
    rank[np.argsort(np.array(sources.dictionary.to_pylist(), dtype=object),
                    kind="stable")] = np.arange(len(sources.dictionary))
    source_rank = rank[sources.indices.to_numpy(zero_copy_only=False)]
    order = np.lexsort([source_rank] + keys[::-1])
    same = np.ones(n - 1, dtype=bool)
    for k in keys:
        ks = k[order]
        same &= ks[1:] == ks[:-1]
    if not same.any():
        return np.empty(0, np.int64), np.empty(0, np.int64)
    # A copy's survivor: the first row of its run of equal identities.
    new_run = np.concatenate(([True], ~same))
    starts = np.flatnonzero(new_run)
    run = np.cumsum(new_run) - 1
    dup_sorted = np.flatnonzero(~new_run)
    return order[dup_sorted], order[starts[run[dup_sorted]]]


def _dedupe_dead_letters(bronze: pa.Table, dups: np.ndarray, kept: np.ndarray,
                         policy: PrivacyPolicy, now: datetime) -> list[dict]:
    rows = rows_of(bronze.take(pa.array(dups)))
    kept_sources = bronze.column("source").take(pa.array(kept)).to_pylist()
    return [dead_letter(
        layer="silver", step="DeduplicateRequests",
        reason="duplicate_event", message=f"the same line was already kept from {src}",
        payload=policy.redact(row), source=row.get("source"), event_timestamp=row["timestamp"],
        now=now) for row, src in zip(rows, kept_sources, strict=True)]


def _client(bronze: pa.Table):
    """The client: its address, or the host name the server logged instead."""
    if "client_host" not in bronze.column_names:
        return bronze.column("client_ip")
    return pc.coalesce(bronze.column("client_ip"), bronze.column("client_host"))


def _clients(bronze: pa.Table, policy: PrivacyPolicy) -> tuple[pa.Array, pa.Array]:
    """Each row's client (what geolocation, privacy and visitors use) and the trusted
    proxy it came through (null: it connected itself), as ``policy.client_of`` says, once
    per distinct (address, X-Forwarded-For) pair."""
    client = _client(bronze)
    n = bronze.num_rows
    if not policy.trusted_proxies or "forwarded_for" not in bronze.column_names:
        return client, pa.nulls(n, pa.string())
    ips, chains = bronze.column("client_ip"), bronze.column("forwarded_for")
    if chains.null_count == n:  # no line forwarded anything
        return client, pa.nulls(n, pa.string())
    pair = pc.binary_join_element_wise(pc.fill_null(ips, ""), pc.fill_null(chains, ""), "\n")
    encoded = dictionary(pair)
    found = [policy.client_of(*((part or None) for part in text.split("\n", 1)))
             for text in encoded.dictionary.to_pylist()]
    resolved = pa.array([c for c, _ in found], pa.string()).take(encoded.indices)
    proxy = pa.array([p for _, p in found], pa.string()).take(encoded.indices)
    return pc.coalesce(resolved, client), proxy


def geolocate(addresses, database: GeoDatabase) -> tuple[dict[str, pa.Array],
                                                      dict[str, int]]:
    """The ``geo_*`` columns of each address (each distinct one looked up once), and how
    many rows each status has."""
    encoded = dictionary(addresses)
    places = []
    for ip in encoded.dictionary.to_pylist():
        try:
            places.append(database.lookup(ip))
        except ValueError:  # not an address: bronze validates, so this is defensive
            places.append(Place(UNKNOWN))
    arrow = WEB_LOGS_SILVER.arrow_schema()
    columns = list(zip(*places, strict=True)) if places else [()] * len(GEO_FIELDS)
    cols = {f.name: pa.array(values, arrow.field(f.name).type).take(encoded.indices)
            for f, values in zip(GEO_FIELDS, columns, strict=True)}
    counts = np.bincount(encoded.indices.to_numpy(zero_copy_only=False),
                         minlength=len(places))
    statuses: dict[str, int] = {}
    for place, count in zip(places, counts.tolist(), strict=True):
        statuses[place.status] = statuses.get(place.status, 0) + count
    return cols, statuses


def _status_dead_letters(located: pa.Table, bad: np.ndarray, policy: PrivacyPolicy,
                         now: datetime) -> list[dict]:
    """Status or size out of range, through the row-level function: its reason and
    message, the row redacted like it."""
    dead = []
    for row in rows_of(located.take(pa.array(bad))):
        try:
            to_web_silver(row, policy)
            reason, message = "internal_error", "status range disagreed"
        except Exception as exc:  # noqa: BLE001 - what the row-level step would say
            reason, message, _ = rejection_of(exc)
        dead.append(dead_letter(
            layer="silver", step="CleanWebLog", reason=reason,
            message=message, payload=policy.redact(row), source=row.get("source"),
            event_timestamp=row.get("timestamp"), now=now))
    return dead


def _per_distinct(column, fn, type_) -> pa.Array:
    encoded = dictionary(column)
    values = [fn(v) for v in encoded.dictionary.to_pylist()]
    return pa.array(values, type_).take(encoded.indices)


def web_silver_batch(bronze: pa.Table, policy: PrivacyPolicy, database: GeoDatabase,
                     now: datetime, dedupe_identical_lines: bool = False) -> WebSilverBatch:
    """A span's bronze rows (all copies of a line in one span) → silver; identical lines
    are dropped as copies only when ``dedupe_identical_lines``."""
    bronze = bronze.combine_chunks()
    dead: list[dict] = []
    if not dedupe_identical_lines:
        return clean_batch(bronze, policy, database, now)
    dups, kept = duplicate_positions(bronze)
    if len(dups):
        dead += _dedupe_dead_letters(bronze, dups, kept, policy, now)
        keep = np.ones(bronze.num_rows, dtype=bool)
        keep[dups] = False
        bronze = bronze.filter(pa.array(keep))
    out = clean_batch(bronze, policy, database, now)
    out.dead_letters[:0] = dead
    return out


def clean_batch(bronze: pa.Table, policy: PrivacyPolicy, database: GeoDatabase,
                now: datetime) -> WebSilverBatch:
    """Deduplicated bronze rows → silver: geolocation, ranges, agents, privacy."""
    dead: list[dict] = []
    client, proxy = _clients(bronze, policy)
    geo, statuses = geolocate(client, database)
    located = bronze.append_column("client", client).append_column("proxy", proxy)
    for name, column in geo.items():
        located = located.append_column(name, column)
    logged = located.column("status").is_valid().to_numpy(zero_copy_only=False)
    status = located.column("status").fill_null(200).to_numpy()  # '-': no range to check
    size = located.column("bytes").fill_null(0).to_numpy()
    bad = (status < 100) | (status > 599) | (size > MAX_RESPONSE_BYTES)
    if bad.any():
        dead += _status_dead_letters(located, np.flatnonzero(bad), policy, now)
        located = located.filter(pa.array(~bad))
        status, logged = status[~bad], logged[~bad]
    ip = located.column("client")
    agent = located.column("user_agent")
    described = _describe(agent)
    pair = pc.binary_join_element_wise(ip, pc.fill_null(agent, ""), "|")
    visitor_text = _per_distinct(pair, policy.digest, pa.string())
    micros = located.column("timestamp").cast(pa.int64()).to_numpy()
    days = micros // (86_400 * _US)
    cols = {name: located.column(name) for name in located.column_names
            if name not in ("client_ip", "client_host", "forwarded_for", "extra_fields",
                            "client", "proxy")}
    cols.update(
        client_network=_per_distinct(ip, policy.network, pa.string()),
        proxy_network=_per_distinct(located.column("proxy"), policy.network, pa.string()),
        visitor_id=visitor_text,
        **described,
        status_class=pa.array(np.where(logged, np.char.add((status // 100).astype(str), "xx"),
                                       "-")),
        event_date=pa.array(days.astype("datetime64[D]"), pa.date32()),
        hour_of_day=pa.array(micros // (3600 * _US) % 24, pa.int64()),
    )
    return WebSilverBatch(conform(pa.table(cols), WEB_LOGS_SILVER), dead, statuses)


_AGENT_COLUMNS = (("browser", pa.string()), ("os", pa.string()), ("device", pa.string()),
                  ("device_class", pa.string()), ("is_bot", pa.bool_()))


def _describe(agents) -> dict[str, pa.Array]:
    encoded = dictionary(agents)
    distinct = [describe_agent(a) for a in encoded.dictionary.to_pylist()]
    indices = encoded.indices
    out = {}
    for j, (name, type_) in enumerate(_AGENT_COLUMNS):
        values = pa.array([d[j] for d in distinct], type_)
        # A null agent is not in the dictionary: describe_agent(None) says what it is.
        column = values.take(indices)
        if indices.null_count:
            column = pc.if_else(indices.is_null(), pa.scalar(describe_agent(None)[j], type_),
                                column)
        out[name] = column
    return out
