"""Web-log silver: user agents, address privacy, status ranges."""
from __future__ import annotations

from datetime import date

import pytest

from generators.weblogs import BOTS, BROWSERS
from tests.conftest import NOW
from transforms.bronze import RawRecord
from transforms.dead_letters import RecordRejected
from transforms.geo import Place, geo_fields
from transforms.web_logs.access_log import to_web_log_bronze
from transforms.web_logs.row_silver import (
    CleanWebLogFn,
    PrivacyPolicy,
    describe_agent,
    to_web_silver,
)

SALT = PrivacyPolicy(salt=b"test-salt")


def bronze(ip="81.2.69.160", status=200, agent=BROWSERS[0][1]):
    line = (f'{ip} - - [10/Oct/2025:20:55:36 +0000] "GET /a?b=1 HTTP/1.1" {status} 10 '
            f'"-" "{agent}"')
    row = to_web_log_bronze(RawRecord(line, "access.log:1"), NOW)
    row.update(geo_fields(Place("located", "GB", "United Kingdom", "England", "London",
                                51.5, -0.1)))
    return row


@pytest.mark.parametrize("agent, expected", [
    (BROWSERS[0][1], ("Chrome", "Windows", "desktop", False)),
    (BROWSERS[3][1], ("Safari", "Mac OS X", "desktop", False)),
    (BROWSERS[6][1], ("Mobile Safari", "iOS", "mobile", False)),
    (BROWSERS[7][1], ("Chrome Mobile", "Android", "mobile", False)),
    (BROWSERS[8][1], ("Mobile Safari", "iOS", "tablet", False)),
    (BOTS[0][1], ("Googlebot", None, "bot", True)),
    (BOTS[3][1], ("curl", None, "bot", True)),
    (BOTS[6][1], (None, None, "bot", True)),            # "compatible; scanner"
    ("SomethingNew/1.0", (None, None, "other", False)),
    (None, (None, None, "other", False)),
])
def test_user_agents_are_classed(agent, expected):
    browser, system, _, kind, bot = describe_agent(agent)
    assert (browser, system, kind, bot) == expected


@pytest.mark.parametrize("ip, policy, expected", [
    ("81.2.69.160", PrivacyPolicy(salt=b"s"), "81.2.69.0/24"),
    ("81.2.69.160", PrivacyPolicy(ipv4_prefix=16, salt=b"s"), "81.2.0.0/16"),
    ("2001:db8:1234:5678::1", PrivacyPolicy(salt=b"s"), "2001:db8:1234::/48"),
    ("2001:db8:1234:5678::1", PrivacyPolicy(ipv6_prefix=32, salt=b"s"), "2001:db8::/32"),
    ("::ffff:81.2.69.160", PrivacyPolicy(salt=b"s"), "81.2.69.0/24"),
    ("fe80::1%eth0", PrivacyPolicy(salt=b"s"), "fe80::/48"),
    # 6to4 and Teredo carry a whole IPv4 address: reduced as that address is
    ("2002:5102:45a0::1", PrivacyPolicy(salt=b"s"), "81.2.69.0/24"),
    ("2002:5102:45a0:ffff::1", PrivacyPolicy(ipv4_prefix=16, salt=b"s"), "81.2.0.0/16"),
    ("2001:0:4136:e378:8000:63bf:aefd:965f", PrivacyPolicy(salt=b"s"), "81.2.105.0/24"),
    # A host name the server logged: its first label (the client's own) dropped
    ("unicomp6.unicomp.net", PrivacyPolicy(salt=b"s"), "*.unicomp.net"),
    ("PM4_23.Digital.NET.", PrivacyPolicy(salt=b"s"), "*.digital.net"),
    ("localhost", PrivacyPolicy(salt=b"s"), "*"),
])
def test_addresses_are_truncated_to_their_network(ip, policy, expected):
    assert policy.network(ip) == expected


def test_hash_mode_is_stable_for_a_salt_and_differs_across_salts():
    one, same, other = (PrivacyPolicy("hash", salt=b"a"), PrivacyPolicy("hash", salt=b"a"),
                        PrivacyPolicy("hash", salt=b"b"))
    assert one.network("81.2.69.160") == same.network("81.2.69.160")
    assert one.network("81.2.69.160") != other.network("81.2.69.160")
    assert "81.2" not in one.network("81.2.69.160") and len(one.network("1.1.1.1")) == 16
    assert PrivacyPolicy().salt != PrivacyPolicy().salt  # no salt given: a run of its own


def test_a_host_name_client_reaches_silver_reduced_and_is_never_looked_up():
    line = ('unicomp6.unicomp.net - - [01/Jul/1995:00:00:06 -0400] "GET / HTTP/1.0" 200 '
            '3985')
    bronze = to_web_log_bronze(RawRecord(line, "nasa:2"), NOW)
    assert (bronze["client_ip"], bronze["client_host"]) == (None, "unicomp6.unicomp.net")
    row = to_web_silver({**bronze, **geo_fields(Place("hostname"))}, SALT)
    assert row["client_network"] == "*.unicomp.net" and "client_host" not in row
    assert row["geo_status"] == "hostname" and "unicomp6" not in repr(row)
    assert SALT.redact(bronze)["client_host"] == "*.unicomp.net"
    hashed = PrivacyPolicy("hash", salt=b"a")
    assert "unicomp" not in hashed.network("unicomp6.unicomp.net")


def test_the_silver_row_has_no_raw_address_and_its_derived_columns():
    row = to_web_silver(bronze(), SALT)
    assert "client_ip" not in row and "81.2.69.160" not in repr(row)
    assert row["client_network"] == "81.2.69.0/24"
    assert row["visitor_id"] == to_web_silver(bronze(), SALT)["visitor_id"]
    assert row["visitor_id"] != to_web_silver(bronze(agent=BOTS[0][1]), SALT)["visitor_id"]
    assert (row["status_class"], row["event_date"], row["hour_of_day"]) == (
        "2xx", date(2025, 10, 10), 20)
    assert (row["geo_city"], row["browser"], row["device_class"]) == (
        "London", "Chrome", "desktop")


def test_a_status_outside_the_http_range_is_a_dead_letter():
    with pytest.raises(RecordRejected) as err:
        to_web_silver(bronze(status=999), SALT)
    assert err.value.reason == "out_of_range"
    fn = CleanWebLogFn(SALT)
    fn.setup()
    (out,) = list(fn.process(bronze(status=999)))
    assert out.tag == "dead_letter" and out.value["layer"] == "silver"


def test_the_schema_declares_every_silver_column():
    from schemas.web_logs import WEB_LOGS_SILVER

    assert set(to_web_silver(bronze(), SALT)) == set(WEB_LOGS_SILVER.names)


def test_the_salt_comes_from_a_file_or_the_environment_not_only_the_command_line(
        tmp_path, monkeypatch):
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines.errors import UserError
    from beam_pipelines.options import WebLogsOptions
    from beam_pipelines.web_logs import SALT_VARIABLE, ip_salt

    def salt(*argv):
        return ip_salt(PipelineOptions(list(argv)).view_as(WebLogsOptions))

    secret = tmp_path / "salt"
    secret.write_bytes(b"from-a-file\n")
    monkeypatch.setenv(SALT_VARIABLE, "from-the-environment")
    assert salt("--ip-salt-file", str(secret)) == b"from-a-file"
    assert salt() == b"from-the-environment"
    assert salt("--ip-salt", "given") == b"given"
    monkeypatch.delenv(SALT_VARIABLE)
    assert salt() == b""  # the run draws its own
    for argv, words in ((("--ip-salt", "a", "--ip-salt-file", str(secret)), "give one"),
                        (("--ip-salt-file", str(tmp_path / "none")), "--ip-salt-file"),
                        (("--ip-salt-file", str(tmp_path)), "--ip-salt-file")):
        with pytest.raises(UserError, match=words):
            salt(*argv)
    (tmp_path / "empty").write_bytes(b"\n")
    with pytest.raises(UserError, match="empty"):
        salt("--ip-salt-file", str(tmp_path / "empty"))

