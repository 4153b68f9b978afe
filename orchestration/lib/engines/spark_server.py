"""A local Spark Connect server for one warehouse directory (docs/spark.md, "How a local run works").

One JVM per run serves every client: the dbt subprocesses (dbt-spark's `session` method connects to it through
SPARK_REMOTE) and this process's asset checks and Python steps (orchestration.lib.engines.spark_engine). That
sidesteps the embedded Derby metastore's one-JVM rule and the JVM start-up (8-15 s) of every dbt call. The server
binds 127.0.0.1 only, keeps its Hive metastore (Derby) and managed tables under the warehouse directory, and is
stopped with the run. One server per directory at a time (a lock file): Derby allows one JVM.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

REMOTE_ENV = "SPARK_REMOTE"
DRIVER_MEMORY_ENV = "IMPACT_SPARK_DRIVER_MEMORY"
CORES_ENV = "IMPACT_SPARK_CORES"
SHUFFLE_PARTITIONS_ENV = "IMPACT_SPARK_SHUFFLE_PARTITIONS"
# more settings for the local server, "key=value,key=value" (e.g. spark.sql.codegen.wholeStage=false)
EXTRA_CONF_ENV = "IMPACT_SPARK_CONF"
# more JVM options for the local server (e.g. -XX:TieredStopAtLevel=1: no C2 compiles, for short runs such as tests)
JAVA_OPTIONS_ENV = "IMPACT_SPARK_JAVA_OPTIONS"
START_TIMEOUT_S = 180.0

# settings every session of the server gets (dbt's session and ours set the session-level ones again)
SESSION_CONF: dict[str, str] = {
    "spark.sql.session.timeZone": "UTC",
    # dbt-spark's convention, and DuckDB's: a division by zero is NULL, not an error (the models guard their
    # divisions with nullif; the asset checks are strict on their own)
    "spark.sql.ansi.enabled": "false",
    # Parquet timestamps written without a time zone are UTC instants, like DuckDB's timestamps
    "spark.sql.parquet.inferTimestampNTZ.enabled": "false",
    "spark.sql.legacy.createHiveTableByDefault": "false",
}


class SparkServerError(RuntimeError):
    """The local Spark server could not start (Java missing, port, metastore in use)."""


def spark_home() -> Path:
    import pyspark

    return Path(pyspark.__file__).resolve().parent


def java_available() -> bool:
    return bool(os.environ.get("JAVA_HOME") or shutil.which("java"))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def server_conf(directory: Path, port: int) -> dict[str, str]:
    """The server's Spark configuration: local mode, metastore and tables under ``directory``, quiet console."""
    directory = directory.resolve()
    return {
        **SESSION_CONF,
        "spark.master": f"local[{os.environ.get(CORES_ENV) or '*'}]",
        "spark.driver.memory": os.environ.get(DRIVER_MEMORY_ENV) or "2g",
        "spark.ui.enabled": "false",
        "spark.ui.showConsoleProgress": "false",
        # the default 200 shuffle partitions make every small stage 200 tasks
        "spark.sql.shuffle.partitions": os.environ.get(SHUFFLE_PARTITIONS_ENV) or "4",
        "spark.sql.catalogImplementation": "hive",
        "spark.sql.warehouse.dir": str(directory / "spark-warehouse"),
        "spark.hadoop.javax.jdo.option.ConnectionURL": (
            f"jdbc:derby:;databaseName={directory / 'metastore_db'};create=true"
        ),
        "spark.driver.extraJavaOptions": f"-Dderby.system.home={directory} {os.environ.get(JAVA_OPTIONS_ENV, '')}".strip(),
        "spark.connect.grpc.binding.address": "127.0.0.1",
        "spark.connect.grpc.binding.port": str(port),
        **extra_conf(),
    }


def extra_conf() -> dict[str, str]:
    """IMPACT_SPARK_CONF as a dict."""
    out = {}
    for item in (os.environ.get(EXTRA_CONF_ENV) or "").split(","):
        if item.strip():
            key, sep, value = item.partition("=")
            if not sep:
                raise SparkServerError(f"{EXTRA_CONF_ENV}: expected key=value, not {item!r}")
            out[key.strip()] = value.strip()
    return out


class LocalSparkServer:
    """``with LocalSparkServer(directory) as url:`` a Spark Connect server on 127.0.0.1 for the directory's
    warehouse; ``url`` is its sc:// address (also exported as SPARK_REMOTE while it runs)."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory).expanduser().resolve()
        self.process: subprocess.Popen | None = None
        self.url: str | None = None
        self._lock = None
        self._previous_remote: str | None = None

    @property
    def log_path(self) -> Path:
        return self.directory / "spark-server.log"

    def start(self) -> str:
        if not java_available():
            raise SparkServerError(
                "Spark needs Java 17 or later: install it (Debian: apt-get install openjdk-17-jre-headless) or set "
                "JAVA_HOME"
            )
        self.directory.mkdir(parents=True, exist_ok=True)
        self._lock = open(self.directory / "spark-server.lock", "w")  # noqa: SIM115 - held while the server runs
        try:
            fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock.close()
            self._lock = None
            raise SparkServerError(
                f"{self.directory}: another Spark server uses this warehouse (its Derby metastore allows one)"
            ) from None
        port = _free_port()
        command = [str(spark_home() / "bin" / "spark-submit")]
        for key, value in server_conf(self.directory, port).items():
            command += ["--conf", f"{key}={value}"]
        command += ["--class", "org.apache.spark.sql.connect.service.SparkConnectServer", "spark-internal"]
        env = {**os.environ, "SPARK_HOME": str(spark_home())}
        env.pop(REMOTE_ENV, None)
        with open(self.log_path, "a") as log:
            self.process = subprocess.Popen(
                command, cwd=self.directory, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._release()
                raise SparkServerError(f"the Spark server exited (code {self.process.returncode}): see {self.log_path}")
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.25)
        else:
            self.stop()
            raise SparkServerError(f"the Spark server did not listen within {START_TIMEOUT_S:.0f} s: see {self.log_path}")
        self.url = f"sc://127.0.0.1:{port}"
        self._previous_remote = os.environ.get(REMOTE_ENV)
        os.environ[REMOTE_ENV] = self.url
        return self.url

    def stop(self) -> None:
        from orchestration.lib.engines import spark_engine

        spark_engine.close_sessions()
        if self.process is not None and self.process.poll() is None:
            try:
                os.killpg(self.process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.process = None
        if self.url is not None and os.environ.get(REMOTE_ENV) == self.url:
            if self._previous_remote is None:
                os.environ.pop(REMOTE_ENV, None)
            else:
                os.environ[REMOTE_ENV] = self._previous_remote
        self.url = None
        self._release()

    def _release(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    def __enter__(self) -> str:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
