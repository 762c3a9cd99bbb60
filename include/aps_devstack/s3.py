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

    def sqs_client(self) -> Any:
        return self._aws_client("sqs")

    def secrets_client(self) -> Any:
        return self._aws_client("secretsmanager")

    def _aws_client(self, service: str) -> Any:
        from aps_landing.s3 import make_aws_client

        return make_aws_client(service, endpoint_url=self.endpoint_url, access_key=S3_ACCESS_KEY,
                               secret_key=S3_SECRET_KEY, region=S3_REGION)

    def put_secret(self, name: str, value: str) -> None:
        """Create the secret `name` on this server's Secrets Manager, or give it a new value."""
        client = self.secrets_client()
        try:
            client.create_secret(Name=name, SecretString=value)
        except client.exceptions.ResourceExistsException:
            client.put_secret_value(SecretId=name, SecretString=value)

    def secrets_backend_env(self, connections_prefix: str) -> dict[str, str]:
        """Airflow settings that read connections from this server's Secrets Manager (and nothing else)."""
        import json

        kwargs = {"connections_prefix": connections_prefix, "variables_prefix": None, "config_prefix": None,
                  "endpoint_url": self.endpoint_url, "region_name": S3_REGION}
        return {
            "AIRFLOW__SECRETS__BACKEND":
                "airflow.providers.amazon.aws.secrets.secrets_manager.SecretsManagerBackend",
            "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps(kwargs),
            # The backend's own AWS credentials (an instance role in production; moto takes any).
            "AWS_ACCESS_KEY_ID": S3_ACCESS_KEY,
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
        }

    def make_notified_queue(self, bucket: str, queue: str) -> str:
        """An SQS queue on this server that gets `bucket`'s s3:ObjectCreated:* and s3:ObjectRemoved:*
        notifications; its URL.

        moto's server delivers a bucket's notifications to its own SQS queues, as S3 does to a real queue
        once the bucket notification (the user's infrastructure in production) is configured.
        """
        sqs = self.sqs_client()
        url = sqs.create_queue(QueueName=queue)["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        self.client().put_bucket_notification_configuration(
            Bucket=bucket,
            NotificationConfiguration={
                "QueueConfigurations": [
                    {"QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"]}]
            },
        )
        self.drain_queue(url)  # the s3:TestEvent of a new configuration
        return url

    def drain_queue(self, url: str) -> int:
        """Receive and delete every message waiting in the queue; how many. (PurgeQueue would do, but SQS
        allows one purge per queue per 60 s.)"""
        sqs = self.sqs_client()
        drained = 0
        while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10,
                                              WaitTimeSeconds=0).get("Messages", []):
            sqs.delete_message_batch(QueueUrl=url, Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(messages)])
            drained += len(messages)
        return drained

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
