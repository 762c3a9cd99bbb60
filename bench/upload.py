"""Benchmark: stream an object from S3 through aps_client's multipart upload to the APS emulator.

    .venv/bin/python bench/upload.py [--size-mib 1024] [--part-mib 5] [--parallelism 4]

Starts a local S3 server (moto) and the APS emulator, writes a generated object of --size-mib MiB to S3 (by
multipart upload, never held in memory), then runs two phases, each in its own child process so its peak
RSS is its own:

  client    aps_client.APSClient.oss.upload() reading the S3 streaming body (default settings)
  baseline  the same bytes read from S3 and PUT part by part to the emulator's signed URLs with bare
            httpx, one part in flight: the least work an upload can do, without our client

and prints throughput (MB/s, 10^6 bytes) and each phase's peak RSS (MiB).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from pydantic import SecretStr

MIB = 1024 * 1024
S3_BUCKET = "bench-landing"
S3_KEY = "generated/large.bin"
APS_BUCKET = "bench-uploads"
RSS_GOAL_MIB = 200


def s3_client(endpoint: str) -> Any:
    from aps_devstack.s3 import S3Server

    return S3Server(endpoint_url=endpoint).client()


def generate_object(endpoint: str, size: int) -> None:
    """Multipart-upload `size` pseudo-random bytes: one random 16 MiB block, rotated per part."""
    s3 = s3_client(endpoint)
    s3.create_bucket(Bucket=S3_BUCKET)
    chunk = 16 * MIB
    block = os.urandom(chunk)
    upload_id = s3.create_multipart_upload(Bucket=S3_BUCKET, Key=S3_KEY)["UploadId"]
    parts = []
    for number, offset in enumerate(range(0, size, chunk), start=1):
        shift = (number * 7919) % chunk
        data = (block[shift:] + block[:shift])[: min(chunk, size - offset)]
        etag = s3.upload_part(Bucket=S3_BUCKET, Key=S3_KEY, PartNumber=number, UploadId=upload_id, Body=data)[
            "ETag"
        ]
        parts.append({"PartNumber": number, "ETag": etag})
    s3.complete_multipart_upload(
        Bucket=S3_BUCKET, Key=S3_KEY, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )


def peak_rss_mib() -> float:
    """This process's peak RSS. On Linux read VmHWM: ru_maxrss would also count the parent's RSS at the
    moment of fork/exec (the kernel carries it over), which is the bench driver's, not the uploader's."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def phase_client(args: argparse.Namespace) -> dict[str, Any]:
    from aps_client import APSClient, APSConfig

    body = s3_client(args.s3).get_object(Bucket=S3_BUCKET, Key=S3_KEY)
    size = body["ContentLength"]
    overrides: dict[str, Any] = {}
    if args.part_mib:
        overrides["upload_part_size"] = args.part_mib * MIB
    if args.parallelism:
        overrides["upload_parallelism"] = args.parallelism
    config = APSConfig(
        client_id=args.client_id, client_secret=SecretStr(args.client_secret), base_url=args.aps, **overrides
    )
    started = time.perf_counter()
    with APSClient(config) as aps:
        aps.oss.ensure_bucket(APS_BUCKET)
        details = aps.oss.upload(APS_BUCKET, "client.bin", body["Body"], size)
    elapsed = time.perf_counter() - started
    assert details.size == size, (details.size, size)
    return {
        "bytes": size,
        "seconds": elapsed,
        "peak_rss_mib": peak_rss_mib(),
        "part_mib": config.upload_part_size / MIB,
        "parallelism": config.upload_parallelism,
    }


def phase_baseline(args: argparse.Namespace) -> dict[str, Any]:
    """Bare httpx: token, ask for signed URLs 25 at a time, PUT each 5 MiB part as read, complete."""
    body = s3_client(args.s3).get_object(Bucket=S3_BUCKET, Key=S3_KEY)
    size, stream = body["ContentLength"], body["Body"]
    part = 5 * MIB
    parts = max(1, -(-size // part))
    started = time.perf_counter()
    with httpx.Client(base_url=args.aps, timeout=60) as http:
        token = http.post(
            "/authentication/v2/token",
            auth=(args.client_id, args.client_secret),
            data={"grant_type": "client_credentials", "scope": "data:write data:create bucket:create"},
        ).json()["access_token"]
        bearer = {"Authorization": f"Bearer {token}"}
        http.post("/oss/v2/buckets", headers=bearer, json={"bucketKey": APS_BUCKET, "policyKey": "transient"})
        path = f"/oss/v2/buckets/{APS_BUCKET}/objects/baseline.bin/signeds3upload"
        upload_key = None
        for first in range(1, parts + 1, 25):
            params: dict[str, Any] = {"parts": min(25, parts - first + 1), "firstPart": first}
            if upload_key:
                params["uploadKey"] = upload_key
            signed = http.get(path, headers=bearer, params=params).raise_for_status().json()
            upload_key = signed["uploadKey"]
            for url in signed["urls"]:
                http.put(url, content=stream.read(part)).raise_for_status()
        done = http.post(path, headers=bearer, json={"uploadKey": upload_key}).raise_for_status().json()
    elapsed = time.perf_counter() - started
    assert done.get("size") in (None, size), done
    return {
        "bytes": size,
        "seconds": elapsed,
        "peak_rss_mib": peak_rss_mib(),
        "part_mib": 5,
        "parallelism": 1,
    }


def run_phase(name: str, args: argparse.Namespace) -> dict[str, Any]:
    argv = [
        sys.executable,
        __file__,
        "--phase",
        name,
        "--s3",
        args.s3,
        "--aps",
        args.aps,
        "--client-id",
        args.client_id,
        "--part-mib",
        str(args.part_mib or 0),
        "--parallelism",
        str(args.parallelism or 0),
    ]
    # The secret goes through the environment, not argv (argv is visible in `ps`).
    env = {**os.environ, "BENCH_APS_CLIENT_SECRET": args.client_secret}
    out = subprocess.run(argv, env=env, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--part-mib", type=int, default=0, help="client part size (0 = client default)")
    parser.add_argument(
        "--parallelism", type=int, default=0, help="client parallel parts (0 = client default)"
    )
    parser.add_argument("--phase", choices=["client", "baseline"], help=argparse.SUPPRESS)
    parser.add_argument("--s3", help=argparse.SUPPRESS)
    parser.add_argument("--aps", help=argparse.SUPPRESS)
    parser.add_argument("--client-id", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.phase:
        args.client_secret = os.environ["BENCH_APS_CLIENT_SECRET"]
        result = phase_client(args) if args.phase == "client" else phase_baseline(args)
        print(json.dumps(result))
        return 0

    from aps_devstack import start_emulator, start_s3_server

    with tempfile.TemporaryDirectory(prefix="bench-upload-") as tmp:
        s3 = start_s3_server(Path(tmp))
        emulator = start_emulator(Path(tmp))
        try:
            args.s3, args.aps = s3.endpoint_url, emulator.base_url
            args.client_id, args.client_secret = emulator.client_id, emulator.client_secret
            size = args.size_mib * MIB
            print(f"generating {args.size_mib} MiB in s3://{S3_BUCKET}/{S3_KEY} ...", flush=True)
            generate_object(args.s3, size)
            results = {name: run_phase(name, args) for name in ("client", "baseline")}
        finally:
            emulator.stop()
            s3.stop()

    print(f"\nupload of {args.size_mib} MiB from S3 to the APS emulator")
    print(f"{'phase':<10}{'MB/s':>9}{'seconds':>10}{'peak RSS MiB':>15}  settings")
    for name, r in results.items():
        rate = r["bytes"] / r["seconds"] / 1e6
        settings = f"part {r['part_mib']:g} MiB, parallelism {r['parallelism']}"
        print(f"{name:<10}{rate:>9.1f}{r['seconds']:>10.1f}{r['peak_rss_mib']:>15.1f}  {settings}")
    client_rss = results["client"]["peak_rss_mib"]
    verdict = "OK" if client_rss < RSS_GOAL_MIB else "OVER"
    print(f"client peak RSS goal < {RSS_GOAL_MIB} MiB: {verdict}")
    return 0 if client_rss < RSS_GOAL_MIB else 1


if __name__ == "__main__":
    sys.exit(main())
