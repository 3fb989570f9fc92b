"""``python -m run``: start a pipeline from a checkout (see README)."""
import sys

if __name__ == "__main__":
    from beam_pipelines.allocator import prefer_jemalloc

    prefer_jemalloc()  # before anything loads pyarrow
    from beam_pipelines.errors import guard_interrupts

    guard_interrupts()  # a Ctrl-C Python would drop is raised again
    try:
        from beam_pipelines.cli import main
    except KeyboardInterrupt:  # Ctrl-C while Python is still importing
        print("python -m run: interrupted", file=sys.stderr, flush=True)
        # Nothing is written yet. A plain exit would run the interpreter's shutdown over
        # half-imported modules, where a pending interrupt can surface again (seen as
        # death by SIGINT instead of status 130 under load): leave at once.
        import os

        os._exit(130)
    try:
        code = main()
    except BrokenPipeError:  # `python -m run --help | head`
        from beam_pipelines.errors import quiet_broken_pipe

        code = quiet_broken_pipe()
    from beam_pipelines.errors import leave

    leave(code, "python -m run")
