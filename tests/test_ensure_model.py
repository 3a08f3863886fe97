"""The ensure-model init script, run for real by /bin/sh against a stand-in `ollama` CLI.

The stand-in records its calls and keeps "models" as files, so these tests check the script's
decisions (find or pull the base, check the adapter, create the model) and that each failure
exits non-zero with a message naming the cause."""

from __future__ import annotations

import hashlib
import os
import struct
import subprocess
from pathlib import Path

import pytest

from components.ollama import ENSURE_MODEL_SH

FAKE_OLLAMA = """#!/bin/sh
echo "$*" >> "$FAKE_STATE/calls"
case "$1" in
  serve) exec sleep 30 ;;
  list) exit 0 ;;
  show) [ -e "$FAKE_STATE/models/$2" ] ;;
  pull) [ -z "${FAKE_PULL_FAILS:-}" ] && touch "$FAKE_STATE/models/$2" ;;
  create) cp "$4" "$FAKE_STATE/Modelfile.$2" && touch "$FAKE_STATE/models/$2" ;;
esac
"""


def gguf(general_type: str) -> bytes:
    """A GGUF header with one string KV, encoded as the format does (uint64 lengths, type 8 = string)."""
    key, val = b"general.type", general_type.encode()
    return (b"GGUF" + struct.pack("<IQQ", 3, 0, 1) + struct.pack("<Q", len(key)) + key
            + struct.pack("<I", 8) + struct.pack("<Q", len(val)) + val + b"\x00" * 64)


@pytest.fixture
def sandbox(tmp_path: Path):
    bin_dir, state, models = tmp_path / "bin", tmp_path / "state", tmp_path / "models"
    for d in (bin_dir, state / "models", models / "adapters"):
        d.mkdir(parents=True)
    (bin_dir / "ollama").write_text(FAKE_OLLAMA)
    (bin_dir / "ollama").chmod(0o755)
    script = tmp_path / "ensure-model.sh"
    script.write_text(ENSURE_MODEL_SH)

    def run(**env: str) -> subprocess.CompletedProcess:
        full = {"PATH": f"{bin_dir}:{os.environ['PATH']}", "FAKE_STATE": str(state), "TMPDIR": str(tmp_path),
                "BASE_MODEL": "llama3:8b", "MODEL_NAME": "chatbot", "OLLAMA_MODELS": str(models / "ollama"), **env}
        return subprocess.run(["/bin/sh", str(script)], env=full, capture_output=True, text=True, timeout=30)

    return run, state, models


def calls(state: Path) -> list[str]:
    return (state / "calls").read_text().splitlines()


def test_pulls_missing_base_and_creates_adapter_model(sandbox):
    run, state, models = sandbox
    adapter = models / "adapters" / "chatbot.gguf"
    adapter.write_bytes(gguf("adapter"))
    proc = run(ADAPTER_FILE=str(adapter))
    assert proc.returncode == 0, proc.stderr
    assert "pull llama3:8b" in calls(state)
    assert (state / "Modelfile.chatbot").read_text() == f"FROM llama3:8b\nADAPTER {adapter}\n"
    assert "ensure-model: model chatbot is ready" in proc.stdout


def test_base_found_in_cache_is_not_pulled(sandbox):
    run, state, _ = sandbox
    (state / "models" / "llama3:8b").touch()
    proc = run(MODEL_NAME="llama3:8b")
    assert proc.returncode == 0, proc.stderr
    assert not any(c.startswith("pull") or c.startswith("create") for c in calls(state))
    assert "base model llama3:8b found in the cache" in proc.stdout


@pytest.mark.parametrize("content,sha,message", [
    (None, None, "is not in the model cache"),
    (b"safetensors....", None, "is not a GGUF file"),
    (gguf("model"), None, "has no general.type=adapter"),
    (gguf("adapter"), "0" * 64, "does not match sha256"),
])
def test_bad_adapter_fails_visibly(sandbox, content, sha, message):
    run, state, models = sandbox
    adapter = models / "adapters" / "chatbot.gguf"
    if content is not None:
        adapter.write_bytes(content)
    proc = run(ADAPTER_FILE=str(adapter), **({"ADAPTER_SHA256": sha} if sha else {}))
    assert proc.returncode == 1
    assert message in proc.stderr
    assert not (state / "models" / "chatbot").exists()


def test_matching_sha256_passes(sandbox):
    run, state, models = sandbox
    adapter = models / "adapters" / "chatbot.gguf"
    adapter.write_bytes(gguf("adapter"))
    proc = run(ADAPTER_FILE=str(adapter), ADAPTER_SHA256=hashlib.sha256(adapter.read_bytes()).hexdigest())
    assert proc.returncode == 0, proc.stderr


def test_failed_pull_fails_the_init_container(sandbox):
    run, _, _ = sandbox
    proc = run(MODEL_NAME="llama3:8b", FAKE_PULL_FAILS="1")
    assert proc.returncode == 1
    assert "pull of llama3:8b failed" in proc.stderr


def test_a_cache_the_pods_user_cannot_write_stops_the_pod_with_the_fix(sandbox):
    run, state, models = sandbox
    (models / "file").write_text("")  # a directory below a regular file can be neither made nor written, even by root
    result = run(OLLAMA_MODELS=str(models / "file" / "ollama"))
    assert result.returncode == 1
    assert "is not writable by uid" in result.stderr and "sudo chown -R" in result.stderr
    assert not (state / "calls").exists()  # nothing was started or pulled


def test_the_write_check_leaves_nothing_behind(sandbox):
    run, state, models = sandbox
    (state / "models" / "llama3:8b").touch()
    assert run(MODEL_NAME="llama3:8b").returncode == 0
    assert list((models / "ollama").iterdir()) == []
