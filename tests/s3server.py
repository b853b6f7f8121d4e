"""A real S3 server for tests: moto's, as a subprocess on a free port of 127.0.0.1, and fresh buckets in it."""

import os
import socket
import subprocess
import sys
import uuid

import boto3
from conftest import wait_for


class MotoServer:
    """`python -m moto.server` on 127.0.0.1; `stop()` kills and reaps it. `env` configures moto."""

    def __init__(self, log_path, env=None):
        self.port = _free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.log = open(log_path, "w+")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT,
                                     env={**os.environ, **(env or {})})
        wait_for(self._ready, timeout=60, message=f"the moto S3 server on {self.endpoint}")

    def env(self) -> dict[str, str]:
        """What a process needs to reach this server as boto3 does (and never an instance's metadata service)."""
        return {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_EC2_METADATA_DISABLED": "true", "TRIVIALCI_S3_ENDPOINT_URL": self.endpoint}

    def new_bucket(self) -> str:
        name = f"t-{uuid.uuid4().hex[:16]}"
        boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id="testing", aws_secret_access_key="testing",
                     region_name="us-east-1").create_bucket(Bucket=name)
        return name

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self.log.close()

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            self.log.seek(0)
            raise AssertionError(f"the moto S3 server exited with {self.proc.returncode}: {self.log.read()}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
        except OSError:
            return False
        return True


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
