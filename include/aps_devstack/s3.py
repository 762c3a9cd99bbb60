"""An S3-compatible server on loopback: moto in server mode."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aps_devstack.process import ManagedProcess, free_port, wait_for_http

# moto accepts any credentials; these are placeholders, not secrets.
S3_ACCESS_KEY = "devstack"
S3_SECRET_KEY = "devstack-secret"
S3_REGION = "us-east-1"


@dataclass
class S3Server:
    endpoint_url: str
    process: ManagedProcess | None = None

    def client(self) -> Any:
        from aps_landing.s3 import make_s3_client

        return make_s3_client(
            endpoint_url=self.endpoint_url,
            access_key=S3_ACCESS_KEY,
            secret_key=S3_SECRET_KEY,
            region=S3_REGION,
        )

    def make_bucket(self, name: str) -> None:
        client = self.client()
        existing = {b["Name"] for b in client.list_buckets().get("Buckets", [])}
        if name not in existing:
            client.create_bucket(Bucket=name)

    def airflow_conn_uri(self) -> str:
        """An Airflow `aws` connection (JSON form) pointing at this server."""
        import json

        return json.dumps(
            {
                "conn_type": "aws",
                "login": S3_ACCESS_KEY,
                "password": S3_SECRET_KEY,
                "extra": {"endpoint_url": self.endpoint_url, "region_name": S3_REGION},
            }
        )

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()


def start_s3_server(log_dir: Path, port: int | None = None) -> S3Server:
    port = port or free_port()
    process = ManagedProcess(
        "s3-server",
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        log_dir / "s3-server.log",
    )
    endpoint = f"http://127.0.0.1:{port}"
    wait_for_http(f"{endpoint}/moto-api/", timeout=60, process=process)
    return S3Server(endpoint_url=endpoint, process=process)
