"""`vllm serve`'s command line as vLLM 0.33.0's own parser reads it, and what of it a pod of this program can honour.

catalog/vllm-flags.json is written by tools/vllm_flags.py from the real parser (vllm.entrypoints.cli.serve, CPU-only
import): every option string vLLM accepts, how many values it takes, its int/float type and choices. Installing vLLM and
its torch for a preview would take minutes and gigabytes, so `parser()` is argparse rebuilt from that list. Abbreviations
are refused (vLLM allows them; a rendered command line should never rely on one).

Before argparse, vLLM's FlexibleArgumentParser rewrites argv (vllm/utils/argparse_utils.py@0.33.0, parse_args):
`--a_b` is `--a-b` (up to the first `.`), `-O3`/`-O=3`/`-O 3` is `--optimization-level 3`, and an argument starting
with `-` that holds a `.` (`--config-option.key value`, `--opt.key=value`, `--opt.list+ a,b`) sets a key of a JSON option,
taking the next argument as its value. `split` does the same and keeps where each piece came from, so a refusal names
the `extraArgs` item it is about.
"""

from __future__ import annotations

import argparse
import difflib
import json
import re
import unicodedata
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

FLAGS = Path(__file__).resolve().parent.parent / "catalog" / "vllm-flags.json"
TYPES = {"int": int, "float": float, "str": str}
TYPE_WORDS = {"int": "an integer", "float": "a number"}
_NEGATIVE = re.compile(r"^-\d+$|^-\d*\.\d+$")  # argparse's _negative_number_matcher: such an argument is a value
_LEVELS = ("0", "1", "2", "3")  # OptimizationLevel O0-O3 (vllm/config/vllm.py:132@0.33.0)
_MODEL = "model"  # the container's first argument; extraArgs come after it and the typed flags


class Refused(ValueError):
    """vLLM's parser would exit with this message."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # argparse exits; callers want the message
        raise Refused(message)


class _Switch(argparse.Action):
    """vLLM's EnableDisableAction (utils/argparse_utils.py@0.33.0): `--x` sets True; `--no-x`, and `--disable-y` for
    `--enable-y` (or the reverse), set False."""

    def __init__(self, option_strings, dest, negatives=frozenset(), **kw):
        super().__init__(option_strings, dest, nargs=0, **kw)
        self.negatives = negatives

    def __call__(self, parser, namespace, values, option_string=None):
        setattr(namespace, self.dest, option_string not in self.negatives)


@cache
def catalog() -> dict[str, Any]:
    return json.loads(FLAGS.read_text())


@cache
def options() -> dict[str, dict[str, Any]]:
    """Every option string -> its catalog entry (strings, nargs, type, choices)."""
    return {s: o for o in catalog()["options"] for s in o.get("strings", ())}


def _switch(strings: list[str]) -> tuple[str, frozenset[str]]:
    """The switch's own name and the strings that set it False, as EnableDisableAction derives them."""
    own = next((s.replace("--no-", "--", 1) for s in strings if s.startswith("--no-")), None)
    if own is None:
        return max(strings, key=len), frozenset()
    inverse = {"--enable-": "--disable-", "--disable-": "--enable-"}
    negatives = {f"--no-{own[2:]}"} | {inv + own.removeprefix(p) for p, inv in inverse.items() if own.startswith(p)}
    return own, frozenset(negatives)


@cache
def parser() -> _Parser:
    p = _Parser(prog="vllm serve", add_help=False, allow_abbrev=False)
    for o in catalog()["options"]:
        if "positional" in o:
            p.add_argument(o["positional"], nargs=o["nargs"])
            continue
        strings = o["strings"]
        if o["nargs"] == 0:
            own, negatives = _switch(strings)
            p.add_argument(*strings, dest=dest(own), action=_Switch, negatives=negatives, default=None if negatives else False)
            continue
        kind = TYPES.get(o["type"] or "str", str)
        choices = [kind(c) for c in o["choices"]] if o["choices"] else None
        kw: dict[str, Any] = {"dest": dest(max(strings, key=len)), "type": kind, "choices": choices}
        if o["nargs"] is not None:
            kw["nargs"] = o["nargs"]
        p.add_argument(*strings, **kw)
    return p


def dest(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


def dest_of(option: str) -> str:
    """The namespace attribute an option string sets (`-dp` -> `data_parallel_size`)."""
    return parser()._option_string_actions[option].dest


def parse(args: list[str]) -> argparse.Namespace:
    """The namespace vLLM's parser would give (underscores in dests), or Refused."""
    return parser().parse_args(args)


def expand(args: list[str], env: dict[str, str]) -> list[str]:
    """What the kubelet passes: `$(VAR)` replaced from the container's environment (unknown names are left as they are)."""
    return [re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), a) for a in args]


def known(flag: str) -> bool:
    return flag in options()


def flag_name(arg: str) -> str:
    """`--max_num_seqs=4` -> `--max-num-seqs`, as vLLM rewrites a name: underscores up to the first `.`, no `=value`."""
    name = arg.split("=", 1)[0]
    return re.sub(r"(?<=^--)[^.]*", lambda m: m.group(0).replace("_", "-"), name, count=1) if name.startswith("--") else name


def near(flag: str) -> str | None:
    match = difflib.get_close_matches(flag, sorted(options()), n=1)
    return match[0] if match else None


# ---------------------------------------------------------------------------------------------------------------------
# Splitting argv as FlexibleArgumentParser.parse_args does (vllm/utils/argparse_utils.py@0.33.0, parse_args, lines 313-502)


@dataclass(frozen=True)
class Piece:
    """One option and the values argparse gives it, or stray values (`option` None), with their extraArgs indexes."""

    option: str | None  # as argparse sees it: `--max-num-seqs`, `-dp`, `--optimization-level`; a JSON option's base
    items: tuple[tuple[int, str], ...]  # (index in extraArgs, argument after vLLM's rewriting)
    dotted: bool = False  # `--option.key value`: vLLM turned it into `--option '{"key": value}'`
    missing_value: bool = False  # a dotted key with nothing after it (vLLM would stop with an IndexError)

    @property
    def index(self) -> int:
        return self.items[0][0]


def _rewrite(args: list[str]) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    for i, arg in enumerate(args):
        if arg.startswith("--help="):
            out.append((i, "--help"))
        elif arg.startswith("--"):
            name, eq, value = arg.partition("=")
            out.append((i, flag_name(name) + eq + value))
        elif arg.startswith("-O") and arg != "-O":
            out += [(i, "--optimization-level"), (i, arg[3:] if arg[2] == "=" else arg[2:])]
        elif arg == "-O" and i + 1 < len(args) and args[i + 1] in _LEVELS:
            out.append((i, "--optimization-level"))
        else:
            out.append((i, arg))
    return out


def _looks_like_option(token: str) -> bool:
    """argparse's own test (ArgumentParser._parse_optional, Python 3.12): an option, or a value (positional)."""
    if not token.startswith("-") or token == "-":
        return False
    if token in options() or token.split("=", 1)[0] in options():
        return True
    return not _NEGATIVE.match(token) and " " not in token


def _json_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def split(args: list[str]) -> list[Piece]:
    tokens = _rewrite(args)
    used: set[int] = set()
    pieces: list[Piece] = []
    dotted: list[Piece] = []
    for j, (i, token) in enumerate(tokens):
        if j in used or not token.startswith("-") or "." not in token:
            continue
        name, eq, value = token.partition("=")
        if eq and "." not in name:
            continue  # the `.` was in the value
        missing = not eq and j + 1 >= len(tokens)
        if not eq and not missing:
            value = tokens[j + 1][1]
            used.add(j + 1)
        used.add(j)
        if name.endswith("+"):
            name, value = name[:-1], json.dumps(value.split(","))
        base, *keys = name.split(".")
        nested: Any = _json_value(value)
        for k in reversed(keys):
            nested = {k: nested}
        dotted.append(Piece(base, ((i, base), (i, json.dumps(nested))), dotted=True, missing_value=missing))
    current: list[tuple[int, str]] = []
    for j, (i, token) in enumerate(tokens):
        if j in used:
            continue
        if _looks_like_option(token) and current:
            pieces.append(_piece(current))
            current = []
        current.append((i, token))
    if current:
        pieces.append(_piece(current))
    return pieces + dotted


def _piece(items: list[tuple[int, str]]) -> Piece:
    head = items[0][1]
    return Piece(head.split("=", 1)[0] if _looks_like_option(head) else None, tuple(items))


# ---------------------------------------------------------------------------------------------------------------------
# Reading each piece with the parser


def _wants(o: dict[str, Any]) -> str:
    if o["choices"]:
        return "one of: " + ", ".join(o["choices"])
    return TYPE_WORDS.get(o["type"] or "", "a value")


def read(piece: Piece) -> tuple[argparse.Namespace | None, tuple[int, str] | None]:
    """The namespace vLLM's parser gives for one piece after the model, or (index, why it would exit)."""
    values = [t for _, t in piece.items]
    try:
        return parse([_MODEL, *values]), None
    except Refused as exc:
        message = str(exc)
    if piece.option is None or message.startswith("unrecognized arguments"):
        # The first item past what the option takes: none for a switch or `--opt=value`, else one (`?`, plain).
        taken = 0 if piece.option is None else 1 + (0 if "=" in piece.items[0][1] or options()[piece.option]["nargs"] == 0 else 1)
        stray = piece.items[min(taken, len(piece.items) - 1)]
        after = f"{piece.option} takes no more values" if piece.option else "no option comes before it"
        return None, (stray[0], f"{stray[1]!r} is a value but {after}: vLLM would exit with 'unrecognized arguments'; "
                                "drop it, or give the option it belongs to")
    o = options()[piece.option]
    if o["nargs"] == 0:
        return None, (piece.index, f"{piece.option} is a switch and takes no value; write {piece.option!r} alone "
                                   "(or its --no- form)")
    if "expected" in message:
        return None, (piece.index, f"{piece.option} needs a value ({_wants(o)}) and none follows it")
    if "invalid choice" in message or "invalid" in message and "value" in message:
        given = re.search(r"'([^']*)'", message.split(": ", 1)[-1])
        return None, (piece.index, f"{piece.option} takes {_wants(o)}; {given.group(1) if given else values[-1]!r} is not "
                                   "(vLLM's parser would exit)")
    return None, (piece.index, f"vLLM's parser would exit: {message}")


# ---------------------------------------------------------------------------------------------------------------------
# The text of an argument: what the kubelet and a word processor do to it

_DASHES = {"\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2015", "\u2212", "\ufe58", "\ufe63", "\uff0d"}


def text_problem(arg: str) -> str | None:
    """Why an argument would not reach vLLM as written, or None."""
    control = next((c for c in arg if unicodedata.category(c) == "Cc"), None)
    if control is not None:
        return f"{arg!r} holds the control character U+{ord(control):04X}; remove it"
    if re.search(r"\$\$|\$\([^)]*\)", arg):
        # k8s.io/kubernetes v1.34.4 third_party/forked/golang/expansion/expand.go (Expand, tryReadVariableName), called
        # for every container arg by pkg/kubelet/container/helpers.go:196 (ExpandContainerCommandAndArgs).
        return (f"{arg!r}: the kubelet expands $(VAR) in container args from the container's environment (so "
                "$(VLLM_API_KEY) or $(HF_TOKEN) would put a secret on the command line and in the start-up log) and "
                "turns $$ into $; write the value itself")
    if arg and arg[0] in _DASHES:
        rest = arg.lstrip("".join(_DASHES) + "-")
        fix = next((f for f in (f"--{rest}", f"-{rest}") if known(flag_name(f))), f"--{rest}")
        return (f"{arg!r} starts with {unicodedata.name(arg[0], 'a dash')} (U+{ord(arg[0]):04X}), not '-': vLLM reads it "
                f"as a value and exits with 'unrecognized arguments'; write {fix!r}")
    if re.search(r"(^|[/=])\.\.(/|$)", arg):
        return (f"{arg!r} holds a '..' path segment: the pod's files are the model cache and the image; give a path "
                "inside the cache (relative to it) or the Hub repo id")
    first = arg.split()[0] if arg.strip() else ""
    if arg.startswith("-") and first != arg and "=" not in first and known(flag_name(first)):
        return (f"{arg!r} is one item holding an option and its value; vLLM reads it as a value and exits with "
                f"'unrecognized arguments': write them as two items, {[first, arg[len(first):].strip()]}")
    return None


# ---------------------------------------------------------------------------------------------------------------------
# What the pod and the plan cannot honour


@dataclass(frozen=True)
class Pod:
    """What a vLLM pod of the plan gives the server (the model's typed fields)."""

    gpus: int  # tensorParallel: the GPUs of one pod
    memory_gib: float  # memoryGiB: the container's memory limit (/dev/shm on top)
    max_model_len: int
    max_num_batched_tokens: int | None
    autoscaled: bool


def _number(value: Any) -> float | None:
    try:
        return None if value in (None, "None", "") else float(value)
    except (TypeError, ValueError):
        return None


def pod_problems(ns: argparse.Namespace, where: dict[str, int], pod: Pod) -> list[tuple[int, str]]:
    """(extraArgs index, why) for each option whose final value the pod or the plan cannot honour. `where` maps a dest
    to the index of the last extraArgs item that set it (vLLM keeps the last)."""
    out: list[tuple[int, str]] = []

    def refuse(d: str, why: str) -> None:
        out.append((where[d], why))

    def given(d: str) -> bool:
        return d in where and getattr(ns, d) not in (None, False)

    if given("uds"):
        # vllm/entrypoints/common/cli_args.py:313-314@0.33.0: "Unix domain socket path. If set, host and port ... ignored."
        refuse("uds", "--uds serves the API on a Unix socket and ignores --port, but the probes and the Service reach "
                      "the server on TCP port 8000; drop it")
    for d in ("ssl_keyfile", "ssl_certfile", "ssl_ca_certs", "ssl_cert_reqs", "ssl_ciphers", "enable_ssl_refresh"):
        if given(d):
            # vllm/entrypoints/common/cli_args.py:346-357@0.33.0 (FrontendArgs.ssl_*), handed to uvicorn by
            # entrypoints/launchers/api_server/entry.py:153-155: the port then speaks HTTPS.
            refuse(d, f"--{d.replace('_', '-')} turns on TLS in the server: the probes speak plain HTTP and the pod "
                      "has no key or certificate files; drop it and terminate TLS at the ingress (ingress.tls)")
    if given("grpc"):
        # vllm/entrypoints/common/cli_args.py:466-471@0.33.0: "Launch the Python gRPC ... server on --port instead of the HTTP ... server".
        refuse("grpc", "--grpc serves gRPC on the port instead of HTTP: the /health probes and OpenAI clients would "
                       "fail; drop it")
    if given("help"):
        refuse("help", "--help prints the options and exits, so the container would restart forever; drop it")
    if given("config"):
        # vllm/utils/argparse_utils.py:516-673@0.33.0 (_pull_args_from_config, load_config_file: opens the YAML file).
        refuse("config", "--config reads options from a YAML file, and the pod has no such file (vLLM would stop); "
                         "give each option in extraArgs instead")
    if given("load_format") and str(ns.load_format).lower() == "dummy":  # LoadConfig lowercases it (config/load.py@0.33.0)
        # vllm/config/load.py:46@0.33.0: "dummy" initializes the weights with random values (for profiling).
        refuse("load_format", "--load-format dummy fills the weights with random values: the server would answer "
                              "with noise; drop it (the default, auto, loads the checkpoint)")
    for d in ("data_parallel_size", "data_parallel_size_local", "prefill_context_parallel_size"):
        if given(d) and (n := getattr(ns, d)) > 1:
            # vllm/config/parallel.py:964-968@0.33.0: a world is pipeline x tensor x prefill-context-parallel ranks, and
            # each data-parallel group is another world (world_size_across_dp, parallel.py:627).
            refuse(d, f"--{d.replace('_', '-')} {n} needs {n} x tensorParallel = {n * pod.gpus} GPUs in the pod, which has "
                      f"{pod.gpus} (tensorParallel {pod.gpus}); drop it, and use replicas for more copies of the model or "
                      "tensorParallel for more GPUs per copy")
    out += _offload_problems(ns, where, pod)
    if "optimization_level" in where and ns.optimization_level not in _LEVELS:
        refuse("optimization_level", "vLLM's -O takes an optimization level 0-3 (-O3 or -O 3, --optimization-level 3)")
    if given("disable_log_stats") and pod.autoscaled:
        # vllm/v1/engine/async_llm.py:296@0.33.0: log_stats=not disable_log_stats; without it there are no vllm:* metrics.
        refuse("disable_log_stats", "--disable-log-stats removes vLLM's metrics, and autoscale starts replicas on "
                                    "vllm:num_requests_waiting; drop it, or remove autoscale")
    if "enable_chunked_prefill" in where and ns.enable_chunked_prefill is False and pod.max_num_batched_tokens is not None \
            and pod.max_num_batched_tokens < pod.max_model_len:
        # vllm/config/scheduler.py:318-329@0.33.0 (SchedulerConfig.verify_max_model_len).
        refuse("enable_chunked_prefill", f"without chunked prefill vLLM 0.33 refuses maxNumBatchedTokens "
                                         f"{pod.max_num_batched_tokens} below maxModelLen {pod.max_model_len} "
                                         "('max_num_batched_tokens (...) is smaller than max_model_len'); raise "
                                         f"maxNumBatchedTokens to at least {pod.max_model_len}, or keep chunked prefill")
    return out


def _offload_problems(ns: argparse.Namespace, where: dict[str, int], pod: Pod) -> list[tuple[int, str]]:
    """CPU memory the server pins for offloading, against the container's memory limit."""
    parts: list[tuple[str, float]] = []
    out: list[tuple[int, str]] = []
    if "cpu_offload_gb" in where and ns.cpu_offload_gb:
        # vllm/config/offload.py:23@0.33.0: "The space in GiB to offload to CPU, per GPU".
        parts.append((f"--cpu-offload-gb {ns.cpu_offload_gb:g} per GPU x {pod.gpus} GPU(s)", ns.cpu_offload_gb * pod.gpus))
    if "kv_offloading_size" in where:
        size = _number(ns.kv_offloading_size)
        if size is None and ns.kv_offloading_size not in (None, "None", ""):
            out.append((where["kv_offloading_size"], f"--kv-offloading-size takes a size in GiB; "
                                                     f"{ns.kv_offloading_size!r} is not a number"))
        elif size:
            # vllm/config/cache.py:383@0.33.0: "in GiB ... the total buffer size summed across all TP ranks".
            parts.append((f"--kv-offloading-size {size:g}", size))
    total = sum(gib for _, gib in parts)
    if parts and total >= pod.memory_gib:
        first = min(where[d] for d in ("cpu_offload_gb", "kv_offloading_size") if d in where)
        out.append((first, f"CPU offloading of {total:g} GiB ({' + '.join(w for w, _ in parts)}) does not fit the "
                           f"pod's memoryGiB {pod.memory_gib:g}, which also holds the server itself: the kubelet would "
                           f"OOM-kill it; raise memoryGiB well above {total:g}, or offload less"))
    return out


# ---------------------------------------------------------------------------------------------------------------------
# Everything about extraArgs, in order


def extra_args_problems(args: list[str], typed: frozenset[str], removed: tuple[str, ...], pod: Pod) -> list[tuple[int, str]]:
    """(extraArgs index, why) for each item vLLM 0.33 would refuse, that repeats a typed flag (`typed`), or that the pod
    cannot honour. Each stage runs only when the one before found nothing, so one mistake is reported once."""
    out = [(i, why) for i, a in enumerate(args) if (why := text_problem(a))]
    if out:
        return out
    pieces = split(args)
    for p in pieces:
        arg = args[p.index]
        if p.option is None:
            continue
        if p.option == "-O":  # not followed by a level (vLLM rewrites `-O3`, `-O=3` and `-O 3` only)
            out.append((p.index, f"{arg!r}: vLLM's -O takes an optimization level 0-3 (-O3 or -O 3)"))
        elif p.option in typed:
            out.append((p.index, f"{arg!r} repeats a typed setting; set it through its own key instead"))
        elif p.option in removed:
            out.append((p.index, f"{arg!r} was removed from vLLM 0.33 and would stop the server; drop it"))
        elif not known(p.option):
            guess = near(p.option)
            out.append((p.index, f"{arg!r} is not a `vllm serve` option of vLLM 0.33 (the server would exit with "
                                 f"'unrecognized arguments'){f'; did you mean {guess}?' if guess else ''}"))
        elif p.dotted and options()[p.option]["type"] != "other":
            out.append((p.index, f"{arg!r}: {p.option} takes a plain value; only JSON config options take keys "
                                 "(`--option.key value`)"))
        elif p.missing_value:
            out.append((p.index, f"{arg!r} needs a value after it (vLLM takes the next argument as the key's value)"))
    if out:
        return out
    where: dict[str, int] = {}
    for p in pieces:
        ns, problem = read(p)
        if problem is not None:
            out.append(problem)
        elif p.option is not None:
            where[dest_of(p.option)] = p.index
    if out:
        return out
    tokens = [t for p in pieces for _, t in p.items]
    try:
        ns = parse([_MODEL, *tokens])
    except Refused as exc:  # each piece parsed alone; together they should too
        return [(pieces[0].index, f"vLLM's parser would exit: {exc}")]
    return pod_problems(ns, where, pod)
