"""How good the alerting is, against the generator's ground truth (``injected_faults``).

On a lakehouse written by a run over a generated sample, for the incidents and, as the
baseline, for the raw signals (``alert_events``, what seeds 002 and 003 raised):

* precision: the share of incidents (signals) that overlap an injected fault on their
  server, within two minutes either side;
* recall: the share of injected faults an incident (a signal) covers within two minutes of
  their start: one that fires by then and is still open at the start;
* pages per server and day: firing notifications (signals) over the servers and days the
  run covers.

Targets (issue: incidents): recall ≥ 95 %, precision ≥ 90 %, ≤ 20 firing notifications per
server and day on the default sample, ≤ 1 on a run without injected faults.
"""
from __future__ import annotations

import os
import subprocess
import sys

import duckdb

SLACK = "INTERVAL 2 MINUTE"


def measure(catalog: str) -> dict:
    with duckdb.connect(catalog, read_only=True) as con:
        q = lambda sql: con.execute(sql).fetchone()  # noqa: E731
        servers, days = q("""select count(distinct server_id),
                                    date_diff('second', min(timestamp), max(timestamp))
                                    / 86400.0 from server_metrics_silver""")
        faults = q("select count(*) from injected_faults")[0]
        incidents, caught_by_incident = q(f"""
            with latest as (select * from alert_incidents qualify row_number() over (
                              partition by incident_id order by pane_index desc) = 1)
            select (select count(*) from latest),
                   (select count(*) from injected_faults f where exists (
                      select 1 from latest i where i.server_id = f.server_id
                        and i.fired_at <= f.start + {SLACK}
                        and coalesce(i.resolved_at, 'infinity'::timestamptz) >= f.start))""")
        true_incidents = q(f"""
            with latest as (select * from alert_incidents qualify row_number() over (
                              partition by incident_id order by pane_index desc) = 1)
            select count(*) from latest i where exists (
              select 1 from injected_faults f where f.server_id = i.server_id
                and i.started_at <= f."end" + {SLACK}
                and coalesce(i.resolved_at, 'infinity'::timestamptz) >= f.start - {SLACK})""")[0]
        pages = q("select count(*) from alert_notifications where state = 'firing'")[0]
        signals, true_signals, caught_by_signal = q(f"""
            select (select count(*) from alert_events),
                   (select count(*) from alert_events s where exists (
                      select 1 from injected_faults f where f.server_id = s.server_id
                        and s.window_start <= f."end" + {SLACK}
                        and s.window_end >= f.start - {SLACK})),
                   (select count(*) from injected_faults f where exists (
                      select 1 from alert_events s where s.server_id = f.server_id
                        and s.window_end between f.start - {SLACK} and f.start + {SLACK}))""")
    server_days = max(servers * days, 1e-9)
    return {
        "servers": servers, "days": days, "injected_faults": faults,
        "incidents": incidents, "signals": signals,
        "incident_precision": true_incidents / incidents if incidents else None,
        "incident_recall": caught_by_incident / faults if faults else None,
        "pages_per_server_day": pages / server_days,
        "signal_precision": true_signals / signals if signals else None,
        "signal_recall": caught_by_signal / faults if faults else None,
        "signals_per_server_day": signals / server_days,
    }


def _run(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "run", *args, "--no-summary",
                           "--progress", "0"], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"python -m run {' '.join(args)}:\n{done.stderr[-2000:]}")


def bench_incident_quality(workdir: str) -> dict:
    """The default sample, and the same fleet with no injected faults."""
    sample = os.path.join(workdir, "quality_sample")
    _run(["--output-dir", sample])
    out = {f"quality_sample_{k}": v for k, v in measure(
        os.path.join(sample, "lakehouse.duckdb")).items()}
    quiet_data = os.path.join(workdir, "quality_quiet.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "generators", "metrics", "--servers", "20", "--interval",
         "10s", "--duration", "6h", "--anomaly-rate", "0", "--incidents-per-day", "0",
         "--seed", "42", "--no-progress", "-o", quiet_data], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    quiet = os.path.join(workdir, "quality_quiet")
    _run(["--input", quiet_data, "--output-dir", quiet])
    with duckdb.connect(os.path.join(quiet, "lakehouse.duckdb"), read_only=True) as con:
        servers, days = con.execute(
            "select count(distinct server_id), date_diff('second', min(timestamp), "
            "max(timestamp)) / 86400.0 from server_metrics_silver").fetchone()
        pages = con.execute("select count(*) from alert_notifications "
                            "where state = 'firing'").fetchone()[0]
        signals = con.execute("select count(*) from alert_events").fetchone()[0]
    out["quality_quiet_pages_per_server_day"] = pages / max(servers * days, 1e-9)
    out["quality_quiet_signals_per_server_day"] = signals / max(servers * days, 1e-9)
    s = {k.removeprefix("quality_sample_"): v for k, v in out.items()
         if k.startswith("quality_sample_")}
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    print(f"alert quality on the default sample ({s['servers']} servers, "
          f"{s['days'] * 24:.1f} h, {s['injected_faults']} injected faults)", flush=True)
    print(f"  {'':<22} {'precision':>9} {'recall':>7} {'per server-day':>15}", flush=True)
    print(f"  {'signals (seeds 002/003)':<22} {s['signal_precision']:>9.0%} "
          f"{s['signal_recall']:>7.0%} {s['signals_per_server_day']:>15,.0f}", flush=True)
    print(f"  {'incidents (pages)':<22} {s['incident_precision']:>9.0%} "
          f"{s['incident_recall']:>7.0%} {s['pages_per_server_day']:>15,.1f}", flush=True)
    quiet_pages = out["quality_quiet_pages_per_server_day"]
    print(f"  without injected faults: {quiet_pages:,.1f} pages per server-day "
          f"({out['quality_quiet_signals_per_server_day']:,.0f} signals)", flush=True)
    for label, ok, value, target in (
            ("recall", s["incident_recall"] >= 0.95, f"{s['incident_recall']:.0%}", "≥ 95 %"),
            ("precision", s["incident_precision"] >= 0.90, f"{s['incident_precision']:.0%}",
             "≥ 90 %"),
            ("pages per server-day", s["pages_per_server_day"] <= 20,
             f"{s['pages_per_server_day']:.1f}", "≤ 20"),
            ("pages per server-day, no faults", quiet_pages <= 1, f"{quiet_pages:.1f}",
             "≤ 1")):
        out[f"target_quality_{label}"] = {"value": value, "target": target, "met": ok}
        print(f"  {mark(ok)} {label}: {value} (target {target})", flush=True)
    return out
