"""Which runner runs a pipeline. Nothing of any runner's internals is imported here, so a
job submitted to Dataflow never loads the local runners' (see ``local_runner.install``)."""
from __future__ import annotations

from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions

from beam_pipelines.errors import UserError

#: The local streaming runner, which ``local_runner.install`` fits for live sources.
LOCAL_STREAMING = "BundleBasedDirectRunner"


def choose_runner(options: PipelineOptions, streaming: bool = False) -> str:
    """Name the local runner explicitly (FnApiRunner for batch, BundleBasedDirectRunner for
    streaming): the DirectRunner would first try to download the Prism runner, which fails
    offline, before falling back."""
    std = options.view_as(StandardOptions)
    requested = std.runner
    if requested is None or requested.lower() in ("directrunner", "direct"):
        std.runner = LOCAL_STREAMING if streaming else "FnApiRunner"
    elif "." not in requested and requested.lower().removesuffix("runner") not in {
            n.lower().removesuffix("runner") for n in StandardOptions.KNOWN_RUNNER_NAMES}:
        raise UserError(f"unknown runner {requested!r} (one of "
                        f"{', '.join(StandardOptions.KNOWN_RUNNER_NAMES)})")
    elif requested.split(".")[-1].lower() == "portablerunner":
        from apache_beam.options.pipeline_options import PortableOptions

        portable = options.view_as(PortableOptions)
        if portable.job_endpoint == "embed" and not portable.environment_type:
            # The embedded job server runs here: so does the SDK harness (Docker is the
            # default environment, and is not needed to run in this process).
            portable.environment_type = "LOOPBACK"
    return std.runner


def is_local_streaming(runner: str) -> bool:
    return runner.split(".")[-1] == LOCAL_STREAMING
