import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", "..", ".."))
sys.path.insert(0, os.path.join(HERE, ".."))


def _cli():
    cli = os.environ.get("STRATA_CLI") or os.path.join(
        os.environ.get("CARGO_TARGET_DIR", os.path.join(REPO, "target")), "release", "strata"
    )
    if not os.path.exists(cli):
        pytest.fail(f"{cli} is missing: build it with `cargo build --release --workspace` or set STRATA_CLI")
    return cli


@pytest.fixture(scope="session")
def cli():
    return _cli()


@pytest.fixture(scope="session")
def synth(tmp_path_factory, cli):
    """Two tiny synthetic models of the same shape, different weights."""
    d = tmp_path_factory.mktemp("models")
    paths = []
    for seed in (1, 2):
        p = str(d / f"tiny{seed}.gguf")
        subprocess.run(
            [cli, "synth", "-o", p, "--layers", "3", "--embd", "64", "--heads", "4", "--kv-heads", "2",
             "--vocab", "320", "--type", "Q4_0", "--seed", str(seed)],
            check=True, capture_output=True,
        )  # fmt: skip
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def real_model():
    """The real model the project tests against (fails, never skips, when missing)."""
    p = os.environ.get("STRATA_TEST_MODEL") or os.path.join(
        os.environ.get("STRATA_MODELS_DIR", os.path.expanduser("~/.cache/strata/models")),
        "SmolLM2-135M-Instruct.Q4_1.gguf",
    )
    if not os.path.exists(p):
        pytest.fail(f"{p} is missing: run scripts/fetch-models.sh or set STRATA_TEST_MODEL")
    return p
