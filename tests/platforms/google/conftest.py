"""The Google Ads emulator, started in-process on free ports, and adapters pointed at it.

gRPC reads GRPC_DEFAULT_SSL_ROOTS_FILE_PATH once, when the process opens its first secure
channel, so one CA serves the whole session: if something already set the variable to a
sandbox CA, that CA's directory is reused; otherwise a session directory is created.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from google_sandbox_support import sandbox_config

from platforms.google_ads import GoogleAdsPlatform
from platforms.registry import SANDBOX_CA_FILENAME
from platforms.sandbox.faults import Faults
from platforms.sandbox.google import GoogleSandbox, GoogleSandboxData, start
from platforms.sandbox.google.certs import ensure_tls_files


@pytest.fixture(scope="session")
def sandbox_cert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    already_trusted = os.environ.get("GRPC_DEFAULT_SSL_ROOTS_FILE_PATH", "")
    if already_trusted and Path(already_trusted).name == SANDBOX_CA_FILENAME:
        cert_dir = Path(already_trusted).parent
    else:
        cert_dir = tmp_path_factory.mktemp("google-sandbox-tls")
    files = ensure_tls_files(cert_dir)
    os.environ["GRPC_DEFAULT_SSL_ROOTS_FILE_PATH"] = str(files.ca_path)
    return cert_dir


@pytest.fixture
def start_sandbox(sandbox_cert_dir: Path) -> Iterator[Callable[..., GoogleSandbox]]:
    """Start emulators with custom data or faults; every one is stopped after the test."""
    started: list[GoogleSandbox] = []

    def _start(data: GoogleSandboxData | None = None, faults: Faults | None = None) -> GoogleSandbox:
        sandbox = start(cert_dir=sandbox_cert_dir, data=data, faults=faults or Faults(seed=7))
        started.append(sandbox)
        return sandbox

    yield _start
    for sandbox in started:
        sandbox.stop()


@pytest.fixture
def sandbox(start_sandbox: Callable[..., GoogleSandbox]) -> GoogleSandbox:
    return start_sandbox()


@pytest.fixture
def make_adapter() -> Iterator[Callable[..., GoogleAdsPlatform]]:
    """Adapters for a sandbox and config overrides; their channels are closed afterwards."""
    built: list[GoogleAdsPlatform] = []

    def _make(sandbox: GoogleSandbox, **overrides: object) -> GoogleAdsPlatform:
        adapter = GoogleAdsPlatform(sandbox_config(sandbox, **overrides))
        built.append(adapter)
        return adapter

    yield _make
    for adapter in built:
        adapter.close()


@pytest.fixture
def google(sandbox: GoogleSandbox, make_adapter: Callable[..., GoogleAdsPlatform]) -> GoogleAdsPlatform:
    return make_adapter(sandbox)
