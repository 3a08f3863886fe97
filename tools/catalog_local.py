"""`make catalog` without the network: a model's config.json and safetensors headers from a local copy, and what to say
when the Hub cannot be reached.

    make catalog MODEL=./llama-3.1-8b/config.json          # or the directory holding it
    make catalog MODEL=/models/huggingface/hub/models--meta-llama--Llama-3.1-8B-Instruct/snapshots/<sha>
    make catalog MODEL=./my-finetune REPO=acme/llama-ft PARAMS=8.03

The catalog names a model by a Hub repo id (what `vllm.models.<key>.model` gives): a copy in the Hugging Face cache
layout (`models--<org>--<name>/snapshots/<commit>`) says its own, any other copy needs REPO. Parameters are counted from
the safetensors headers (model.safetensors, or model.safetensors.index.json and its shards; only each file's header is
read), else PARAMS gives them in billions.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stacks.config.arch import ModelArchSpec
from stacks.config.base import camel, hf_repo_id

ARCH_KEYS = ", ".join(camel(n) for n, f in ModelArchSpec.model_fields.items() if f.is_required())
"""The inline arch block's required keys, as the stack file spells them."""


class LocalCopyError(Exception):
    pass


@dataclass(frozen=True)
class LocalCopy:
    repo: str
    revision: str | None
    config: dict[str, Any]
    counts: dict[str, int] | None
    """Parameters by dtype from the safetensors headers, or None when there are none."""
    where: str
    """For the entry's source: the copy, with the commit when the cache layout gives it."""


def is_local(model: str) -> bool:
    """MODEL names a file or directory rather than a repo id: it exists, or is written as a path."""
    return model.startswith((".", "/", "~")) or model.endswith(".json") or Path(model).exists()


def hub_cache_repo(directory: Path) -> tuple[str, str] | None:
    """(repo id, commit) of a snapshot directory in the Hugging Face cache layout (huggingface_hub 2.4.0
    file_download.py:747 repo_folder_name: `models--<org>--<name>`; snapshots/<commit_hash>), or None."""
    snapshots, repo_dir = directory.parent, directory.parent.parent
    if snapshots.name != "snapshots" or not repo_dir.name.startswith("models--"):
        return None
    parts = repo_dir.name.split("--")
    if len(parts) != 3:  # a repo id has no '--' of its own (huggingface_hub validate_repo_id)
        return None
    return f"{parts[1]}/{parts[2]}", directory.name


def read_local(model: str, repo: str | None) -> LocalCopy:
    """The copy's config.json, safetensors counts and name; LocalCopyError saying what is missing."""
    from huggingface_hub import get_local_safetensors_metadata
    from huggingface_hub.errors import NotASafetensorsRepoError, SafetensorsParsingError

    given = Path(model).expanduser()
    if not given.exists():
        raise LocalCopyError(f"{model}: no such file or directory")
    directory = given.parent if given.is_file() else given
    config_file = given if given.is_file() else given / "config.json"
    if not config_file.is_file():
        raise LocalCopyError(f"{model}: no config.json in {directory}; give the model's directory or its config.json")
    try:
        config = json.loads(config_file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LocalCopyError(f"{config_file}: not JSON ({exc})") from None
    if not isinstance(config, dict):
        raise LocalCopyError(f"{config_file}: not a config.json (a JSON object)")
    cached = hub_cache_repo(directory.absolute())
    name = repo or (cached[0] if cached else None)
    if name is None:
        raise LocalCopyError(f"{model}: say which model this is with REPO=<org>/<name> (the name stacks give as "
                             "vllm.models.<key>.model); only a copy in the Hugging Face cache layout "
                             "(models--<org>--<name>/snapshots/<commit>) names itself")
    try:
        hf_repo_id(name)
    except ValueError as exc:
        raise LocalCopyError(f"REPO: {exc}") from None
    try:
        counts = get_local_safetensors_metadata(directory).parameter_count  # hf_api.py:15405@2.4.0, headers only
    except (NotASafetensorsRepoError, SafetensorsParsingError, FileNotFoundError):
        counts = None
    revision = cached[1] if cached and name == cached[0] else None
    return LocalCopy(name, revision, config, counts or None,
                     f"config.json and safetensors headers of a local copy{f' at {revision}' if revision else ''} (make catalog MODEL=<dir>)")


def no_counts_message(model: str) -> str:
    return (f"{model}: no safetensors headers to count the parameters (model.safetensors, or model.safetensors.index.json "
            "and every shard it lists); give PARAMS=<billions> from the model card (make catalog MODEL=<dir> PARAMS=8.03), "
            "or describe the model inline (arch.parametersB)")


def is_unreachable(exc: BaseException) -> bool:
    """The Hub could not be reached: no connection, a timeout, a proxy, or HF_HUB_OFFLINE (huggingface_hub 2.4.0:
    LocalEntryNotFoundError when a download finds no network and no cached copy, file_download.py:1962;
    OfflineModeIsEnabled, a ConnectionError; the HTTP client's transport errors, httpx2.TransportError)."""
    from huggingface_hub.errors import LocalEntryNotFoundError, OfflineModeIsEnabled

    kinds: tuple[type[BaseException], ...] = (LocalEntryNotFoundError, OfflineModeIsEnabled, ConnectionError, TimeoutError)
    try:
        import httpx2

        kinds += (httpx2.TransportError,)
    except ImportError:  # an older huggingface_hub on httpx
        pass
    return isinstance(exc, kinds)


def unreachable_message(repo: str, exc: BaseException) -> str:
    first = str(exc).splitlines()[0].split(". ")[0][:200] if str(exc) else ""  # its first sentence
    return (f"{repo}: Hugging Face cannot be reached ({type(exc).__name__}{': ' + first if first else ''}). Without the "
            f"network, read a local copy: make catalog MODEL=<directory with config.json and *.safetensors> REPO={repo} "
            f"[PARAMS=<billions>]; or describe the model inline in the stack: vllm.models.<key>.arch with {ARCH_KEYS} "
            "(from its config.json)")
