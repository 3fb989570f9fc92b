"""Runnable pipelines: options, sources and sinks (the edges), and the command line."""
