"""A local BigQuery emulator in place of BigQuery, when ``BIGQUERY_EMULATOR_HOST`` is set.

The google-cloud-bigquery client honours ``BIGQUERY_EMULATOR_HOST`` by itself. Beam's
BigQuery IO has no endpoint option: its apitools client has a class-level ``BASE_URL``,
which is pointed at the emulator here, and it asks ``google.auth.default`` for
credentials, which answers with anonymous ones. Both only hold in this process, so the
emulator serves pipelines on the local runners (the DirectRunner runs them in-process),
never a Dataflow job.
"""
from __future__ import annotations

import os

ENV = "BIGQUERY_EMULATOR_HOST"


def emulator_url() -> str | None:
    url = os.environ.get(ENV, "").strip().rstrip("/")
    if not url:
        return None
    return url if "://" in url else f"http://{url}"


def use_emulator(project: str | None = None) -> str | None:
    """Point this process's BigQuery clients at the emulator if one is configured; returns
    its URL (None: the real BigQuery). ``project``: the emulator's project, for clients
    that are not told theirs (Beam's)."""
    url = emulator_url()
    if url is None:
        return None
    os.environ[ENV] = url
    if project:
        os.environ["GOOGLE_CLOUD_PROJECT"] = project
    os.environ.setdefault("NO_GCE_CHECK", "true")  # no metadata-server probe on start
    import google.auth
    from apache_beam.io.gcp.internal.clients.bigquery import bigquery_v2_client
    from google.auth.credentials import AnonymousCredentials

    bigquery_v2_client.BigqueryV2.BASE_URL = f"{url}/bigquery/v2/"
    if not getattr(google.auth.default, "_emulator", False):
        real_default = google.auth.default

        def default(*args, **kwargs):
            if emulator_url():
                return AnonymousCredentials(), os.environ.get("GOOGLE_CLOUD_PROJECT")
            return real_default(*args, **kwargs)

        default._emulator = True
        google.auth.default = default
    return url


def client(project: str):
    """A google-cloud-bigquery client for the project (the emulator's when configured)."""
    from google.cloud import bigquery

    url = use_emulator(project)
    if url:
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials

        return bigquery.Client(project=project, credentials=AnonymousCredentials(),
                               client_options=ClientOptions(api_endpoint=url))
    return bigquery.Client(project=project)


def require_credentials() -> None:
    """Fail fast: without credentials Beam's BigQuery IO retries, then waits for a browser
    login."""
    if emulator_url():
        return
    import google.auth
    from google.auth.exceptions import DefaultCredentialsError

    from beam_pipelines.errors import UserError

    try:
        google.auth.default()
    except DefaultCredentialsError:
        raise UserError("no Google Cloud credentials for BigQuery: run `gcloud auth "
                        "application-default login`, or set BIGQUERY_EMULATOR_HOST for a "
                        "local emulator") from None
