"""The SageMaker tests' shared ground: fake AWS credentials, short polling, and moto with the scikit-learn
container emulated (``tests/sagemaker_emulation.py``), in this process (``sagemaker``) or as a server that
pipelines in other processes reach through ``AWS_ENDPOINT_URL`` (``moto_server``).

Registered as a plugin in ``conftest.py``, so every SageMaker test module asks for ``fake_aws`` or
``sagemaker`` by name instead of importing (or copying) the fixtures. No test reaches AWS: the credentials
are fake and every client talks to moto.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import botocore.loaders
import botocore.session
import pytest
import requests
from moto import mock_aws
from moto.server import ThreadedMotoServer

from pipeline.backends.sagemaker import SageMakerBackend
from tests.sagemaker_emulation import SageMakerEmulation

ROLE = "arn:aws:iam::123456789012:role/SageMakerRole"
REGION = "us-east-1"
ACCOUNT = "123456789012"
BUCKET = f"sagemaker-{REGION}-{ACCOUNT}"
FAKE_AWS_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": REGION,
                "AWS_CONFIG_FILE": os.devnull, "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
                "AWS_EC2_METADATA_DISABLED": "true"}


_LOADERS: dict[str | None, botocore.loaders.Loader] = {}


def _one_loader_per_path(search_path_string: str | None = None) -> botocore.loaders.Loader:
    """Every boto3 session reads the same AWS service descriptions, and botocore parses them again for each new
    session (megabytes of JSON: about a quarter of a second per client, and the pipeline makes a session per
    backend). Test processes share one loader, which parses each description once; what a client does is
    unchanged (a loader's results are read-only data, cached per loader by botocore itself)."""
    if search_path_string not in _LOADERS:
        _LOADERS[search_path_string] = botocore.loaders.create_loader(search_path_string)
    return _LOADERS[search_path_string]


botocore.session.create_loader = _one_loader_per_path  # the name botocore's Session calls


@pytest.fixture
def fake_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials only, and short polling (the emulated resources settle at the second look)."""
    for name in list(os.environ):
        if name.startswith("AWS_"):
            monkeypatch.delenv(name)
    for name, value in FAKE_AWS_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(SageMakerBackend, "POLL_INITIAL_SECONDS", 0.01)
    monkeypatch.setattr(SageMakerBackend, "POLL_MAX_SECONDS", 0.05)


@pytest.fixture
def sagemaker(fake_aws: None, workdir: Path) -> Iterator[SageMakerEmulation]:
    """moto in this process, answering as SageMaker's scikit-learn container would."""
    with mock_aws(), SageMakerEmulation() as emulation:
        yield emulation


@pytest.fixture
def moto_server(fake_aws: None) -> Iterator[tuple[str, SageMakerEmulation]]:
    """moto on 127.0.0.1 in this process, with the container emulation; pipelines in other processes reach it
    through AWS_ENDPOINT_URL. Its URL and the emulation."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        with SageMakerEmulation() as emulation:
            yield url, emulation
    finally:
        requests.post(f"{url}/moto-api/reset", timeout=10)
        server.stop()


def sm() -> Any:
    return boto3.client("sagemaker", region_name=REGION)
