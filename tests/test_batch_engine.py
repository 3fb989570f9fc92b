"""The batch medallion on Arrow batches gives, table by table and dead letter by dead
letter, what the row-level medallion gives on the same files."""
from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timezone

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from beam_pipelines.catalog import connect as connect_catalog
from beam_pipelines.io.sources import (
    ReadRawBatches,
    ReadServerMetricFiles,
    read_line_range,
    resolve_inputs,
    split_ranges,
)
from generators.metrics import GeneratorConfig, MetricsGenerator
from generators.writers import write_metrics
from tests.conftest import fixed_clock, line, metric, run_and_collect
from tests.equivalence import assert_tables_equal, normalised
from transforms.batches import raw_lines
from transforms.bronze import RawRecord
from transforms.server_metrics.bronze import _row_level, bronze_batch
from transforms.server_metrics.medallion import ServerMetricsBatchMedallion
from transforms.server_metrics.row_medallion import ServerMetricsMedallion
from transforms.server_metrics.rules import ServerMetricsRules


def _deep(levels: int):
    value = []
    for _ in range(levels - 1):
        value = [value]
    return value


#: Inputs the vectorised checks must hand to the row-level path, one per line.
AWKWARD = [
    line(), line(cpu_usage=True), line(memory_usage=False), line(cpu_usage="42.5"),
    line(cpu_usage="5_0"), line(cpu_usage=2 ** 60 + 1), line(cpu_usage=10 ** 400 // 10 ** 390),
    line(disk_io=7), line(server_name="   "), line(server_name=" padded "),
    line(server_name="\u3000"), line(server_id="\x1c"), line(server_id=" srv-1 "),
    line(timestamp="2026-01-05T10:00:00"), line(timestamp="2026-01-05 10:00:00Z"),
    line(timestamp=1767607200), line(timestamp="1767607200000"),
    line(timestamp="2026-02-30T10:00:00Z"), line(timestamp="1999-12-31T23:59:59Z"),
    line(timestamp="2100-01-01T00:00:00Z"), line(timestamp="2026-01-05T10:00:00+05:30"),
    line(timestamp="2026-01-05T10:00:00.1234567Z"), line(timestamp="2026-01-05T24:00:00Z"),
    line(timestamp=None), line(server_id=None), line(server_id=5), line(location=["x"]),
    line(rack="r1", firmware={"v": 3}), line(cpu_usage=None, memory_usage=None, disk_io=None,
                                             network_in=None, network_out=None,
                                             temperature_c=None, power_watts=None),
    line(cpu_usage=101), line(temperature_c=-41), line(server_type="DB"),
    line(server_type="mainframe"), line(location="  US_East  "), line(cpu_usage=-0.0),
    json.dumps({"server_id": "s", "cpu\u005fusage": "x", "timestamp": "2026-01-05T10:00:00Z"}),
    '{"server_id": "a" , "cpu_usage" : "7", "timestamp":"2026-01-05T10:00:00Z"}',
    "", "   ", "[1, 2]", "null", "{not json", '{"a": NaN}', "\ufeff" + line(),
    '{"hostname": "x"}',
    json.dumps({"server_code": "IN-1", "temp_celsius": "31.5", "cpu_usage_percent": 40,
                "timestamp_ist": "2026-01-05 15:30:00"}),
    json.dumps({"instance_id": "US-1", "time_utc": "2026-01-05T10:00:00Z",
                "temp_fahrenheit": "hot", "load_fraction": 0.5}),
    json.dumps({"node_name": "DE-1", "epoch_time": 1767607200, "temp_kelvin": 300.15}),
    line(firmware=_deep(600)), line(network_in=1e308), line(disk_io=1e308, cpu_usage=1.0),
    line(cpu_usage=2 ** 53 + 1), line(server_name="nul\x00inside"),
    line()[:-1] + ', "cpu_usage": 12.5}', line()[:-1] + ', "cpu_usage": "12.5"}',
    line()[:-1] + ', "disk_io": 1' + "0" * 400 + "}", line()[:-1] + ', "disk_io": 1e400}',
]


def _awkward_bytes() -> list[bytes]:
    lines = [text.encode() for text in AWKWARD]
    lines += [b"\xff\xfe not utf-8", line(cpu_usage=1).encode() + b"\r",
              line(server_id="srv-2", cpu_usage=33.3).encode(),
              line(server_id="srv-2", cpu_usage=33.3).encode(),  # an exact copy
              line(server_id="srv-2", cpu_usage=44.4).encode()]  # a differing copy
    return lines


def _batched(files: dict) -> dict:
    return run_and_collect(lambda p: p | ReadRawBatches(files, batch_lines=700,
                                                        range_bytes=100_000)
                           | ServerMetricsBatchMedallion(ServerMetricsRules(), clock=fixed_clock))


def _both(files: dict) -> tuple[dict, dict]:
    rows = run_and_collect(lambda p: p | ReadServerMetricFiles(files)
                           | ServerMetricsMedallion(ServerMetricsRules(), clock=fixed_clock))
    return rows, _batched(files)


@pytest.fixture(scope="module")
def faulty_files(tmp_path_factory):
    """Generated records across midnight with every fault, in the three formats, plus the
    awkward inputs."""
    work = tmp_path_factory.mktemp("engine")
    config = dict(servers=4, interval_ms=7000, count=2400, seed=8, malformed_rate=0.05,
                  duplicate_rate=0.03, late_rate=0.03, anomaly_rate=0.02,
                  start=datetime(2026, 1, 5, 23, 30, tzinfo=timezone.utc))
    write_metrics(MetricsGenerator(GeneratorConfig(**config)), str(work / "m.jsonl"), "jsonl")
    with open(work / "m.jsonl", "ab") as fh:
        fh.write(b"\n".join(_awkward_bytes()) + b"\n")
    write_metrics(MetricsGenerator(GeneratorConfig(**{**config, "seed": 9, "count": 300})),
                  str(work / "m.csv"), "csv")
    write_metrics(MetricsGenerator(GeneratorConfig(**{**config, "seed": 10, "count": 300})),
                  str(work / "m.parquet"), "parquet")
    pq.write_table(pa.Table.from_pylist([metric(), metric(server_id="srv-2", cpu_usage=250.0)]),
                   work / "edge.parquet")
    (work / "edge.csv").write_text("server_id,timestamp,cpu_usage\nsrv-3,2026-01-05T10:00:00Z,"
                                   "12\nsrv-4,2026-01-05T10:00:00Z,n/a\n")
    return resolve_inputs([str(work)])


def test_every_table_and_dead_letter_equals_the_row_level_medallion(faulty_files):
    rows, batches = _both(faulty_files)
    assert len(rows["server_metrics_silver"]) > 2000
    assert len(rows["server_alert_matrix"]) > 1000 and rows["anomalies"]
    assert {d["reason"] for d in rows["dead_letters"]} >= {
        "wrong_type", "invalid_json", "duplicate_event", "out_of_range", "unknown_category",
        "timestamp_out_of_range", "invalid_timestamp", "missing_required_field",
        "unmappable_record", "no_measurements", "undecodable_payload", "empty_payload"}
    sources = {r["source"].rsplit("/", 1)[-1].split(":")[0] for r in rows["dead_letters"]
               if r["source"]}
    assert {"m.jsonl", "m.csv", "edge.csv", "edge.parquet"} <= sources
    days = {r["window_start"].date() for r in rows["server_health_summary"]}
    assert len(days) == 2  # the run crosses midnight: matrix windows straddle two groups
    assert_tables_equal(rows, batches)


def test_gold_of_groups_gathered_or_one_by_one_is_the_same(faulty_files, monkeypatch):
    """Gold is computed over gathered (server, day) groups; a group alone (the gathering
    flushed after every group, as at the end of a bundle) gives the same tables."""
    from transforms.server_metrics.medallion import ServerDaysFn

    gathered = _batched(faulty_files)
    monkeypatch.setattr(ServerDaysFn, "GATHER_ROWS", 1)
    one_by_one = _batched(faulty_files)
    assert len({r["window_start"].date() for r in gathered["server_health_summary"]}) == 2
    assert len(one_by_one["server_alert_matrix"]) > 1000
    assert_tables_equal(one_by_one, gathered)


def test_the_fast_path_and_the_row_level_path_agree_on_every_awkward_input():
    lines = _awkward_bytes()
    now = fixed_clock()
    batch = bronze_batch(raw_lines(lines, "f.jsonl"), now)
    reference = _row_level([RawRecord(item, "f.jsonl") for item in lines], now,
                           "ParseServerMetric")
    assert batch.records.num_rows + len(batch.dead_letters) == len(lines)
    assert normalised(batch.records.to_pylist()) == normalised(reference.records.to_pylist())
    assert sorted((d["reason"], d["message"], d["payload"]) for d in batch.dead_letters) == \
        sorted((d["reason"], d["message"], d["payload"]) for d in reference.dead_letters)
    accepted = {r["cpu_usage"] for r in batch.records.to_pylist()}
    assert {42.5, 7.0} <= accepted  # numbers sent as text are coerced, as ever
    reasons = Counter(d["reason"] for d in batch.dead_letters)
    assert reasons["wrong_type"] >= 4 and reasons["invalid_timestamp"] >= 1


def test_clean_records_never_take_the_row_level_path(monkeypatch, tmp_path):
    from transforms.server_metrics import bronze

    seen = []
    original = bronze._row_level
    monkeypatch.setattr(bronze, "_row_level",
                        lambda raws, *a: seen.extend(raws) or original(raws, *a))
    path = tmp_path / "m.jsonl"
    write_metrics(MetricsGenerator(GeneratorConfig(servers=5, interval_ms=10_000, count=2000)),
                  str(path), "jsonl")
    lines = path.read_bytes().splitlines()
    out = bronze.bronze_batch(raw_lines(lines + [b"{oops"], str(path)), fixed_clock())
    assert out.records.num_rows == 2000 and [r.payload for r in seen] == [b"{oops"]


def test_records_of_exactly_the_declared_fields_are_decoded_typed_and_others_as_dicts():
    from transforms.server_metrics.bronze import _decode_typed

    payloads = [line().encode(), line(cpu_usage=7).encode(), line(rack="r1").encode(),
                line(cpu_usage="7").encode(), line(cpu_usage=True).encode(), b"{oops",
                b"\xff", line(timestamp=1767607200).encode()]
    typed, at, untyped = _decode_typed(payloads, pa.array([False] * len(payloads)))
    assert at == [0, 1] and untyped == [2, 3, 4, 5, 6, 7]
    assert typed[1].cpu_usage == 7.0 and typed[0].server_id == "srv-1"


def test_the_edge_space_screen_finds_what_the_regular_expression_finds():
    import random

    import pyarrow.compute as pc

    from transforms.server_metrics.bronze import EDGE_SPACE, edge_space

    spaces = [c for c in map(chr, range(0x3001)) if c.isspace()]
    others = ["a", "é", "©", "\u0100", "\u1680x", "\u2000"[0] + "x", "\u3001", "中", "😀", "-"]
    rng = random.Random(3)
    values = ["", None, " ", "a b"] + [
        "".join(rng.choice(spaces + others) for _ in range(rng.randint(1, 4)))
        for _ in range(3000)]
    arr = pa.array(values, pa.string())
    for part in (arr, arr.slice(7, 2000), arr.slice(3000)):
        expected = pc.match_substring_regex(part, EDGE_SPACE).fill_null(False)
        assert edge_space(part).tolist() == expected.to_pylist()
    assert edge_space(pa.array([], pa.string())).tolist() == []
    assert edge_space(pa.array(["", None], pa.string())).tolist() == [False, False]
    assert all(c.isspace() for c in spaces) and len(spaces) == 29


def test_line_ranges_cover_every_line_exactly_once(tmp_path):
    path = tmp_path / "m.jsonl"
    lines = [line(cpu_usage=float(i)).encode() for i in range(500)] + [b"", b"tail"]
    path.write_bytes(b"\n".join(lines))  # no newline at the end
    for size in (53, 97, 1000, 10 ** 7):
        got = [p for r in split_ranges(str(path), size) for b in read_line_range(r, 64)
               for p in b.column("payload").to_pylist()]
        assert got == lines, size
    # blank lines, a lone newline, bytes that are not UTF-8; and CRLF line ends, read alike
    for text, expected in ((b"\n\na\n\n\xffb\n", [b"", b"", b"a", b"", b"\xffb"]),
                           (b"\n", [b""]), (b"a\r\nb\r\r\nc\r", [b"a", b"b\r", b"c"])):
        path.write_bytes(text)
        got = [p for r in split_ranges(str(path), 3) for b in read_line_range(r, 2)
               for p in b.column("payload").to_pylist()]
        assert got == expected, text


def test_the_series_scan_scores_exactly_as_the_detector():
    import random

    from transforms.server_metrics.analytics import Detector, scan_series
    from transforms.server_metrics.rules import AnomalyDetection

    rules = AnomalyDetection()
    rng = random.Random(3)
    values = [rng.gauss(50, 5) + (40 if rng.random() < 0.01 else 0) for _ in range(20_000)]
    detector = Detector(rules, "cpu_usage")
    expected = [(i, *o) for i, v in enumerate(values)
                if (o := detector.score(v)) is not None and o[2] >= rules.threshold]
    hits, state = scan_series(rules, "cpu_usage", values)
    assert hits == expected and len(hits) > 150
    assert state == detector.state
    # Resumed from its state, in pieces that end in and after the warm-up, the first
    # value included: the same anomalies and the same state.
    state, hits, at = None, [], 0
    for size in (1, 3, rules.warmup - 5, 1, 2, 7, 500, 19_000, 10_000):
        piece = values[at:at + size]
        found, state = scan_series(rules, "cpu_usage", piece, state)
        hits += [(at + h[0], *h[1:]) for h in found]
        at += len(piece)
    assert at == len(values) and hits == expected and state == detector.state


def test_the_batch_pipeline_is_portable(tmp_path):
    """Beam's portable runner with its embedded job server (``--runner PortableRunner
    --job_endpoint embed``, the SDK harness in this process) writes what the FnApiRunner
    writes: the Arrow coder and the multi-output steps are portable."""
    import subprocess
    import sys

    from beam_pipelines.summary import accounting

    data = tmp_path / "m.jsonl"
    gen = MetricsGenerator(GeneratorConfig(servers=3, interval_ms=10_000, count=600,
                                           malformed_rate=0.02, duplicate_rate=0.02))
    write_metrics(gen, str(data), "jsonl")
    counts = []
    for runner in (["--runner", "FnApiRunner"],
                   ["--runner", "PortableRunner", "--job_endpoint", "embed"]):
        out = tmp_path / runner[1]
        done = subprocess.run([sys.executable, "-m", "run", "--input", str(data),
                               "--output-dir", str(out), *runner],
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-2000:]
        with connect_catalog(out) as con:
            tables = ("server_metrics_minutely", "server_alert_matrix", "anomalies",
                      "alert_signals")
            counts.append((accounting(con), [con.execute(f"select count(*) from {t}")
                                             .fetchone()[0] for t in tables]))
    assert counts[0] == counts[1]
    assert counts[0][0]["input"] == gen.stats.written and min(counts[0][1]) > 0


def test_the_dataflow_path_never_loads_the_local_runners_internals():
    """Building any pipeline imports no DirectRunner internals; only a local streaming run
    installs its fixes, and only on the Beam version they were written for."""
    import subprocess
    import sys

    code = ("import sys, beam_pipelines.runs, beam_pipelines.server_metrics, "
            "beam_pipelines.web_logs, beam_pipelines.io.live_sources, "
            "beam_pipelines.ops.flex_template;"
            "print(sorted(m for m in sys.modules if m in ("
            "'apache_beam.runners.direct.transform_evaluator', 'beam_pipelines.runners.local')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]"


def test_the_local_runner_fixes_refuse_another_beam_version(monkeypatch):
    import re
    from pathlib import Path

    import apache_beam

    from beam_pipelines.runners import local as local_runner

    pin = re.search(r'"apache-beam\[gcp\]==([^"]+)"', Path("pyproject.toml").read_text()).group(1)
    assert local_runner.PINNED_BEAM == pin
    local_runner.install()
    assert local_runner.installed()
    monkeypatch.setattr(apache_beam, "__version__", "2.78.0")
    with pytest.raises(RuntimeError, match="refusing to install them on Beam 2.78.0"):
        local_runner.install()


def test_elements_are_batches_on_every_stage_of_the_hot_path(tmp_path):
    """Counted by the pipeline itself: records per element into bronze, into the shuffle
    and per (server, day) group, at a real fleet's density."""
    from bench.worker import run_beam

    data = tmp_path / "m.jsonl"
    write_metrics(MetricsGenerator(GeneratorConfig(servers=4, interval_ms=10_000, count=4000,
                                                   malformed_rate=0.01)), str(data), "jsonl")
    stages = run_beam(str(data), str(tmp_path / "out"))["stages"]
    per_element = {s: stages[f"{s}_records"] / stages[f"{s}_elements"]
                   for s in ("bronze_in", "silver_fragments", "server_days")}
    assert per_element["bronze_in"] >= 4000  # one raw batch for a file under 10,000 lines
    assert per_element["silver_fragments"] >= 900 and per_element["server_days"] >= 900


def test_a_byte_order_mark_at_the_start_of_a_file_is_not_part_of_its_first_record(tmp_path):
    """Editors on Windows start UTF-8 files with a BOM: JSON lines, CSV and access logs
    alike; the first record is accepted, exactly as without it."""
    from beam_pipelines.io.sources import read_csv_batches
    from tests.conftest import NOW
    from transforms.web_logs.bronze import web_bronze_batch

    bom = b"\xef\xbb\xbf"
    (tmp_path / "m.jsonl").write_bytes(bom + line().encode() + b"\n" + line().encode())
    (tmp_path / "m.csv").write_bytes(bom + b"server_id,timestamp,cpu_usage\ns,2026-01-05T10:"
                                     b"00:00Z,5\n")
    log = b'1.2.3.4 - - [05/Jan/2026:10:00:00 +0000] "GET / HTTP/1.1" 200 5'
    (tmp_path / "a.log").write_bytes(bom + log + b"\n")
    for name in ("m.jsonl", "a.log"):
        path = str(tmp_path / name)
        (batch,) = read_line_range((path, 0, None))
        assert not batch.column("payload")[0].as_py().startswith(bom)
    (jsonl,) = read_line_range((str(tmp_path / "m.jsonl"), 0, None))
    assert bronze_batch(jsonl, NOW).records.num_rows == 2
    (csv,) = read_csv_batches(str(tmp_path / "m.csv"))
    assert bronze_batch(csv, NOW).records.num_rows == 1
    (logs,) = read_line_range((str(tmp_path / "a.log"), 0, None))
    assert web_bronze_batch(logs, NOW).records.num_rows == 1


def test_deep_unknown_fields_and_values_that_overflow_sums_are_dead_letters():
    """An unknown field nested past what JSON text can keep is a dead letter (it crashed
    the batch); a finite value so large that sums overflow is out of range, so no gold
    aggregate is ever infinite."""
    from tests.conftest import NOW
    from transforms.server_metrics.silver import silver_batch

    raw = raw_lines([line(firmware=_deep(600)).encode(), line(network_in=1e308).encode(),
                     line(network_in=1e9).encode()], "f.jsonl")
    bronze = bronze_batch(raw, NOW)
    assert [d["reason"] for d in bronze.dead_letters] == ["nested_too_deep"]
    silver = silver_batch(bronze.records, ServerMetricsRules())
    assert [(d["reason"], d["message"]) for d in silver.dead_letters] == [
        ("out_of_range", silver.dead_letters[0]["message"])]
    assert "network_in" in silver.dead_letters[0]["message"]
    assert silver.records.column("network_in").to_pylist() == [1e9]



def test_csv_records_follow_quotes_and_a_file_without_a_header_is_one_line(tmp_path):
    """A quoted header is a header; a quoted field holding a newline is one record (it was
    two dead letters); a file whose first row is data is refused before the run, instead
    of its first record silently becoming the header."""
    from beam_pipelines.errors import UserError
    from beam_pipelines.io.sources import count_input_records, read_csv_file
    from tests.conftest import NOW
    from transforms.server_metrics.row_bronze import to_bronze

    good = tmp_path / "quoted.csv"
    good.write_bytes(b'"server_id","timestamp","cpu_usage","server_name"\r\n'
                     b's1,2026-01-05T10:00:00Z,5,"web\nserver ""one"""\r\n'
                     b's2,2026-01-05T10:00:10Z,6,plain\r\n')
    records = list(read_csv_file(str(good)))
    assert [r.source.rsplit(":", 1)[1] for r in records] == ["2", "4"]
    rows = [to_bronze(r, NOW) for r in records]
    assert [r["server_name"] for r in rows] == ['web\nserver "one"', "plain"]
    assert count_input_records({"csv": [str(good)]}) == 2
    assert resolve_inputs([str(good)])  # a header: accepted
    headless = tmp_path / "headless.csv"
    headless.write_bytes(b"s1,2026-01-05T10:00:00Z,5\ns2,2026-01-05T10:00:10Z,6\n")
    with pytest.raises(UserError, match="is not a header"):
        resolve_inputs([str(headless)])


def test_a_location_outside_the_rules_file_is_unknown_category_in_both_engines():
    """Never a gold row for a location named 'us-east; DROP TABLE x': the rules file's
    locations are the vocabulary (none declared: any location is taken)."""
    from beam_pipelines.config import load_rules
    from tests.conftest import NOW
    from transforms.server_metrics.row_silver import to_silver
    from transforms.server_metrics.silver import silver_batch

    rules = load_rules()
    raw = raw_lines([line(location="US_East").encode(),
                     line(location="us-east; DROP TABLE x").encode(),
                     line(location=None).encode()], "f.jsonl")
    bronze = bronze_batch(raw, NOW).records
    out = silver_batch(bronze, rules)
    assert out.records.column("location").to_pylist() == ["us-east", None]
    (dead,) = out.dead_letters
    assert dead["reason"] == "unknown_category" and "DROP TABLE" in dead["message"]
    with pytest.raises(Exception, match="not one of the rules file's locations"):
        to_silver(bronze.to_pylist()[1], rules)
    assert silver_batch(bronze, ServerMetricsRules()).records.num_rows == 3  # none declared


def test_a_parquet_row_group_with_corrupt_pages_is_dead_lettered_row_by_row(tmp_path):
    """A valid footer over corrupt pages: the readable row groups are read, every row of
    the unreadable one is an unreadable_input dead letter (the run went down with a
    traceback), and the input count still adds up."""
    from beam_pipelines.io.sources import count_input_records, read_parquet_batches
    from tests.conftest import NOW

    rows = [metric(server_id=f"s{i % 3}", timestamp=f"2026-01-05T10:{i // 60 % 60:02d}:"
                   f"{i % 60:02d}Z") for i in range(400)]
    path = tmp_path / "corrupt.parquet"
    pq.write_table(pa.Table.from_pylist(rows), path, row_group_size=200)
    data = bytearray(path.read_bytes())
    page = pq.ParquetFile(path).metadata.row_group(0).column(0).data_page_offset
    data[page + 2:page + 40] = bytes(b ^ 0xFF for b in data[page + 2:page + 40])
    path.write_bytes(bytes(data))
    outs = [bronze_batch(batch, NOW) for batch in read_parquet_batches(str(path))]
    accepted = sum(o.records.num_rows for o in outs)
    dead = [d for o in outs for d in o.dead_letters]
    assert accepted == 200 and len(dead) == 200
    assert {d["reason"] for d in dead} == {"unreadable_input"}
    assert "row group 0" in dead[0]["message"] and "\n" not in dead[0]["message"]
    assert count_input_records({"parquet": [str(path)]}) == accepted + len(dead)


def test_arrow_coder_round_trips_small_tables_plain_and_large_ones_compressed():
    """Tables cross a shuffle whole (metadata, nulls, types); a large one is compressed,
    a small one is not (framing its few buffers would cost more than it saves)."""
    from transforms.batches import ArrowTableCoder

    coder = ArrowTableCoder()
    schema = pa.schema([("server_id", pa.string()), ("cpu", pa.float64()),
                        ("ts", pa.timestamp("us", tz="UTC"))], metadata={b"kind": b"x"})

    def table(n):
        return pa.table({"server_id": [f"srv-{i % 20:03d}" for i in range(n)],
                         "cpu": [None if i % 7 == 0 else i / 3 for i in range(n)],
                         "ts": [i * 1_000_000 for i in range(n)]}, schema=schema)

    for n in (0, 3, 500, 50_000):
        original = table(n)
        decoded = coder.decode(coder.encode(original))
        assert decoded.equals(original) and decoded.schema.metadata == schema.metadata, n
    large = table(50_000)
    assert len(coder.encode(large)) < large.nbytes * 0.6  # compressed
    small = table(500)
    assert len(coder.encode(small)) > small.nbytes  # plain: the buffers and the schema


def test_rows_of_a_table_are_its_rows_as_pyarrow_gives_them():
    """The fast row view equals ``to_pylist`` value for value (nulls, the edges of the
    accepted years, other units and zones left to pyarrow), and prints the same."""
    from transforms.batches import rows_of

    utc = pa.timestamp("us", tz="UTC")
    micros = [None, 0, 946_684_800_000_000, 4_102_444_799_999_999, 1_767_571_200_123_456]
    table = pa.table({
        "ts": pa.array(micros, utc),
        "offset": pa.array(micros, pa.timestamp("us", tz="+00:00")),
        "paris": pa.array(micros, pa.timestamp("us", tz="Europe/Paris")),
        "naive": pa.array(micros, pa.timestamp("us")),
        "ms": pa.array([m and m // 1000 for m in micros], pa.timestamp("ms", tz="UTC")),
        "day": pa.array([None, 0, 1, 2, 3], pa.date32()),
        "name": ["a", None, "é", "", "z"],
        "cpu": [1.5, None, float("nan"), -0.0, 2.0],
    })
    rows = rows_of(table)
    expected = table.to_pylist()
    assert [list(r) for r in rows] == [list(r) for r in expected]
    for got, want in zip(rows, expected, strict=True):
        for name in table.column_names:
            a, b = got[name], want[name]
            assert type(a) is type(b) and str(a) == str(b), (name, a, b)
            if hasattr(a, "isoformat"):
                assert a == b and a.isoformat() == b.isoformat(), (name, a, b)
    assert rows_of(table.slice(0, 0)) == []


def test_the_tables_made_in_parts_reach_the_lakehouse_without_a_flatten(tmp_path):
    """The alert feed and the alert matrix are made by several stages; each part is
    written by its own step, straight from the stage that makes it (a flatten of several
    stages would be materialised, every table in it encoded and decoded once more)."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    from beam_pipelines import runs
    from beam_pipelines.io.sources import ReadRawBatches
    from beam_pipelines.preflight import preflight
    from beam_pipelines.server_metrics import LAUNCH

    data = tmp_path / "m.jsonl"
    data.write_text(line() + "\n")
    options = PipelineOptions(["--output-dir", str(tmp_path / "out")], runner="FnApiRunner")
    p = beam.Pipeline(options=options)
    runs.build(p, p | ReadRawBatches({"jsonl": [str(data)]}), LAUNCH, preflight(options, LAUNCH))
    writers: dict[str, list] = {}
    flattened = set()

    class Inputs(beam.pipeline.PipelineVisitor):
        def visit_transform(self, node):
            if isinstance(node.transform, beam.Flatten):
                flattened.update(node.inputs)
            for table in ("ServerAlertMatrix", "AlertSignals"):
                if node.full_label.startswith(f"Write{table}Part"):  # its files' step
                    writers.setdefault(table, []).append(node.inputs[0])

    p.visit(Inputs())
    assert [part.producer.full_label for part in writers["ServerAlertMatrix"]] == [
        "ServerMetrics/GoldServerDays/ParDo(ServerDaysFn)",
        "ServerMetrics/GoldMatrixRows/ParDo(MatrixAcrossMidnightFn)"]
    assert len(writers["AlertSignals"]) == 3
    assert not flattened & {*writers["ServerAlertMatrix"], *writers["AlertSignals"]}
