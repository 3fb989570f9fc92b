"""A rejected record leaves nothing behind: every step that turns an exception into a dead
letter lets go of it, so no reference cycle (exception → traceback → the step's frame →
its locals) keeps the step's batch alive until the next full garbage collection."""
from __future__ import annotations

import functools
import gc
from types import FrameType, TracebackType

import pytest

from tests.conftest import NOW, line
from tests.test_web_silver import SALT
from tests.test_web_silver import bronze as web_bronze
from transforms.batches import raw_lines
from transforms.dead_letters import RecordRejected, internal_error, rejection_of
from transforms.geo import GeoDatabase, default_database
from transforms.server_metrics.bronze import bronze_batch
from transforms.server_metrics.row_silver import CheckServerMetricFn
from transforms.server_metrics.rules import ServerMetricsRules
from transforms.server_metrics.silver import silver_batch
from transforms.web_logs.bronze import web_bronze_batch
from transforms.web_logs.row_silver import CleanWebLogFn
from transforms.web_logs.silver import clean_batch

_LOG = ('81.2.69.160 - - [10/Oct/2025:20:55:36 +0000] "GET /a HTTP/1.1" {status} 10 '
        '"-" "curl/8.0"')


def _metrics_bronze():
    # a line that is not JSON and one whose type is wrong: the row-level bronze rejects both
    lines = [line().encode(), b"{oops", line(cpu_usage="high").encode()]
    out = bronze_batch(raw_lines(lines, "f.jsonl"), NOW)
    assert len(out.dead_letters) == 2
    return out


def _metrics_silver():
    records = bronze_batch(raw_lines([line().encode(), line(cpu_usage=250.0).encode()],
                                     "f.jsonl"), NOW).records
    out = silver_batch(records, ServerMetricsRules())
    assert [d["reason"] for d in out.dead_letters] == ["out_of_range"]
    return out


def _metrics_silver_row():
    bronze = bronze_batch(raw_lines([line(cpu_usage=250.0).encode()], "f.jsonl"),
                          NOW).records.to_pylist()[0]
    fn = CheckServerMetricFn(ServerMetricsRules())
    fn.setup()
    (out,) = list(fn.process(bronze))
    assert out.tag == "dead_letter"
    return out


@functools.cache
def _geo() -> GeoDatabase:
    return GeoDatabase(default_database())  # one per worker, as the pipeline opens it


def _web_silver():
    logs = raw_lines([_LOG.format(status=200).encode(), _LOG.format(status=999).encode()],
                     "access.log")
    records = web_bronze_batch(logs, NOW).records
    out = clean_batch(records, SALT, _geo(), NOW)
    assert [d["reason"] for d in out.dead_letters] == ["out_of_range"]
    return out


def _web_silver_row():
    fn = CleanWebLogFn(SALT)
    fn.setup()
    (out,) = list(fn.process(web_bronze(status=999)))
    assert out.tag == "dead_letter"
    return out


@pytest.mark.parametrize("reject", [_metrics_bronze, _metrics_silver, _metrics_silver_row,
                                    _web_silver, _web_silver_row])
def test_a_rejection_leaves_no_reference_cycle(reject):
    reject()  # the first call loads what it uses once (caches, lazily built tables)
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)  # what a collection finds is kept, to be looked at
    try:
        out = reject()
        gc.collect()
        # Other threads of the test process may leave cycles of their own: only an
        # exception, a traceback or a frame of the step's would be this step's.
        left = [o for o in gc.garbage if isinstance(o, (BaseException, TracebackType))
                or (isinstance(o, FrameType) and "/transforms/" in o.f_code.co_filename)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert not left, left
    assert out is not None


def test_a_rejection_is_its_reason_message_and_time_and_any_other_error_an_internal_one():
    at = NOW
    assert rejection_of(RecordRejected("out_of_range", "too hot", at)) == (
        "out_of_range", "too hot", at)
    assert rejection_of(KeyError("cpu")) == ("internal_error", "KeyError: 'cpu'", None)
    assert rejection_of(KeyError("cpu")) == (internal_error(KeyError("cpu")).reason,
                                             internal_error(KeyError("cpu")).message, None)
