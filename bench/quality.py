"""How good the alerting is, against the generator's ground truth (``injected_faults``).

On a lakehouse written by a run over a generated sample, for the incidents and, as the
baseline, for the raw signals (``alert_signals``, what seeds 002 and 003 raised):

* recall: the share of injected faults an incident covers within two minutes of their
  start (one open at the start, or opened by two minutes after it, paged or not: a
  one-sample spike opens one that lapses while pending, as the rules' ``for`` wants);
  for signals, one within two minutes of the start;
* paged recall: the share of the sustained faults (those lasting the rules' ``for`` or
  more) during which an incident fired (paged);
* precision: the share of paged incidents (and of signals) that overlap an injected fault
  on their server, within two minutes either side;
* each signal family alone, as the baseline of the seed it reproduces (002's matrix,
  003's EWMA, 000 and 001's thresholds);
* pages per server and day: firing notifications (signals) over the servers and days the
  run covers.

Targets (issue: incidents): recall ≥ 95 %, precision ≥ 90 %, ≤ 20 firing notifications per
server and day on the default sample, ≤ 1 on a run without injected faults.
"""
from __future__ import annotations

import os
import subprocess
import sys

from beam_pipelines.catalog import connect as connect_catalog

SLACK = "INTERVAL 2 MINUTE"
#: The signal families, each a baseline: seed 002's matrix, seed 003's EWMA, and the
#: threshold rules of seeds 000 and 001.
FAMILIES = ("matrix", "ewma", "threshold")
#: Faults lasting this long or more should page (the shipped rules' ``for``).
SUSTAINED_S = 60


def _fleet(con) -> tuple[int, float]:
    """(servers, days) the run's silver covers."""
    return con.execute("""select count(distinct server_id), date_diff('second',
                          min(timestamp), max(timestamp)) / 86400.0
                          from server_metrics_silver""").fetchone()


def _pages(con) -> int:
    return con.execute("select count(*) from alert_notifications "
                       "where state = 'firing'").fetchone()[0]


def measure(catalog: str) -> dict:
    with connect_catalog(catalog) as con:
        q = lambda sql: con.execute(sql).fetchone()  # noqa: E731
        servers, days = _fleet(con)
        latest = """with latest as (select * from alert_incidents qualify row_number() over (
                      partition by incident_id order by pane_index desc) = 1)"""
        faults, sustained = q(f"""select count(*), count(*) filter (where
                                  date_diff('second', start, "end") >= {SUSTAINED_S})
                                  from injected_faults""")
        incidents, paged, caught, paged_sustained = q(f"""{latest}
            select (select count(*) from latest),
                   (select count(*) from latest where fired_at is not null),
                   (select count(*) from injected_faults f where exists (
                      select 1 from latest i where i.server_id = f.server_id
                        and i.started_at <= f.start + {SLACK}
                        and coalesce(i.resolved_at, 'infinity'::timestamptz) >= f.start)),
                   (select count(*) from injected_faults f
                    where date_diff('second', f.start, f."end") >= {SUSTAINED_S}
                      and exists (
                      select 1 from latest i where i.server_id = f.server_id
                        and i.fired_at is not null and i.fired_at <= f."end" + {SLACK}
                        and coalesce(i.resolved_at, 'infinity'::timestamptz) >= f.start))""")
        true_paged = q(f"""{latest}
            select count(*) from latest i where i.fired_at is not null and exists (
              select 1 from injected_faults f where f.server_id = i.server_id
                and i.started_at <= f."end" + {SLACK}
                and coalesce(i.resolved_at, 'infinity'::timestamptz) >= f.start - {SLACK})""")[0]
        pages = _pages(con)
        by_family = {}
        for family in (None, *FAMILIES):
            where = "" if family is None else f"and s.family = '{family}'"
            by_family[family] = q(f"""
                select (select count(*) from alert_signals s where true {where}),
                       (select count(*) from alert_signals s where exists (
                          select 1 from injected_faults f where f.server_id = s.server_id
                            and s.window_start <= f."end" + {SLACK}
                            and s.window_end >= f.start - {SLACK}) {where}),
                       (select count(*) from injected_faults f where exists (
                          select 1 from alert_signals s where s.server_id = f.server_id
                            and s.window_end between f.start - {SLACK} and f.start + {SLACK}
                            {where}))""")
    signals, true_signals, caught_by_signal = by_family[None]
    server_days = max(servers * days, 1e-9)
    return {
        "servers": servers, "days": days, "injected_faults": faults,
        "sustained_faults": sustained, "incidents": incidents, "paged_incidents": paged,
        "signals": signals,
        "incident_precision": true_paged / paged if paged else None,
        "incident_recall": caught / faults if faults else None,
        "paged_recall": paged_sustained / sustained if sustained else None,
        "pages_per_server_day": pages / server_days,
        "signal_precision": true_signals / signals if signals else None,
        "signal_recall": caught_by_signal / faults if faults else None,
        "signals_per_server_day": signals / server_days,
        **{f"{family}_{k}": v for family in FAMILIES for k, v in zip(
            ("signal_precision", "signal_recall", "signals_per_server_day"),
            _rates(*by_family[family], faults, server_days), strict=True)},
    }


def _rates(signals, true_signals, caught, faults, server_days):
    return (true_signals / signals if signals else None,
            caught / faults if faults else None, signals / server_days)


def _run(args: list[str]) -> None:
    done = subprocess.run([sys.executable, "-m", "run", *args, "--no-summary",
                           "--progress", "0"], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"python -m run {' '.join(args)}:\n{done.stderr[-2000:]}")


def _pct(value) -> str:
    return "–" if value is None else f"{value:.0%}"


def _pages_without_faults(workdir: str, hours: int, servers: int = 20) -> dict:
    """The same fleet with no injected fault: every page is a false one."""
    data = os.path.join(workdir, f"quality_quiet_{hours}h.jsonl")
    done = subprocess.run(
        [sys.executable, "-m", "generators", "metrics", "--servers", str(servers), "--interval",
         "10s", "--duration", f"{hours}h", "--anomaly-rate", "0", "--incidents-per-day", "0",
         "--seed", "42", "--no-progress", "-o", data], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    lakehouse = os.path.join(workdir, f"quality_quiet_{hours}h")
    _run(["--input", data, "--output-dir", lakehouse])
    with connect_catalog(lakehouse) as con:
        servers, days = _fleet(con)
        pages = _pages(con)
        signals = con.execute("select count(*) from alert_signals").fetchone()[0]
    return {"pages_per_server_day": pages / max(servers * days, 1e-9),
            "signals_per_server_day": signals / max(servers * days, 1e-9)}


def bench_incident_quality(workdir: str) -> dict:
    """The default sample (6 hours), a 2-day one, and the same fleet with no injected
    faults for 2 days."""
    out, measured = {}, {}
    for name, span in (("sample", "6h"), ("two_days", "48h")):
        lakehouse = os.path.join(workdir, f"quality_{name}")
        _run(["--output-dir", lakehouse, "--sample-duration", span])
        measured[name] = measure(os.path.join(lakehouse, "lakehouse.duckdb"))
        out.update({f"quality_{name}_{k}": v for k, v in measured[name].items()})
    out.update({f"quality_quiet_{k}": v for k, v in _pages_without_faults(workdir, 48).items()})
    mark = lambda ok: "✓" if ok else "✗"  # noqa: E731
    for name, s in measured.items():
        print(f"alert quality, {'default sample' if name == 'sample' else 'a 2-day sample'} "
              f"({s['servers']} servers, {s['days'] * 24:.0f} h, {s['injected_faults']} "
              f"injected faults, {s['sustained_faults']} of them ≥ {SUSTAINED_S} s)",
              flush=True)
        print(f"  {'':<24} {'precision':>9} {'recall':>7} {'paged recall':>13} "
              f"{'per server-day':>15}", flush=True)
        for label, prefix in (("all signals", ""), ("matrix (seed 002)", "matrix_"),
                              ("EWMA (seed 003)", "ewma_"),
                              ("thresholds (000/001)", "threshold_")):
            print(f"  {label:<24} {_pct(s[prefix + 'signal_precision']):>9} "
                  f"{_pct(s[prefix + 'signal_recall']):>7} {'':>13} "
                  f"{s[prefix + 'signals_per_server_day']:>15,.0f}", flush=True)
        print(f"  {'incidents (pages)':<24} {s['incident_precision']:>9.0%} "
              f"{s['incident_recall']:>7.0%} {s['paged_recall']:>13.0%} "
              f"{s['pages_per_server_day']:>15,.1f}", flush=True)
    quiet = out["quality_quiet_pages_per_server_day"]
    print(f"  2 days without injected faults: {quiet:,.2f} pages per server-day "
          f"({out['quality_quiet_signals_per_server_day']:,.0f} signals)", flush=True)
    s, two = measured["sample"], measured["two_days"]
    for label, ok, value, target in (
            ("recall", min(s["incident_recall"], two["incident_recall"]) >= 0.95,
             f"{s['incident_recall']:.0%} / {two['incident_recall']:.0%} (2 days)", "≥ 95 %"),
            ("precision", min(s["incident_precision"], two["incident_precision"]) >= 0.90,
             f"{s['incident_precision']:.0%} / {two['incident_precision']:.0%} (2 days)",
             "≥ 90 %"),
            ("pages per server-day", max(s["pages_per_server_day"],
                                         two["pages_per_server_day"]) <= 20,
             f"{s['pages_per_server_day']:.1f} / {two['pages_per_server_day']:.1f} (2 days)",
             "≤ 20"),
            ("pages per server-day, no faults", quiet <= 1, f"{quiet:.2f}", "≤ 1")):
        out[f"target_quality_{label}"] = {"value": value, "target": target, "met": ok}
        print(f"  {mark(ok)} {label}: {value} (target {target})", flush=True)
    return out
