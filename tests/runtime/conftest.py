"""Fixtures for the HTTP server tests: a real `longvec serve` subprocess on 127.0.0.1 (the command and the free
port come from tests/conftest.py)."""

from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

API_KEY = "test-key-0123"


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    url: str
    api_key: str | None
    log: Path
    model: str  # the name the server serves (read from /info once it is ready)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def wait_until_ready(server: Server, timeout: float = 120.0) -> list[int]:
    """Poll /ready until 200; returns every status seen (503 while loading). The pause between polls only
    spaces them out: readiness is the observed 200, not an elapsed time."""
    import httpx

    seen: list[int] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise RuntimeError(f"server exited with {server.proc.returncode}:\n{server.log_text()}")
        try:
            status = httpx.get(f"{server.url}/ready", timeout=5).status_code
            seen.append(status)
            if status == 200:
                server.model = httpx.get(f"{server.url}/info", timeout=5).json()["model"]
                return seen
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"server not ready after {timeout}s:\n{server.log_text()}")


@contextmanager
def run_server(
    command: list[str],
    port: int,
    bundle_dir: Path,
    log_dir: Path,
    *args: str,
    api_key: str | None = API_KEY,
    wait: bool = True,
    env: dict[str, str] | None = None,
) -> Iterator[Server]:
    env = dict(os.environ, LONGVEC_THREADS="2", **(env or {}))  # settings from the environment, as documented
    env.pop("LONGVEC_API_KEY", None)
    if api_key:
        env["LONGVEC_API_KEY"] = api_key
    log = log_dir / f"server-{port}.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [*command, "serve", str(bundle_dir), "--host", "127.0.0.1", "--port", str(port), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    server = Server(proc, f"http://127.0.0.1:{port}", api_key, log, Path(bundle_dir).resolve().name)
    try:
        if wait:
            wait_until_ready(server)
        yield server
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


ServerFactory = Callable[..., AbstractContextManager[Server]]


@pytest.fixture(scope="session")
def server_factory(
    bundle_dir: Path, tmp_path_factory: pytest.TempPathFactory, longvec_cli: list[str], free_port: Callable[[], int]
) -> ServerFactory:
    log_dir = tmp_path_factory.mktemp("server-logs")

    def factory(*args: str, bundle: Path | None = None, **kwargs: object) -> AbstractContextManager[Server]:
        """A server on `bundle` (default: the session's bundle)."""
        return run_server(longvec_cli, free_port(), bundle or bundle_dir, log_dir, *args, **kwargs)  # type: ignore[arg-type]

    return factory


@pytest.fixture(scope="session")
def wait_ready() -> Callable[[Server], list[int]]:
    return wait_until_ready


@pytest.fixture(scope="session")
def server(server_factory: ServerFactory) -> Iterator[Server]:
    """One server shared by the API, concurrency, client and schema tests; limits small enough to test."""
    with server_factory("--max-items", "64", "--max-request-tokens", "30000", "--max-body-bytes", "1000000") as s:
        yield s


def poll(condition: Callable[[], object], what: str, timeout: float = 60.0, every: float = 0.02) -> None:
    """Wait until `condition()` is true (an observable event, never a guessed duration); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(every)


def metric(server: Server, name: str, **labels: str) -> float:
    """One sample of the server's /metrics (0 when absent)."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(f"{server.url}/metrics", timeout=10).text
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name == name and s.labels == labels:
                return float(s.value)
    return 0.0


@pytest.fixture(scope="session")
def server_tools() -> Any:
    """poll / metric / hold-file helpers for server tests (tests/ is not a package, so fixtures carry them)."""
    import types

    return types.SimpleNamespace(poll=poll, metric=metric)
