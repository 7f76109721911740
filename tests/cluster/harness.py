"""What a cluster test runs beside its chains: an OTLP receiver and Debian's nginx as the load balancer,
and the teardown of everything (Core client, nginx, the chains, the receiver) however the test ends."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from services.launcher import Chain
from tests.cluster.client import CoreClient
from tests.cluster.nginx import Nginx, free_port
from tests.otlp_receiver import OtlpReceiver


@dataclass
class ClusterParts:
    receiver: OtlpReceiver
    nginx: Nginx
    chains: list[Chain] = field(default_factory=list)  # stopped last first
    core: CoreClient | None = None


@contextmanager
def balanced_cluster(balanced: Iterable[str]) -> Iterator[ClusterParts]:
    """The receiver started and nginx given a port per ``balanced`` package (started by the test, once its
    replicas are up); skips the test where nginx is not installed."""
    if shutil.which("nginx") is None and not Path("/usr/sbin/nginx").exists():
        pytest.skip("Debian's nginx is not installed (apt-get install nginx; .ci/run does)")
    receiver = OtlpReceiver().start()
    parts = ClusterParts(receiver, Nginx(Path(tempfile.mkdtemp(prefix="fllm-nginx-")),
                                         {p: free_port() for p in balanced}))
    try:
        yield parts
    finally:
        if parts.core is not None:
            parts.core.close()
        parts.nginx.stop()
        for chain in reversed(parts.chains):
            chain.stop()
        receiver.stop()
        shutil.rmtree(parts.nginx.root, ignore_errors=True)
