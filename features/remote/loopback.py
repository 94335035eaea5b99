"""An S3-compatible server on 127.0.0.1 for tests and benchmarks: moto's server mode, in a
process of its own, started and stopped by the caller (``vidcache[dev]`` installs moto).

With ``auth=True`` the server checks signatures and IAM policies like S3 does: a user
allowed everything but what ``deny`` names is made, and its keys are returned, so wrong
keys and denied objects fail as they would on AWS. Nothing here reaches another host.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["S3Server", "s3_server"]


@dataclass(frozen=True)
class S3Server:
    """A running server: its endpoint and the environment a client needs."""

    endpoint: str
    key: str
    secret: str

    def environment(self) -> dict[str, str]:
        """What boto3/s3fs read: the endpoint, the keys, a region."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_ACCESS_KEY_ID": self.key,
            "AWS_SECRET_ACCESS_KEY": self.secret,
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def s3_server(
    auth: bool = False, deny: tuple[str, ...] = (), timeout: float = 30.0
) -> Iterator[S3Server]:
    """Start moto's S3 server on a free port of 127.0.0.1; stop it on exit.

    Args:
        auth: check credentials and policies (a user is made; its keys are given).
        deny: S3 resources (``arn:aws:s3:::bucket/key``) the user may not ``GetObject``.
        timeout: seconds to wait for the server to answer.
    """
    port = _free_port()
    endpoint = f"http://127.0.0.1:{port}"
    env = dict(os.environ)
    env.pop("INITIAL_NO_AUTH_ACTION_COUNT", None)
    if auth:  # the first requests (making the user) pass unchecked; then every one is
        env["INITIAL_NO_AUTH_ACTION_COUNT"] = "4"
    process = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                urllib.request.urlopen(endpoint + "/moto-api/", timeout=2).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto's S3 server did not start on {endpoint}") from None
                time.sleep(0.1)
        key, secret = "test", "test"
        if auth:
            key, secret = _make_user(endpoint, deny)
        yield S3Server(endpoint, key, secret)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _make_user(endpoint: str, deny: tuple[str, ...]) -> tuple[str, str]:
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        aws_access_key_id="test",
        aws_secret_access_key="test",
        region_name="us-east-1",
    )
    statements = [{"Effect": "Allow", "Action": "*", "Resource": "*"}]
    if deny:
        statements.append({"Effect": "Deny", "Action": "s3:GetObject", "Resource": list(deny)})
    iam.create_user(UserName="vidcache")
    iam.put_user_policy(
        UserName="vidcache",
        PolicyName="test",
        PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
    )
    made = iam.create_access_key(UserName="vidcache")["AccessKey"]
    return made["AccessKeyId"], made["SecretAccessKey"]
