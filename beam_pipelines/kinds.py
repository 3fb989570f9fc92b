"""The registry of pipeline kinds: what ``python -m run KIND``, the flex template and its
``metadata.json`` dispatch on.

A kind names its options class, its launch (a :class:`beam_pipelines.runs.Launch`: what
the one launch path runs, batch or streaming, and what a replay appends with) and the
summary that renders a finished run; each is given as ``"module:attribute"`` and imported
only when used, so ``--help`` and the template's metadata do not import Beam's runners. A
third record kind is its package under ``transforms/``, its module with a ``Launch``, and
one ``register`` here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class PipelineKind:
    name: str          # the word on the command line and the template's ``pipeline``
    noun: str          # what it reads, in a few words
    description: str   # one line for the usage text
    options_ref: str   # "module:PipelineOptions subclass"
    launch_ref: str    # "module:LAUNCH", a beam_pipelines.runs.Launch
    summary_ref: str   # "module:render" → render(catalog, output_dir, **summary_args)

    @staticmethod
    def _load(ref: str):
        module, _, attribute = ref.partition(":")
        return getattr(importlib.import_module(module), attribute)

    @property
    def options(self):
        return self._load(self.options_ref)

    @property
    def launch(self):
        return self._load(self.launch_ref)

    def run(self, options) -> dict:
        """``python -m run KIND``: batch, or streaming with ``--streaming``."""
        from beam_pipelines import runs

        return runs.launch(options, self.launch)

    def summary(self, catalog: str, output_dir: str, **kwargs) -> str:
        return self._load(self.summary_ref)(catalog, output_dir, **kwargs)


KINDS: dict[str, PipelineKind] = {}
#: What ``python -m run`` runs when no kind is named.
DEFAULT = "metrics"


def register(kind: PipelineKind) -> PipelineKind:
    if kind.name in KINDS:
        raise ValueError(f"pipeline kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


register(PipelineKind(
    "metrics", "server metrics",
    "server metrics: bronze → silver → gold into the local lakehouse",
    "beam_pipelines.options:ServerMetricsOptions", "beam_pipelines.server_metrics:LAUNCH",
    "beam_pipelines.summary:render"))
register(PipelineKind(
    "logs", "web access logs",
    "web access logs: parse, geolocate, anonymise, aggregate",
    "beam_pipelines.options:WebLogsOptions", "beam_pipelines.web_logs:LAUNCH",
    "beam_pipelines.summary:render_logs"))
