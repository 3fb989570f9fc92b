"""The local services the tests, the benchmarks and the demos start: what happens when
the port chosen for one is taken before it binds it."""
from __future__ import annotations

import socket
import time

import pytest

from beam_pipelines.ops import local_services
from tests.services import require


@pytest.mark.parametrize("service", ["PubSubEmulator", "BigQueryEmulator", "PostgresServer",
                                     "KafkaBroker"])
def test_a_service_whose_port_is_taken_starts_on_another_or_says_so(monkeypatch, service):
    """A free port is only free when it is chosen: another process may bind it before the
    service does (the Pub/Sub emulator and the Kafka broker then hang on rather than exit,
    and the held port accepts connections). A port the caller chose fails at once; a port
    picked for the service is replaced."""
    if service == "PubSubEmulator":
        require("gcloud", "the Pub/Sub emulator")
    cls = getattr(local_services, service)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        busy = taken.getsockname()[1]
        started = time.monotonic()
        with pytest.raises(local_services.PortTaken):
            cls(port=busy).start()
        assert time.monotonic() - started < 45  # not its whole start-up limit
        ports = iter([busy])
        free_port = local_services.free_port
        monkeypatch.setattr(local_services, "free_port", lambda: next(ports, None) or free_port())
        service = cls().start()
        try:
            address = {"PubSubEmulator": "host", "BigQueryEmulator": "url",
                       "PostgresServer": "dsn", "KafkaBroker": "bootstrap"}[type(service).__name__]
            assert service.port != busy and str(service.port) in getattr(service, address)
            assert service.process.poll() is None and service._ready()
        finally:
            service.stop()
