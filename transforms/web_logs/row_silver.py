"""Silver for web logs: range checks, user agents, and privacy.

Runs after geolocation, which needs the full address. Then the address leaves: silver
keeps ``client_network`` (the address truncated to its network, /24 and /48 by default, or
in hash mode a salted HMAC of it) and ``visitor_id`` (a salted HMAC of address and user
agent, so unique visitors can be counted without knowing who they are). The salt is a
secret from the options; without one, each run draws its own, so ids cannot be linked
across runs.

User agents are parsed with ``ua-parser`` (uap-core's maintained rules) into browser, OS
and device, and classed as desktop, mobile, tablet, bot or other.
"""
from __future__ import annotations

import functools
import hashlib
import hmac
import ipaddress
import os
import re
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.pvalue import TaggedOutput

from schemas.web_logs import MAX_RESPONSE_BYTES
from transforms.dead_letters import DEAD_LETTER, RecordRejected, dead_letter, rejection_of
from transforms.dedupe import FirstSeenFn
from transforms.geo import embedded_ipv4, is_host_name
from transforms.windowing import BATCH, Mode, Streaming

_SCRIPTS = {"curl", "Wget", "Python Requests", "Python-urllib", "Go-http-client", "okhttp",
            "Apache-HttpClient", "Java", "libwww-perl", "PostmanRuntime"}
_BOT_WORDS = re.compile(r"bot|crawl|spider|slurp|scan|monitor|uptime|headless", re.I)
_DESKTOP_OS = {"Windows", "Mac OS X", "Linux", "Ubuntu", "Fedora", "Chrome OS", "FreeBSD"}
_TABLETS = ("iPad", "Tablet", "Kindle", "SM-T", "Tab")


@dataclass(frozen=True)
class PrivacyPolicy:
    """Who the client is, and what silver keeps of it."""

    mode: str = "truncate"  # or "hash"
    ipv4_prefix: int = 24
    ipv6_prefix: int = 48
    salt: bytes = b""
    #: the networks of the proxies in front of the servers (``--trusted-proxies``)
    trusted_proxies: tuple[str, ...] = ()

    def __post_init__(self):
        if self.mode not in ("truncate", "hash"):
            raise ValueError(f"IP privacy mode must be truncate or hash, not {self.mode!r}")
        if not 0 <= self.ipv4_prefix <= 32 or not 0 <= self.ipv6_prefix <= 128:
            raise ValueError("prefix lengths are 0-32 (IPv4) and 0-128 (IPv6)")
        for cidr in self.trusted_proxies:
            try:
                ipaddress.ip_network(cidr, strict=False)
            except ValueError:
                raise ValueError(f"trusted proxy {cidr!r} is not an address or network "
                                 "(CIDR)") from None
        if not self.salt:
            object.__setattr__(self, "salt", os.urandom(16))  # a run of its own

    @functools.cached_property
    def _proxies(self) -> tuple:
        return tuple(ipaddress.ip_network(c, strict=False) for c in self.trusted_proxies)

    def _trusted(self, address) -> bool:
        address = embedded_ipv4(address)
        return any(address in net for net in self._proxies if net.version == address.version)

    def client_of(self, remote: str | None, forwarded_for: str | None
                  ) -> tuple[str | None, str | None]:
        """(the client, the trusted proxy it came through or None).

        Without trusted proxies the client is the address that connected. With them, as
        nginx's realip (``real_ip_recursive on``) and Filebeat do: walking from the
        connecting address leftwards through X-Forwarded-For, the first address that is
        not a trusted proxy; the left-most one when all are; an entry that is not an
        address ends the walk at the address before it."""
        if not self._proxies or remote is None or not forwarded_for:
            return remote, None
        try:
            nearest = ipaddress.ip_address(remote)
        except ValueError:  # a host name: nothing to check it against
            return remote, None
        if not self._trusted(nearest):
            return remote, None
        for entry in reversed(forwarded_for.split(",")):
            try:
                address = ipaddress.ip_address(entry.strip())
            except ValueError:
                break
            nearest = address
            if not self._trusted(address):
                break
        client = str(nearest)
        return (client, remote) if client != remote else (remote, None)

    def digest(self, text: str) -> str:
        return hmac.new(self.salt, text.encode(), hashlib.sha256).hexdigest()[:16]

    def redact(self, row: dict) -> dict:
        """A row as silver's dead letters may keep it: the client reduced like silver's."""
        if not isinstance(row, dict):
            return row
        out = dict(row)
        for field in ("client_ip", "client_host"):
            if out.get(field) is not None:
                try:
                    out[field] = self.network(out[field])
                except ValueError:
                    out[field] = None
        for field in ("forwarded_for", "extra_fields"):  # what silver does not keep
            if out.get(field) is not None:
                out[field] = None
        out.pop("client", None)  # the row-level path's resolved client and proxy
        out.pop("proxy", None)
        return out

    def network(self, client: str) -> str:
        """The client reduced as the policy says: ``81.2.69.0/24`` (a host name:
        ``*.example.net``, without its first label) or a salted hash."""
        if self.mode == "hash":
            return self.digest(client)
        try:
            address = embedded_ipv4(ipaddress.ip_address(client.split("%", 1)[0]))
        except ValueError:
            if not is_host_name(client):
                raise
            _, _, rest = client.rstrip(".").lower().partition(".")
            return f"*.{rest}" if rest else "*"
        prefix = self.ipv4_prefix if address.version == 4 else self.ipv6_prefix
        return str(ipaddress.ip_network(f"{address}/{prefix}", strict=False))


@functools.lru_cache(maxsize=20_000)
def describe_agent(user_agent: str | None) -> tuple:
    """``(browser, os, device, device_class, is_bot)``; a few agents make most requests,
    hence the cache."""
    if not user_agent:
        return None, None, None, "other", False
    from ua_parser import parse

    result = parse(user_agent)
    browser = result.user_agent.family if result.user_agent else None
    system = result.os.family if result.os else None
    device = result.device.family if result.device else None
    if device == "Spider" or browser in _SCRIPTS or _BOT_WORDS.search(user_agent):
        return browser, system, device, "bot", True
    if device and any(t in device for t in _TABLETS):
        kind = "tablet"
    elif system in ("iOS", "Android") or (browser or "").endswith("Mobile"):
        kind = "mobile"
    elif system in _DESKTOP_OS:
        kind = "desktop"
    else:
        kind = "other"
    return browser, system, device, kind, False


def to_web_silver(record: dict, policy: PrivacyPolicy) -> dict:
    """A geolocated bronze row → the silver row (without the raw address)."""
    status = record["status"]
    if status is not None and not 100 <= status <= 599:
        raise RecordRejected("out_of_range", f"status {status} is outside [100, 599]",
                             record["timestamp"])
    size = record["bytes"]
    if size is not None and size > MAX_RESPONSE_BYTES:
        raise RecordRejected("out_of_range", f"bytes {size} is outside [0, "
                             f"{MAX_RESPONSE_BYTES}]", record["timestamp"])
    row = dict(record)
    ip = row.pop("client_ip")
    host = row.pop("client_host", None)
    forwarded = row.pop("forwarded_for", None)
    row.pop("extra_fields", None)  # bronze only: it may hold personal data
    if "client" in row:  # resolved before geolocation (with_client)
        ip, proxy = row.pop("client"), row.pop("proxy")
    else:
        ip, proxy = policy.client_of(ip, forwarded)
    ip = ip if ip is not None else host  # a host name stands for the client
    browser, system, device, kind, bot = describe_agent(row["user_agent"])
    ts = row["timestamp"]
    row.update(
        proxy_network=policy.network(proxy) if proxy is not None else None,
        client_network=policy.network(ip),
        visitor_id=policy.digest(f"{ip}|{row['user_agent'] or ''}"),
        browser=browser, os=system, device=device, device_class=kind, is_bot=bot,
        status_class="-" if status is None else f"{status // 100}xx",
        event_date=ts.date(), hour_of_day=ts.hour,
    )
    return row


def with_client(record: dict, policy: PrivacyPolicy) -> dict:
    """A bronze row with its client (what geolocation looks up) and the trusted proxy it
    came through: ``client``, ``proxy``."""
    ip, proxy = policy.client_of(record["client_ip"], record.get("forwarded_for"))
    return {**record, "client": ip if ip is not None else record.get("client_host"),
            "proxy": proxy}


class CleanWebLogFn(beam.DoFn):
    """Geolocated bronze row → silver row, or a dead letter. The dead letter keeps the row
    with its address reduced as silver reduces it: raw addresses stay in bronze (where the
    ``source`` points to the original line)."""

    def __init__(self, policy: PrivacyPolicy):
        self._policy = policy

    def setup(self):
        self._rejected = Metrics.counter("silver", "log_lines_rejected")
        self._bots = Metrics.counter("silver", "bot_requests")

    def process(self, record):
        try:
            row = to_web_silver(record, self._policy)
        except Exception as exc:  # noqa: BLE001 - one bad row must never stop the pipeline
            reason, message, _ = rejection_of(exc)
            self._rejected.inc()
            yield TaggedOutput(DEAD_LETTER, dead_letter(
                layer="silver", step="CleanWebLog", reason=reason, message=message,
                payload=self._policy.redact(record), source=record.get("source"),
                event_timestamp=record.get("timestamp")))
            return
        if row["is_bot"]:
            self._bots.inc()
        yield row


#: What makes two log lines the same request: everything the line says.
IDENTITY = ("client_ip", "client_host", "timestamp", "request", "status", "bytes", "referrer",
            "user_agent", "auth_user")


def _identity(row: dict) -> str:
    # repr: an absent referrer (None) is not the referrer "None".
    return "\x1f".join(repr(row.get(k)) for k in IDENTITY)


class _KeepFirstFn(beam.DoFn):
    def __init__(self, redact):
        self._redact = redact

    def setup(self):
        self._duplicates = Metrics.counter("silver", "duplicate_log_lines")

    def process(self, keyed):
        _, copies = keyed
        copies = sorted(copies, key=lambda r: r.get("source") or "")
        yield copies[0]
        for dup in copies[1:]:
            self._duplicates.inc()
            yield TaggedOutput(DEAD_LETTER, dead_letter(
                layer="silver", step="DeduplicateRequests",
                reason="duplicate_event", message="the same line was already kept from "
                f"{copies[0].get('source')}", payload=self._redact(dup),
                source=dup.get("source"),
                event_timestamp=dup["timestamp"]))


class DeduplicateRequests(beam.PTransform):
    """Opt-in (``--dedupe-identical-lines``), for sources known to ship a log twice: one
    row per identical log line; the other copies are ``duplicate_event`` dead letters. Off
    by default: real logs repeat lines (a client fetching parts of a file, a health check
    polled several times a second), and those are requests.

    Batch groups the copies; streaming remembers each line in Beam state for as long as it
    could still arrive (its minute plus the allowed lateness: later ones are dead-lettered
    ``late`` at arrival)."""

    def __init__(self, mode: Mode = BATCH, policy: PrivacyPolicy | None = None):
        super().__init__()
        self._mode = mode
        self._redact = (policy or PrivacyPolicy()).redact

    def expand(self, rows):
        keyed = rows | "KeyByLine" >> beam.Map(lambda r: (_identity(r), r)).with_output_types(
            tuple[str, dict])
        out = keyed | self._mode.choose(
            batch=("GroupCopies" >> beam.GroupByKey()
                   | "KeepFirst" >> beam.ParDo(_KeepFirstFn(self._redact)).with_outputs(
                       DEAD_LETTER, main="records")),
            streaming="FirstCopy" >> _FirstCopyInState(self._mode, self._redact))
        return {"records": out.records, "dead_letters": out[DEAD_LETTER]}


class _FirstCopyInState(beam.PTransform):
    """Streaming: each line remembered in Beam state for as long as a copy could still
    arrive (its minute, the allowed lateness, and a minute's margin)."""

    def __init__(self, mode: Streaming, redact):
        super().__init__()
        self._mode = mode
        self._redact = redact

    def expand(self, keyed):
        return keyed | beam.ParDo(FirstSeenFn(
            layer="silver", step="DeduplicateRequests", reason="duplicate_event",
            what="log line", remember_s=60 + self._mode.allowed_lateness_s + 60,
            redact=self._redact)).with_outputs(DEAD_LETTER, main="records")


class CleanWebLogs(beam.PTransform):
    """Silver of the web logs: dedupe (``dedupe_identical_lines`` only: by default two
    identical lines are two requests), geolocate, then range checks, agents and privacy:
    ``{'records': silver rows, 'dead_letters': …}``."""

    def __init__(self, policy: PrivacyPolicy, geo_database: str | None = None,
                 mode: Mode = BATCH, dedupe_identical_lines: bool = False):
        super().__init__()
        self._policy = policy
        self._geo_database = geo_database
        self._mode = mode
        self._dedupe = dedupe_identical_lines

    def expand(self, bronze):
        from transforms.geo import Geolocate

        dead = []
        if self._dedupe:
            unique = bronze | "DeduplicateRequests" >> DeduplicateRequests(
                self._mode, self._policy)
            bronze = unique["records"]
            dead.append(unique["dead_letters"])
        # Otherwise identical lines are distinct requests (a log's resolution is a second).
        cleaned = (bronze
                   | "FindClient" >> beam.Map(with_client, self._policy)
                   | "Geolocate" >> Geolocate(self._geo_database, ip_field="client")
                   | "CleanWebLog" >> beam.ParDo(CleanWebLogFn(
                       self._policy)).with_outputs(DEAD_LETTER, main="records"))
        dead = ((*dead, cleaned[DEAD_LETTER]) | "SilverDeadLetters" >> beam.Flatten())
        return {"records": cleaned.records, "dead_letters": dead}
