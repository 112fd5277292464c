"""Apache Kafka 4.1 (KRaft, one combined broker and controller) from Maven Central's jars."""

from __future__ import annotations

import shutil
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaAdminClient
from kafka.errors import KafkaError

from modelyard.adapters.services.process import (
    ServiceError,
    apt_install,
    read_pid,
    run,
    terminate,
    wait_until,
)

KAFKA_VERSION = "4.1.1"
DEFAULT_PORT = 59092
# The broker ships no logging backend; slf4j-simple writes its log to stderr (our log file).
_POM = f"""<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.modelyard</groupId><artifactId>kafka-runtime</artifactId><version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency><groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version></dependency>
    <dependency><groupId>org.slf4j</groupId><artifactId>slf4j-simple</artifactId>
      <version>1.7.36</version></dependency>
  </dependencies>
</project>
"""
_CLUSTER_ID = "modelyard-local-kraft1"


@dataclass(frozen=True)
class LocalKafka:
    """One KRaft node under ``root`` on 127.0.0.1:``port`` (controller on ``port`` + 1)."""

    root: Path
    port: int = DEFAULT_PORT

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def libs(self) -> Path:
        return self.root / "libs"

    def env(self) -> dict[str, str]:
        """The variables the product's settings read to use this broker."""
        return {"MODELYARD_KAFKA_BOOTSTRAP": self.bootstrap}

    def up(self) -> None:
        """Fetch the jars, format the log directory and start the broker, as needed."""
        if self.is_ready():
            return
        self._install()
        properties = self._write_properties()
        java = _require("java", "default-jre-headless")
        classpath = f"{self.libs}/*"
        if not (self.root / "data" / "meta.properties").exists():
            run(
                [
                    java,
                    "-cp",
                    classpath,
                    "kafka.tools.StorageTool",
                    "format",
                    "-t",
                    _CLUSTER_ID,
                    "-c",
                    str(properties),
                ]
            )
        if read_pid(self._pid_file) is None:
            log = (self.root / "server.log").open("ab")
            proc = subprocess.Popen(
                [
                    java,
                    "-Xms512m",
                    "-Xmx512m",
                    "-XX:+UseSerialGC",
                    "-cp",
                    classpath,
                    "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
                    "kafka.Kafka",
                    str(properties),
                ],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
            self._pid_file.write_text(str(proc.pid))
        wait_until(self.is_ready, timeout=120, what="Kafka")

    def down(self) -> None:
        """Stop the broker if it runs; its log directory stays for the next ``up``."""
        pid = read_pid(self._pid_file)
        if pid is not None:
            terminate(pid)
        self._pid_file.unlink(missing_ok=True)

    def is_ready(self) -> bool:
        """Whether the broker answers a metadata request."""
        # kafka-python's admin client keeps retrying a closed port for 30 s before it gives
        # up; a refused connection already says the broker is down.
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=2).close()
        except OSError:
            return False
        try:
            admin = KafkaAdminClient(bootstrap_servers=self.bootstrap, request_timeout_ms=3000)
        except KafkaError:
            return False
        try:
            admin.list_topics()
        except KafkaError:
            return False
        finally:
            admin.close()
        return True

    @property
    def _pid_file(self) -> Path:
        return self.root / "kafka.pid"

    def _install(self) -> None:
        marker = self.libs / f".complete-{KAFKA_VERSION}"
        if marker.exists():
            return
        mvn = _require("mvn", "maven")
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "pom.xml").write_text(_POM)
        run(
            [
                mvn,
                "-q",
                "-B",
                "-f",
                str(self.root / "pom.xml"),
                # Maven 3.8's default dependency plugin predates what Kafka's POM needs.
                "org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy-dependencies",
                "-DincludeScope=runtime",
                f"-DoutputDirectory={self.libs}",
            ]
        )
        marker.touch()

    def _write_properties(self) -> Path:
        controller = self.port + 1
        one = "1"
        lines = {
            "process.roles": "broker,controller",
            "node.id": one,
            "controller.quorum.voters": f"1@127.0.0.1:{controller}",
            "listeners": f"PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            "advertised.listeners": f"PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
            "log.dirs": str(self.root / "data"),
            "num.partitions": "4",
            "log.retention.ms": "-1",
            "offsets.topic.replication.factor": one,
            "offsets.topic.num.partitions": "4",
            "transaction.state.log.replication.factor": one,
            "transaction.state.log.min.isr": one,
            "share.coordinator.state.topic.replication.factor": one,
            "share.coordinator.state.topic.min.isr": one,
            # One node: a group need not wait for more members before its first assignment.
            "group.initial.rebalance.delay.ms": "0",
        }
        path = self.root / "server.properties"
        path.write_text("".join(f"{k}={v}\n" for k, v in lines.items()))
        return path


def _require(tool: str, package: str) -> str:
    found = shutil.which(tool)
    if found is None:
        apt_install(package)
        found = shutil.which(tool)
    if found is None:
        raise ServiceError(f"{tool} not found even after installing {package}")
    return found
