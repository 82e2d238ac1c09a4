"""Shared pytest fixtures."""

import os
import socket
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path:
    """The public benchmark data beside the checkout (``../shared/datasets``).

    ``KNOWFREE_SHARED_DATASETS`` overrides the location.
    """
    override = os.environ.get("KNOWFREE_SHARED_DATASETS")
    if override:
        return Path(override)
    return REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def datasets_dir() -> Path:
    """Path of ``../shared/datasets``; skips the test when it is absent."""
    path = shared_datasets_dir()
    if not (path / "README.md").exists():
        pytest.skip(
            f"public benchmark data not found at {path} (a user's checkout has "
            "no ../shared); set KNOWFREE_SHARED_DATASETS to run these tests"
        )
    return path


@pytest.fixture(scope="session")
def llm_weights_cache(tmp_path_factory) -> str:
    """Directory for converted LLM weights, shared by all tests of a session so
    the SmolLM2 GGUF is dequantized once (``KNOWFREE_CACHE_DIR`` wins)."""
    return os.environ.get("KNOWFREE_CACHE_DIR") or str(tmp_path_factory.mktemp("knowfree-cache"))


@pytest.fixture
def only_localhost(monkeypatch):
    """Fail on any outgoing connection that is not to the loopback interface
    (the LLM tests talk to servers they start on 127.0.0.1, nothing else)."""
    real_connect = socket.socket.connect

    def guarded(self, address):
        if self.family in (socket.AF_INET, socket.AF_INET6):
            assert address[0] in ("127.0.0.1", "::1", "localhost"), f"test tried to reach {address}"
        return real_connect(self, address)

    monkeypatch.setattr(socket.socket, "connect", guarded)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
