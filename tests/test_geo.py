"""Geolocation on a tiny database built here, so every expected answer is exact."""
from __future__ import annotations

import apache_beam as beam
import pytest

from tests.conftest import run_and_collect
from transforms.geo import (
    HOSTNAME,
    LOCATED,
    PRIVATE,
    RESERVED,
    UNKNOWN,
    GeoDatabase,
    Geolocate,
    classify,
    default_database,
)

NETWORKS = {
    "81.2.69.0/24": ("GB", "United Kingdom", "England", "London", 51.5142, -0.0931),
    "89.160.20.0/24": ("SE", "Sweden", "Östergötland County", "Linköping", 58.4167, 15.6167),
    "2a02:cf40::/32": ("NO", "Norway", None, None, 62.0, 10.0),   # a country, no city
    "216.160.83.0/24": ("US", "United States", "Washington", "Milton", 47.2513, -122.3149),
}


@pytest.fixture(scope="module")
def database(tmp_path_factory):
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    writer = MMDBWriter(ip_version=6, ipv4_compatible=True, database_type="GeoLite2-City",
                        languages=["en"], description="test cities")
    for network, (code, country, region, city, lat, lon) in NETWORKS.items():
        record = {"country": {"iso_code": code, "names": {"en": country}},
                  "location": {"latitude": lat, "longitude": lon}}
        if region:
            record["subdivisions"] = [{"names": {"en": region}}]
        if city:
            record["city"] = {"names": {"en": city}}
        if code == "SE":  # a database with ASN data (as GeoIP2 Enterprise has)
            record["traits"] = {"autonomous_system_number": 29518,
                                "autonomous_system_organization": "Bredband2 AB"}
        writer.insert_network(IPSet([network]), record)
    path = tmp_path_factory.mktemp("geo") / "test-city.mmdb"
    writer.to_db_file(str(path))
    return str(path)


@pytest.mark.parametrize("ip, expected", [
    ("81.2.69.160", ("GB", "United Kingdom", "England", "London", 51.5142, -0.0931)),
    ("89.160.20.128", ("SE", "Sweden", "Östergötland County", "Linköping", 58.4167, 15.6167)),
    ("216.160.83.56", ("US", "United States", "Washington", "Milton", 47.2513, -122.3149)),
    ("::ffff:81.2.69.1", ("GB", "United Kingdom", "England", "London", 51.5142, -0.0931)),
    ("2a02:cf40:1::7", ("NO", "Norway", None, None, 62.0, 10.0)),
])
def test_known_addresses_get_their_place(database, ip, expected):
    place = GeoDatabase(database).lookup(ip)
    assert place.status == LOCATED
    assert (place.country_code, place.country, place.region, place.city, place.latitude,
            place.longitude) == expected


@pytest.mark.parametrize("ip, status", [
    ("10.1.2.3", PRIVATE), ("192.168.0.10", PRIVATE), ("172.16.5.4", PRIVATE),
    ("127.0.0.1", PRIVATE), ("::1", PRIVATE), ("fe80::1", PRIVATE), ("fd12:3456::1", PRIVATE),
    ("169.254.1.1", PRIVATE), ("224.0.0.1", RESERVED), ("100.64.1.1", RESERVED),
    # No private network holds these, whatever Python's is_private says: reserved.
    ("0.0.0.0", RESERVED), ("0.1.2.3", RESERVED), ("240.0.0.1", RESERVED),
    ("192.0.2.5", RESERVED), ("198.51.100.7", RESERVED), ("203.0.113.9", RESERVED),
    ("2001:db8::1", RESERVED), ("::", RESERVED),
    ("8.8.8.8", UNKNOWN), ("2001:4860::8888", UNKNOWN),
])
def test_private_reserved_and_unknown_addresses_keep_null_geography(database, ip, status):
    place = GeoDatabase(database).lookup(ip)
    assert place.status == status
    assert place.country_code is None and place.city is None and place.latitude is None


def test_classification_follows_the_registries():
    assert classify("::ffff:10.0.0.1") == (PRIVATE, "10.0.0.1")
    assert classify("81.2.69.160") == (LOCATED, "81.2.69.160")
    # A host name the server logged is never resolved here.
    assert classify("unicomp6.unicomp.net") == (HOSTNAME, "unicomp6.unicomp.net")
    for bad in ("not an ip", "999.1.1.1", "-leading.example", "bad!host.example",
                "a..b"):
        with pytest.raises(ValueError):
            classify(bad)


def test_the_cache_answers_repeats_without_the_reader(database):
    db = GeoDatabase(database, cache_size=16)
    first = db.lookup("81.2.69.160")
    db._reader.close()  # a second lookup of the same address must not need the reader
    assert db.lookup("81.2.69.160") == first
    assert db.lookup.cache_info().hits == 1


def test_the_transform_keeps_every_record_and_counts_each_status(database):
    ips = ["81.2.69.160", "81.2.69.161", "10.0.0.1", "8.8.8.8", "224.0.0.1", "2a02:cf40::1"]
    records = [{"client_ip": ip, "n": i} for i, ip in enumerate(ips)]
    found = run_and_collect(lambda p: {"out": p | beam.Create(records)
                                       | Geolocate(database)})["out"]
    assert sorted(r["n"] for r in found) == list(range(len(ips)))
    by_ip = {r["client_ip"]: r for r in found}
    assert by_ip["81.2.69.161"]["geo_city"] == "London"
    assert by_ip["10.0.0.1"]["geo_status"] == PRIVATE and by_ip["10.0.0.1"]["geo_city"] is None
    assert by_ip["8.8.8.8"]["geo_status"] == UNKNOWN
    assert by_ip["2a02:cf40::1"]["geo_country_code"] == "NO"


def test_the_embedded_database_is_real_and_answers():
    db = GeoDatabase(default_database())
    place = db.lookup("8.8.8.8")
    assert place.status == LOCATED and place.country_code == "US"
    assert db._reader.metadata().database_type == "DBIP-City-Lite"


def test_statuses_are_counted_in_beam_metrics(database):
    from apache_beam.metrics.metric import MetricsFilter

    from tests.conftest import test_pipeline

    p = test_pipeline()
    _ = (p | beam.Create([{"client_ip": ip} for ip in
                          ("81.2.69.160", "81.2.69.160", "10.0.0.1", "8.8.8.8")])
         | Geolocate(database))
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(
        MetricsFilter().with_namespace("geo"))["counters"]}
    assert counters == {"located": 2, "private": 1, "unknown": 1}


def test_asn_and_organisation_come_along_when_the_database_has_them(database):
    db = GeoDatabase(database)
    sweden, london = db.lookup("89.160.20.128"), db.lookup("81.2.69.160")
    assert (sweden.asn, sweden.organization) == (29518, "Bredband2 AB")
    assert (london.asn, london.organization) == (None, None)


def test_a_database_on_a_remote_file_system_is_copied_locally_once(database):
    """gs:// goes through Beam's FileSystems: the same path as this registered scheme."""
    from apache_beam.io.localfilesystem import LocalFileSystem

    opened = []

    class RemoteFileSystem(LocalFileSystem):
        @classmethod
        def scheme(cls):
            return "remotetest"

        def open(self, path, *args, **kwargs):
            opened.append(path)
            return super().open(path.removeprefix("remotetest://"), *args, **kwargs)

        def exists(self, path):
            return super().exists(path.removeprefix("remotetest://"))

    db = GeoDatabase(f"remotetest://{database}")
    assert db.lookup("81.2.69.160").city == "London"
    assert db.lookup("81.2.69.161").city == "London"
    assert opened == [f"remotetest://{database}"]
