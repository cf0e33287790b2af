"""A local S3 endpoint, its own process on loopback, for the tests of the lake at `s3a://`.

`S3Proxy` serves the lake: s3proxy (jvm/s3proxy/pom.xml, fetched by `make setup` into
jvm/jars/s3proxy/) on its filesystem backend, one folder per bucket, as its own JVM
(`org.gaul.s3proxy.Main --properties ...`). The project's rule is that moto stands in for AWS
control-plane APIs only, never for the lake: a real S3 implementation holds the tables, so S3A,
delta-rs and boto3 meet the protocol details (ETags, listings, checksums) a real store has.

It picks a free port, waits a bounded time for the endpoint to answer, and raises EndpointError
with the tail of the process's log when it does not; `stop()` terminates, then kills.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.helpers import tail_of_logs

REPO = Path(__file__).resolve().parents[1]
S3PROXY_JARS = REPO / "jvm" / "jars" / "s3proxy"
START_TIMEOUT_S = 60
UPLOAD_THREADS = 8
REGION = "us-east-1"
# Test credentials, known to the local endpoints only. Clients get them as the standard AWS
# environment variables (env()), the chain every client of the lake reads on EMR too.
ACCESS_KEY, SECRET_KEY = "lakehouse-test", "lakehouse-test-secret"

LOGBACK = """\
<configuration>
  <appender name="FILE" class="ch.qos.logback.core.FileAppender">
    <file>{log}</file>
    <encoder><pattern>%d %level %logger{{20}} - %msg%n</pattern></encoder>
  </appender>
  <root level="INFO"><appender-ref ref="FILE"/></root>
  <logger name="org.gaul.shaded.org.eclipse.jetty" level="WARN"/>
</configuration>
"""


class EndpointError(RuntimeError):
    """A local endpoint could not be started; the message says why and shows its log."""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def env() -> dict[str, str]:
    """The AWS environment of a client of the local endpoints (no profile, no instance role)."""
    return {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _answers(url: str) -> bool:
    """True once an HTTP server answers at `url` (any status: s3proxy says 403 to anonymous)."""
    try:
        with urllib.request.urlopen(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False


@dataclass
class _Process:
    home: Path
    name: str
    port: int = 0
    process: subprocess.Popen | None = field(default=None, repr=False)
    _stdout: Any = field(default=None, repr=False)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.home / f"{self.name}.log"

    def log_tail(self, lines: int = 40) -> str:
        return tail_of_logs([self.log_path, self.home / "stdout.log"], f"(no log under {self.home})", lines)

    def _launch(self, command: list[str], ready_url: str) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        self._stdout = open(self.home / "stdout.log", "wb")  # noqa: SIM115 - closed by stop()
        self.process = subprocess.Popen(command, stdout=self._stdout, stderr=subprocess.STDOUT, cwd=self.home)
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EndpointError(
                    f"{self.name} exited with status {self.process.returncode} at start:\n{self.log_tail()}"
                )
            if _answers(ready_url):
                return
            time.sleep(0.2)
        self.stop()
        raise EndpointError(
            f"{self.name} did not answer at {ready_url} within {START_TIMEOUT_S} s:\n{self.log_tail()}"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        if self._stdout is not None:
            self._stdout.close()
            self._stdout = None


class S3Proxy(_Process):
    """s3proxy on 127.0.0.1, buckets as folders under `home/data`."""

    def __init__(self, home: Path):
        super().__init__(home, "s3proxy")
        self._client: Any = None

    def start(self) -> S3Proxy:
        java = shutil.which("java")
        if java is None:
            raise EndpointError("no `java` on PATH: s3proxy needs Java 17 (make setup installs it)")
        if not any(S3PROXY_JARS.glob("s3proxy-*.jar")):
            raise EndpointError(
                f"s3proxy's jars are missing from {S3PROXY_JARS}: run `make setup` "
                "(mvn ... dependency:copy-dependencies, module jvm/s3proxy)"
            )
        self.port = free_port()
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        properties = {
            "s3proxy.endpoint": self.endpoint,
            "s3proxy.authorization": "aws-v2-or-v4",
            "s3proxy.identity": ACCESS_KEY,
            "s3proxy.credential": SECRET_KEY,
            "jclouds.provider": "filesystem",
            "jclouds.identity": ACCESS_KEY,
            "jclouds.credential": SECRET_KEY,
            "jclouds.filesystem.basedir": str(data),
        }
        config = self.home / "s3proxy.properties"
        config.write_text("".join(f"{k}={v}\n" for k, v in properties.items()))
        (self.home / "logback.xml").write_text(LOGBACK.format(log=self.log_path))
        self._launch(
            [
                java,
                "-Xmx512m",
                "-XX:+UseSerialGC",
                "-XX:TieredStopAtLevel=1",  # a test endpoint: fast start over peak speed
                f"-Dlogback.configurationFile={self.home / 'logback.xml'}",
                "-cp",
                f"{S3PROXY_JARS}/*",
                "org.gaul.s3proxy.Main",
                "--properties",
                str(config),
            ],
            self.endpoint + "/",
        )
        return self

    def client(self):
        """One boto3 client for the session (thread-safe): a test polling a run's state would
        otherwise build a client per look, CPU taken from the run it watches."""
        if self._client is not None:
            return self._client
        import boto3
        from botocore.config import Config

        self._client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
            region_name=REGION,
            config=Config(s3={"addressing_style": "path"}),
        )
        return self._client

    def storage_options(self) -> dict[str, str]:
        """The settings' `lake.storage_options` for a lake on this endpoint."""
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": REGION, "AWS_ALLOW_HTTP": "true"}

    def create_bucket(self, bucket: str) -> None:
        self.client().create_bucket(Bucket=bucket)

    def upload_tree(self, folder: Path, bucket: str, prefix: str) -> int:
        """Put every file below `folder` under `prefix/`; the number of files. Several puts at
        once (one client: boto3's clients are thread-safe): a landing zone is hundreds of files."""
        client = self.client()
        paths = sorted(p for p in Path(folder).rglob("*") if p.is_file())

        def put(path: Path) -> None:
            client.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")

        with ThreadPoolExecutor(UPLOAD_THREADS) as pool:
            list(pool.map(put, paths))  # list(): raises the first failed put
        return len(paths)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, tuple[int, str]]:
        """key -> (size, ETag) of every object under `prefix`."""
        paginator = self.client().get_paginator("list_objects_v2")
        return {
            o["Key"]: (o["Size"], o["ETag"])
            for page in paginator.paginate(Bucket=bucket, Prefix=prefix)
            for o in page.get("Contents", [])
        }

    def configure_spark(self, spark, bucket: str) -> None:
        """Let a running SparkSession reach `bucket` here through S3A: per-bucket keys
        (fs.s3a.bucket.<bucket>.*), so other buckets and tests are unaffected. Processes built from
        configuration get the same from `lake.storage_options` (pipeline.spark.s3a_conf)."""
        conf = spark.sparkContext._jsc.hadoopConfiguration()
        for key, value in {
            "endpoint": self.endpoint,
            "path.style.access": "true",
            "connection.ssl.enabled": "false",
            "endpoint.region": REGION,
            "access.key": ACCESS_KEY,
            "secret.key": SECRET_KEY,
        }.items():
            conf.set(f"fs.s3a.bucket.{bucket}.{key}", value)
