"""Helpers for the end-to-end tests of `strata serve`: the server process,
the Prometheus parser, the error-shape check.

Every server here is the real `strata` binary started as a subprocess on an
ephemeral loopback port (`--port 0`); the address is read from the line it
prints when ready. At the end each one gets SIGTERM and must exit with 0.

Environment:
  STRATA_BIN          the binary (default target/release/strata)
  STRATA_TEST_MODEL   the model file (default SmolLM2-135M-Instruct.Q4_1.gguf
                      in the model cache: $STRATA_MODELS_DIR, else
                      $XDG_CACHE_HOME/strata/models, else ~/.cache/strata/models)
  STRATA_SERVE_THREADS  -t for every server (default 2)
"""

import os
import re
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import httpx
import openai
import pytest

REPO = Path(__file__).resolve().parents[3]
READY = re.compile(r"^strata serve: listening on (http://(\S+):(\d+))\s*$")
START_TIMEOUT_S = 120
STOP_TIMEOUT_S = 30
# The key of the server the auth tests start with --api-key.
API_KEY = "sk-strata-test-4f1d"


def _env(name):
    value = os.environ.get(name)
    return value if value else None


def model_path():
    explicit = _env("STRATA_TEST_MODEL")
    if explicit:
        return Path(explicit)
    models = _env("STRATA_MODELS_DIR")
    if models:
        base = Path(models)
    elif _env("XDG_CACHE_HOME"):
        base = Path(_env("XDG_CACHE_HOME")) / "strata" / "models"
    else:
        base = Path.home() / ".cache" / "strata" / "models"
    return base / "SmolLM2-135M-Instruct.Q4_1.gguf"


def strata_bin():
    explicit = _env("STRATA_BIN")
    return Path(explicit) if explicit else REPO / "target" / "release" / "strata"


class Server:
    """One running `strata serve`."""

    def __init__(self, *flags, api_key=None):
        binary = strata_bin()
        model = model_path()
        if not binary.is_file():
            pytest.fail(f"{binary} is missing: cargo build --release -p strata-cli")
        if not model.is_file():
            pytest.fail(f"{model} is missing: scripts/fetch-models.sh")
        self.api_key = api_key
        self.flags = list(flags)
        argv = [str(binary), "serve", "-m", str(model), "--host", "127.0.0.1", "--port", "0"]
        argv += ["-t", os.environ.get("STRATA_SERVE_THREADS", "2")]
        argv += self.flags
        if api_key is not None:
            argv += ["--api-key", api_key]
        self.argv = argv
        self._out = tempfile.NamedTemporaryFile(prefix="strata-serve-", suffix=".out")
        self._err = tempfile.NamedTemporaryFile(prefix="strata-serve-", suffix=".err")
        # A key in the environment would protect every server; only --api-key may.
        env = {k: v for k, v in os.environ.items() if k != "STRATA_API_KEY"}
        self.proc = subprocess.Popen(
            argv, stdin=subprocess.DEVNULL, stdout=self._out, stderr=self._err, env=env
        )
        self.base_url = self._wait_ready()
        self.api_url = self.base_url + "/v1"
        self.http = httpx.Client(base_url=self.base_url, timeout=120)

    def _wait_ready(self):
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            for line in Path(self._out.name).read_text(errors="replace").splitlines():
                m = READY.match(line)
                if m:
                    return m.group(1)
            if self.proc.poll() is not None:
                pytest.fail(
                    f"{' '.join(self.argv)} exited with {self.proc.returncode} before "
                    f"it was ready\n{self.logs()}"
                )
            time.sleep(0.05)
        self.proc.kill()
        self.proc.wait()
        pytest.fail(f"{' '.join(self.argv)} was not ready in {START_TIMEOUT_S} s\n{self.logs()}")

    def logs(self):
        out = Path(self._out.name).read_text(errors="replace")
        err = Path(self._err.name).read_text(errors="replace")
        return f"--- stdout ---\n{out[-4000:]}\n--- stderr ---\n{err[-4000:]}"

    def client(self, api_key=None, **kw):
        """An official OpenAI client for this server. No retries: a 429 or a
        5xx must reach the test, not be hidden by the client."""
        key = api_key if api_key is not None else (self.api_key or "strata-test")
        kw.setdefault("timeout", 120)
        return openai.OpenAI(base_url=self.api_url, api_key=key, max_retries=0, **kw)

    def headers(self):
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def model_id(self):
        r = self.http.get("/v1/models", headers=self.headers())
        assert r.status_code == 200, r.text
        return r.json()["data"][0]["id"]

    def metrics(self):
        """/metrics as {name: value}; labelled samples keep their labels in
        the name. Every line must be a comment or `name[{labels}] value`."""
        r = self.http.get("/metrics", headers=self.headers())
        assert r.status_code == 200, r.text
        return parse_prometheus(r.text)

    def stop(self):
        self.http.close()
        alive = self.proc.poll() is None
        if alive:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"strata serve did not stop within {STOP_TIMEOUT_S} s of SIGTERM\n{self.logs()}"
                )
        code = self.proc.returncode
        logs = self.logs()
        self._out.close()
        self._err.close()
        assert alive, f"strata serve had died during the tests (exit {code})\n{logs}"
        assert code == 0, f"strata serve exited with {code} after SIGTERM\n{logs}"


SAMPLE = re.compile(
    r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+"
    r"([-+]?(?:[0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?|Inf|NaN|\+Inf|-Inf))(\s+-?[0-9]+)?$"
)


def parse_prometheus(text):
    samples = {}
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        m = SAMPLE.match(line.strip())
        assert m, f"not a Prometheus sample line: {line!r}"
        samples[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return samples


def assert_error_shape(response, status):
    """OpenAI's error body: {"error": {"message": str, "type": str, ...}}."""
    assert response.status_code == status, (
        f"expected {status}, got {response.status_code}: {response.text[:500]}"
    )
    try:
        body = response.json()
    except ValueError:
        raise AssertionError(f"error body is not JSON: {response.text[:500]!r}")
    assert isinstance(body, dict) and isinstance(body.get("error"), dict), body
    err = body["error"]
    assert isinstance(err.get("message"), str) and err["message"], body
    assert isinstance(err.get("type"), str) and err["type"], body
    return err
