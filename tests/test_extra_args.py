"""extraArgs read as vLLM 0.33's parser reads them (stacks/vllm_args.py): values, types, choices and strays, what the pod
cannot honour, text the kubelet or a word processor would change, and the batch limits vLLM refuses together."""

from __future__ import annotations

import pytest

from stacks.errors import ConfigError
from stacks.vllm_args import parse
from tests.conftest import stack_of, variant
from tests import vllm_parser

M = "llm-infra:vllm.models"


def model_problems(stack: str, name: str, **fields) -> list[str]:
    """Problems under the model's keys once `fields` are set on it (others' problems are not this file's concern)."""
    raw = variant(lambda r: r["vllm"]["models"][name].update(**fields), stack)
    try:
        stack_of(raw)
        return []
    except ConfigError as exc:
        return [p for p in exc.problems if p.startswith(f"{M}.{name}.")]


def extra_problems(extra: list[str], stack: str = "lab", name: str = "mixtral", **fields) -> list[str]:
    return model_problems(stack, name, extraArgs=extra, **fields)


@pytest.mark.parametrize("extra, problem", [
    (["--enforce-eager", "--max-logprobs", "many"],
     "extraArgs[1]: --max-logprobs takes an integer; 'many' is not (vLLM's parser would exit)"),
    (["--max_logprobs=1.5"], "extraArgs[0]: --max-logprobs takes an integer; '1.5' is not"),
    (["--gpu-memory-utilization", "x"], "extraArgs[0]: '--gpu-memory-utilization' repeats a typed setting"),
    (["--kv-cache-metrics-sample", "often"], "extraArgs[0]: --kv-cache-metrics-sample takes a number; 'often' is not"),
    (["--scheduling-policy", "lifo"], "extraArgs[0]: --scheduling-policy takes one of: fcfs, priority; 'lifo' is not"),
    (["--cudagraph-capture-sizes", "1", "2", "x"], "extraArgs[0]: --cudagraph-capture-sizes takes an integer; 'x' is not"),
    (["--seed"], "extraArgs[0]: --seed needs a value (an integer) and none follows it"),
    (["--seed", "--enforce-eager"], "extraArgs[0]: --seed needs a value (an integer) and none follows it"),
    (["--collect-detailed-traces"], "extraArgs[0]: --collect-detailed-traces needs a value (one of: None, all, model, worker)"),
    (["--seed", "1", "2"], "extraArgs[2]: '2' is a value but --seed takes no more values: vLLM would exit with "
                           "'unrecognized arguments'"),
    (["--seed=1", "2"], "extraArgs[1]: '2' is a value but --seed takes no more values"),
    (["eager"], "extraArgs[0]: 'eager' is a value but no option comes before it"),
    (["--enforce-eager", "true"], "extraArgs[1]: 'true' is a value but --enforce-eager takes no more values"),
    (["--enforce-eager=true"], "extraArgs[0]: --enforce-eager is a switch and takes no value"),
    (["--compilation-config.mode"], "extraArgs[0]: '--compilation-config.mode' needs a value after it"),
])
def test_a_value_vllm_would_refuse_is_refused_naming_the_item(extra, problem):
    problems = extra_problems(extra)
    assert any(p.startswith(f"{M}.mixtral.{problem}") for p in problems), problems


@pytest.mark.parametrize("extra", [
    ["--max-logprobs", "-1"], ["--max_logprobs=20"], ["-O3"], ["-O", "0"], ["-O=2"], ["--optimization-level", "1"],
    ["--compilation-config.cudagraph_mode", "FULL"], ["--compilation_config.mode=3"], ["--compilation-config", '{"mode": 3}'],
    ["--cudagraph-capture-sizes", "1", "2", "4", "--enforce-eager"], ["--no-enable-prefix-caching"], ["--disable-log-requests"],
    ["--scheduling-policy=priority"], ["--kv-cache-metrics-sample", "0.5"], ["--cpu-offload-gb", "4"], ["-dp", "1"],
    ["--load-format", "safetensors"], ["--disable-ssl-refresh"], ["--chat-template", "{{ messages }}"],
])
def test_what_vllm_accepts_and_the_pod_honours_passes(extra):
    assert extra_problems(extra) == []


@pytest.mark.parametrize("extra, problem", [
    (["--uds", "/tmp/vllm.sock"], "extraArgs[0]: --uds serves the API on a Unix socket and ignores --port"),
    (["--ssl-keyfile", "/tls/key.pem"], "extraArgs[0]: --ssl-keyfile turns on TLS in the server: the probes speak plain HTTP"),
    (["--ssl_certfile=/tls/cert.pem"], "extraArgs[0]: --ssl-certfile turns on TLS"),
    (["--enforce-eager", "--ssl-ca-certs", "/tls/ca.pem"], "extraArgs[1]: --ssl-ca-certs turns on TLS"),
    (["--ssl-cert-reqs", "2"], "extraArgs[0]: --ssl-cert-reqs turns on TLS"),
    (["--enable-ssl-refresh"], "extraArgs[0]: --enable-ssl-refresh turns on TLS"),
    (["--grpc"], "extraArgs[0]: --grpc serves gRPC on the port instead of HTTP"),
    (["-h"], "extraArgs[0]: --help prints the options and exits"),
    (["--config", "/etc/vllm/serve.yaml"], "extraArgs[0]: --config reads options from a YAML file, and the pod has no such file"),
    (["--config=../serve.yaml"], "extraArgs[0]: '--config=../serve.yaml' holds a '..' path segment"),
    (["--tokenizer", "../etc"], "extraArgs[1]: '../etc' holds a '..' path segment"),
    (["--load-format", "DUMMY"], "extraArgs[0]: --load-format dummy fills the weights with random values"),
    (["--load-format", "dummy"], "extraArgs[0]: --load-format dummy fills the weights with random values"),
    (["-dp", "2"], "extraArgs[0]: --data-parallel-size 2 needs 2 x tensorParallel = 2 GPUs in the pod, which has 1"),
    (["--data_parallel_size_local=4"], "extraArgs[0]: --data-parallel-size-local 4 needs 4 x tensorParallel = 4 GPUs"),
    (["-pcp", "2"], "extraArgs[0]: --prefill-context-parallel-size 2 needs 2 x tensorParallel = 2 GPUs"),
    (["-Ofast"], "extraArgs[0]: vLLM's -O takes an optimization level 0-3"),
    (["--optimization-level", "5"], "extraArgs[0]: vLLM's -O takes an optimization level 0-3"),
])
def test_an_option_the_pod_cannot_honour_is_refused_with_the_reason(extra, problem):
    problems = extra_problems(extra)
    assert any(p.startswith(f"{M}.mixtral.{problem}") for p in problems), problems


def test_vllm_keeps_the_last_of_a_repeated_option():
    assert extra_problems(["--load-format", "dummy", "--load-format", "auto", "-dp", "2", "--data-parallel-size=1"]) == []
    assert extra_problems(["--disable-chunked-prefill", "--enable-chunked-prefill"], maxNumBatchedTokens=2048) == []


@pytest.mark.parametrize("stack, name, extra, memory, problem", [
    # mixtral: tensorParallel 1, memoryGiB 32.
    ("lab", "mixtral", ["--cpu-offload-gb", "20", "--kv-offloading-size", "12"], None,
     "extraArgs[0]: CPU offloading of 32 GiB (--cpu-offload-gb 20 per GPU x 1 GPU(s) + --kv-offloading-size 12) does not "
     "fit the pod's memoryGiB 32"),
    ("lab", "mixtral", ["--enforce-eager", "--kv-offloading-size", "40"], None, "extraArgs[1]: CPU offloading of 40 GiB"),
    ("lab", "mixtral", ["--kv-offloading-size", "lots"], None, "extraArgs[0]: --kv-offloading-size takes a size in GiB"),
    # llama-70b: tensorParallel 4, memoryGiB 64; vLLM's figure is per GPU.
    ("prod", "llama-70b", ["--cpu-offload-gb", "16"], None, "extraArgs[0]: CPU offloading of 64 GiB (--cpu-offload-gb 16 "
                                                           "per GPU x 4 GPU(s)) does not fit the pod's memoryGiB 64"),
    ("prod", "llama-70b", ["--cpu-offload-gb", "16"], 80, None),
    ("prod", "llama-70b", ["--cpu-offload-gb", "15"], None, None),
])
def test_cpu_offloading_must_fit_the_pod_memory_limit(stack, name, extra, memory, problem):
    problems = model_problems(stack, name, extraArgs=extra, **({"memoryGiB": memory} if memory else {}))
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(f"{M}.{name}.{problem}") for p in problems), problems


@pytest.mark.parametrize("arg, problem", [
    ("\u2014max-num-seqs", "'\u2014max-num-seqs' starts with EM DASH (U+2014), not '-': vLLM reads it as a value and exits "
                           "with 'unrecognized arguments'; write '--max-num-seqs'"),
    ("\u2013tp", "starts with EN DASH (U+2013), not '-'"),
    ("\u2212\u2212enforce-eager", "starts with MINUS SIGN (U+2212), not '-'"),
    ("--api-key=$(VLLM_API_KEY)", "'--api-key=$(VLLM_API_KEY)': the kubelet expands $(VAR) in container args"),
    ("--served-model-name=$(HOSTNAME)", "the kubelet expands $(VAR)"),
    ("--chat-template=cost: $$5", "turns $$ into $"),
    ("--enforce-eager\n", "holds the control character U+000A"),
    ("--seed\t1", "holds the control character U+0009"),
    ("--max-logprobs 5", "'--max-logprobs 5' is one item holding an option and its value; vLLM reads it as a value and "
                         "exits with 'unrecognized arguments': write them as two items, ['--max-logprobs', '5']"),
])
def test_text_the_kubelet_or_an_editor_changes_is_refused(arg, problem):
    problems = extra_problems(["--enforce-eager", arg])
    assert any(p.startswith(f"{M}.mixtral.extraArgs[1]: ") and problem in p for p in problems), problems


def test_max_num_seqs_above_max_num_batched_tokens_is_refused():
    """vLLM 0.33 SchedulerConfig.verify_max_model_len: 'max_num_batched_tokens (N) must be greater than or equal to
    max_num_seqs (M)'."""
    assert model_problems("lab", "llama-8b", maxNumBatchedTokens=4096) == []
    # At 4096 rows the sampler's profile run holds 4096 x vocab 128256 x 4 B x 4 + 0.05 GiB = 7.88 GiB (calibrated;
    # it was 3.91 with two copies), which leaves llama-8b's pinned KV cache 1102 blocks, 17632 tokens: less than its
    # 32768-token maxModelLen. The boundary is checked at maxModelLen 16384 (1024 blocks), which that cache holds.
    assert model_problems("lab", "llama-8b", maxNumSeqs=4096, maxNumBatchedTokens=4096, maxModelLen=16384) == []
    assert model_problems("lab", "llama-8b", maxNumSeqs=4097, maxNumBatchedTokens=4096) == [
        f"{M}.llama-8b.maxNumSeqs: 4097 is above maxNumBatchedTokens 4096, which vLLM 0.33 refuses ('max_num_batched_tokens "
        "(4096) must be greater than or equal to max_num_seqs (4097)'); use at most 4096, or raise maxNumBatchedTokens"]


def test_batched_tokens_below_max_model_len_need_chunked_prefill():
    """Chunked prefill is on by default in vLLM 0.33; turned off, max_num_batched_tokens must hold maxModelLen."""
    assert model_problems("lab", "mixtral", maxNumBatchedTokens=4096) == []  # maxModelLen 16384, chunked prefill on
    (problem,) = extra_problems(["--enforce-eager", "--no-enable-chunked-prefill"], maxNumBatchedTokens=4096)
    assert problem.startswith(f"{M}.mixtral.extraArgs[1]: without chunked prefill vLLM 0.33 refuses maxNumBatchedTokens "
                              "4096 below maxModelLen 16384")
    assert extra_problems(["--disable-chunked-prefill"], maxNumBatchedTokens=16384) == []
    assert extra_problems(["--disable-chunked-prefill"]) == []  # unset: vLLM raises its default to maxModelLen


def test_disable_log_stats_is_refused_only_where_autoscale_reads_the_metrics():
    assert extra_problems(["--disable-log-stats"]) == []
    (problem,) = extra_problems(["--disable-log-stats"], name="llama-8b-multi")
    assert problem.startswith(f"{M}.llama-8b-multi.extraArgs[0]: --disable-log-stats removes vLLM's metrics, and autoscale")


def test_the_existing_refusals_keep_their_messages_and_come_alone():
    """A name problem is reported once: the values after it are not read again as strays."""
    assert extra_problems(["--max-num-seq", "8"]) == [
        f"{M}.mixtral.extraArgs[0]: '--max-num-seq' is not a `vllm serve` option of vLLM 0.33 (the server would exit with "
        "'unrecognized arguments'); did you mean --max-num-seqs?"]
    assert extra_problems(["--swap-space", "4"]) == [
        f"{M}.mixtral.extraArgs[0]: '--swap-space' was removed from vLLM 0.33 and would stop the server; drop it"]


@pytest.mark.parametrize("arg, value", [("--enable-chunked-prefill", True), ("--no-enable-chunked-prefill", False),
                                        ("--disable-chunked-prefill", False), ("--disable-cascade-attn", True),
                                        ("--enable-cascade-attn", False)])
def test_the_parser_reads_enable_and_disable_switches_as_vllm_does(arg, value):
    """vLLM's EnableDisableAction: the switch's own name sets True; `--no-` and the inverse prefix set False."""
    ns = parse(["m", arg])
    dest = "enable_chunked_prefill" if "chunked" in arg else "disable_cascade_attn"
    assert getattr(ns, dest) is value and vllm_parser.parse is parse


