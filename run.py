"""``python -m run``: start a pipeline from a checkout (see README)."""
from beam_pipelines.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
