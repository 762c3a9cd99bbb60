"""Local stand-ins for the production services: PostgreSQL, an S3 server, the APS emulator, Airflow.

Used by `make demo`, `make up`, the tests and the benchmarks. Every component runs as a real process on a
free loopback port in its own process group, so stopping it also stops whatever it forked.
"""

from aps_devstack.emulator import EmulatorServer, start_emulator
from aps_devstack.postgres import LocalPostgres, MissingPrerequisite
from aps_devstack.process import ManagedProcess, free_port, wait_for_http
from aps_devstack.s3 import S3Server, start_s3_server

__all__ = [
    "EmulatorServer",
    "LocalPostgres",
    "ManagedProcess",
    "MissingPrerequisite",
    "S3Server",
    "free_port",
    "start_emulator",
    "start_s3_server",
    "wait_for_http",
]
