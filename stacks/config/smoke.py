"""The in-cluster smoke Job (`smoke.job`): `make smoke`'s checks, run by the stack itself inside the cluster."""

from __future__ import annotations

from stacks.config.base import _Model, key

JOB_NAME = "llm-infra-smoke"
"""The Job, its ConfigMap, and the service graph's client whose calls the network policies let through."""
CPU = 0.1
MEMORY_MIB = 128
"""The Job's pod: requests and limits (one Python process calling the Services one after the other)."""


class Smoke(_Model):
    job: bool = False
    """A Job `llm-infra-smoke` that runs `make smoke`'s checks from inside the cluster once every server is up (every
    Service of the service graph called as its clients call it); `pulumi up` waits for it and fails when a check fails,
    and runs it again when the Services change or it failed. It runs in the Llama Stack image, or else the vLLM image
    (both hold Python and httpx), on the node that already pulled it; the network policies let it call every Service."""


def smoke_problems(cfg) -> list[str]:  # cfg: StackConfig (imported by it)
    """The Job needs an image the stack already pulls with Python and httpx: Ollama's has neither."""
    vllm_engine = cfg.ollama is not None and cfg.ollama.engine == "vllm"
    if cfg.smoke.job and cfg.llama_stack is None and not (cfg.vllm is not None and cfg.vllm.models) and not vllm_engine:
        return [f"{key('smoke', 'job')}: the Job runs in the Llama Stack or vLLM image (Python and httpx), and this stack "
                "serves Ollama only, whose image has no Python; set it false and run `make smoke STACK=<stack>` from "
                "outside the cluster (it port-forwards to every Service)"]
    return []
