"""Container image references: parsed as the OCI distribution grammar defines them, pinned, and matched to the engine
version the plan's accounting is built for.

The grammar is distribution/reference v0.6.0 (regexp.go; the library the kubelet and containerd parse references with):
`[host[:port]/]path[:tag][@digest]`, path components `[a-z0-9]+` joined by `.`, `_`, `__` or dashes, a tag
`[\\w][\\w.-]{0,127}`, a name of at most 255 characters. The first component is a registry host when it holds a `.` or
a `:` or is `localhost` (normalize.go splitDockerDomain).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_COMPONENT = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_HOST = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|\[[a-fA-F0-9:]+\])(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
NAME_MAX = 255

MOVING_TAGS = frozenset({"latest", "nightly", "main", "master", "dev", "devel", "edge", "stable", "head", "canary", "test",
                         "unstable", "beta", "alpha", "rc", "preview", "snapshot"})
"""Tags that name a branch or a channel, not a release: the image under them changes without the config changing."""
OTHER_HARDWARE = frozenset({"rocm", "cpu", "xpu", "tpu", "hpu", "neuron", "gaudi", "openvino", "npu", "ascend", "arm",
                            "mps", "metal", "vulkan", "intel", "amd"})
"""Words in a repository or tag that mark a build for other accelerators than NVIDIA GPUs (`ollama/ollama:0.32.15-rocm`,
`vllm/vllm-openai-cpu`): the GPU catalog holds NVIDIA GPUs only, and the pods ask for `nvidia.com/gpu`."""


@dataclass(frozen=True)
class ImageRef:
    registry: str | None
    path: str
    tag: str | None
    digest: str | None

    @property
    def version(self) -> tuple[int, ...] | None:
        """The release a tag names (`v0.33.0`, `0.32.15`, `0.33.0-cu130` -> (0, 33, 0)); None for other tags."""
        return _release(self.tag or "")

    @property
    def prerelease(self) -> bool:
        """`v0.33.0rc1`, `0.33.0.dev3`, `0.33.0-beta.1`: a build before the release."""
        return re.fullmatch(r"v?\d+\.\d+(?:\.\d+)?[-.]?(?:rc|dev|a|alpha|b|beta|pre)\.?\d*(?:[-+._][\w.-]*)?", self.tag or "",
                            re.ASCII | re.IGNORECASE) is not None

    def words(self) -> set[str]:
        return set(re.split(r"[-_./:]+", f"{self.path.rsplit('/', 1)[-1]}:{self.tag or ''}".lower()))


def parse_image(text: str) -> ImageRef:
    """The reference's parts, or ValueError saying what is wrong with it."""
    if text != text.strip() or not text:
        raise ValueError(f"{text!r} has spaces around it or is empty")
    rest, _, digest = text.partition("@")
    if digest and not re.fullmatch(_DIGEST, digest):
        raise ValueError(f"{text!r}: the digest {digest!r} is not <algorithm>:<hex> (e.g. sha256:<64 hex digits>)")
    if digest.startswith("sha256:") and not re.fullmatch(r"sha256:[0-9a-f]{64}", digest):
        raise ValueError(f"{text!r}: a sha256 digest is 64 lowercase hex digits")
    name, tag = rest, None
    last = rest.rsplit("/", 1)[-1]
    if ":" in last:
        name, tag = rest.rsplit(":", 1)
        if not re.fullmatch(_TAG, tag, re.ASCII):
            raise ValueError(f"{text!r}: the tag {tag!r} is not a valid tag (letters, digits, '_', '.', '-'; at most 128)")
    first, sep, remainder = name.partition("/")
    registry = None
    if sep and ("." in first or ":" in first or first == "localhost" or first != first.lower()):
        registry, name = first, remainder
        if not re.fullmatch(_HOST, registry):
            raise ValueError(f"{text!r}: the registry {registry!r} is not a host name with an optional port")
    if not re.fullmatch(rf"{_COMPONENT}(?:/{_COMPONENT})*", name):
        raise ValueError(f"{text!r}: the repository {name!r} must be lowercase path components ([a-z0-9] joined by '.', "
                         "'_' or '-') separated by '/'; a registry port goes with its host (registry.internal:5000/vllm/vllm-openai:v0.33.0)")
    if len(rest) - (len(tag) + 1 if tag else 0) > NAME_MAX:
        raise ValueError(f"{text!r}: the name is longer than {NAME_MAX} characters")
    return ImageRef(registry, name, tag, digest or None)


def check_image(text: str, example: str) -> str:
    """A field validator: a valid reference, pinned to a release tag or a digest, built for NVIDIA GPUs."""
    ref = parse_image(text)
    if ref.tag is None and ref.digest is None:
        raise ValueError(f"{text!r} is not pinned; use a released tag such as {example}, or a digest (@sha256:...)")
    if ref.digest is None and ref.prerelease:
        raise ValueError(f"{text!r} is a pre-release build ({ref.tag!r}); use the release such as {example}")
    if ref.digest is None and ((ref.tag or "").lower() in MOVING_TAGS or ref.words() & {"nightly", "latest"}):
        raise ValueError(f"{text!r} is not pinned: {ref.tag!r} moves to new builds; use a released tag such as {example}, "
                         "or add the digest you tested (@sha256:...)")
    other = sorted(ref.words() & OTHER_HARDWARE)
    if other:
        raise ValueError(f"{text!r} is a build for {other[0]}, not NVIDIA GPUs (the nodes' GPUs are NVIDIA's); use the CUDA "
                         f"image such as {example}")
    return text


def _release(text: str) -> tuple[int, ...] | None:
    m = re.fullmatch(r"v?(\d+)\.(\d+)(?:\.(\d+))?(?:[-+._][\w.-]*)?", text, re.ASCII)
    return None if m is None else tuple(int(g) for g in m.groups() if g is not None)


def release_text(v: object) -> object:
    """A before-validator: `acceptVersion: 0.34` unquoted is a number in YAML; take it as the release it spells."""
    return f"{v:g}" if isinstance(v, float) else str(v) if isinstance(v, int) and not isinstance(v, bool) else v


def version_problems(at: str, accept_at: str, image: str, engine: str, accounted: tuple[tuple[int, int], ...],
                     accept: str | None, upstream: tuple[str, ...]) -> list[str]:
    """The image's engine release against the releases the plan's accounting and flag list are built for.

    Older than those: refused (the plan passes flags the release lacks). Newer, or a tag that names no release (a mirror's
    own tag, a digest alone, another vendor's build such as NGC's `nvcr.io/nvidia/vllm:25.09-py3`, whose tag is its own
    date): refused unless `accept` states the release, which takes the plan's figures for it. Only the engine's own
    repositories (`upstream`, under any registry or mirror prefix) are taken to tag by engine release."""
    want = " or ".join(".".join(map(str, r)) for r in accounted)
    try:
        ref = parse_image(image)
    except ValueError:
        return []  # the field's own check says what is wrong
    own = any(ref.path == u or ref.path.endswith("/" + u) or (u.endswith("-") and ref.path.rsplit("/", 1)[-1].startswith(u.rsplit("/", 1)[-1]))
              for u in upstream)
    tagged = ref.version if own else None
    stated = _release(accept) if accept is not None else None
    if accept is not None and stated is None:
        return [f"{accept_at}: {accept!r} is not a release number (e.g. {want}.0)"]
    if tagged is not None and stated is not None and tagged[:2] != stated[:2]:
        return [f"{accept_at}: {accept!r} contradicts the image's tag {ref.tag!r}; state the release the image holds"]
    release = tagged or stated
    if release is None:
        return [f"{at}: the tag of {image!r} does not say which {engine} release it holds; the plan's accounting and flags are "
                f"{engine} {want}'s: set {accept_at} to the image's release (e.g. \"{want}.0\")"]
    if release[:2] in accounted:
        return []
    shown = ".".join(map(str, release))
    if release[:2] < min(accounted):
        return [f"{at}: {engine} {shown} is older than {want}, whose flags and memory accounting the plan uses (the server "
                f"would refuse flags it passes); use {engine} {want}"]
    if stated is None:
        return [f"{at}: {engine} {shown} is not {want}, which the plan's accounting and flag list are built for; use {want}, "
                f"or set {accept_at}: \"{shown}\" to accept the plan's figures for it"]
    return []
