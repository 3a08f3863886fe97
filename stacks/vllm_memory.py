"""vLLM 0.33.0's own GPU memory accounting, term by term, for one tensor-parallel rank.

How the engine sizes its KV cache (vllm 0.33.0 wheel):

- Before it measures anything, each worker creates its CUDA context, NCCL communicators and cuBLAS
  handles, then takes `init_snapshot` (`v1/worker/gpu_worker.py:531-541`): that memory lies
  **outside** the share. `request_memory` (`v1/worker/utils.py:724-770`) sets the share to
  `ceil(total x gpu_memory_utilization)` and refuses to start when the GPU's free memory is lower.
- Inside the share (`determine_available_memory`, `gpu_worker.py:641-757`; `utils/mem_utils.py:
  memory_profiling`, 229-321): the weights, the profile run's transient peak (a forward pass at
  `max_num_batched_tokens`, `gpu_model_runner.py:6132`, then `_dummy_sampler_run`'s fp32 logits for
  min(tokens, max_num_seqs) rows x vocabulary, 5866), non-torch memory that grew since the snapshot,
  and the CUDA-graph estimate subtracted by default (`VLLM_MEMORY_PROFILER_ESTIMATE_CUDAGRAPHS=1`,
  `envs.py:2219`). What is left is the KV cache. `total_consumed` is the whole GPU's drop in free
  memory since the snapshot, so a neighbour loading at the same time is charged to this server.
- `--kv-cache-memory-bytes` returns that size instead (`gpu_worker.py:656-681`), whatever the
  neighbours do; the free-memory check of `request_memory` still runs.
- KV blocks: `available // bytes_per_block` per rank (`v1/core/kv_cache_planning.py:681`), every rank
  cut to the smallest count (1583-1596), one null block held back (170-183, 1533); the only hard
  check is that one `max_model_len` request fits in the rest (`_check_enough_kv_cache_memory`, 50-87).
  Block size 16 (`config/cache.py:185`).

Terms marked *estimate* need a GPU run to settle; `plan.vllmMarginGiB` covers them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from stacks.catalog import GIB, VLLM, HfModel, ModelArch

if TYPE_CHECKING:
    from stacks.calibration import Measured


@dataclass(frozen=True)
class RankMemory:
    """One rank of a vLLM server on one GPU. All figures in bytes."""

    context_bytes: int
    """CUDA context, NCCL buffers, cuBLAS handles: outside the share (estimate)."""
    share_bytes: int
    """ceil(total x gpuMemoryUtilization): the engine's `requested_memory`."""
    weights_bytes: int
    activation_bytes: int
    """Profile forward pass at max_num_batched_tokens (calibrated)."""
    sampler_bytes: int
    """The sampler's fp32 buffers for min(tokens, max_num_seqs) rows x vocabulary (calibrated)."""
    non_torch_bytes: int
    """Memory outside torch's allocator that grows during load and profiling (calibrated)."""
    cudagraph_bytes: int
    """The CUDA graph pool (calibrated on the logs' actual figure)."""
    lora_bytes: int = 0
    """LoRA slots; every rank holds its own copy."""
    moe_bytes: int = 0
    """What an MoE model's profile run peaks above the dense rule (calibrated)."""
    measured_by: str = ""
    """The local calibration entry whose figures replace the calibrated context, peak, non-torch and graphs, if any."""

    @property
    def peak_bytes(self) -> int:
        """The profile run's peak: the forward pass and the sampler run one after the other, so the larger of the two."""
        return max(self.activation_bytes, self.sampler_bytes) + self.moe_bytes

    @property
    def non_kv_bytes(self) -> int:
        return self.weights_bytes + self.peak_bytes + self.non_torch_bytes + self.cudagraph_bytes + self.lora_bytes

    @property
    def kv_bytes(self) -> int:
        """What vLLM would give the KV cache: the share minus everything else in it."""
        return self.share_bytes - self.non_kv_bytes

    @property
    def footprint_bytes(self) -> int:
        """Everything the rank holds on its GPU once started."""
        return self.context_bytes + self.share_bytes


def batch_defaults(capacity_bytes: int, gpu_name: str) -> tuple[int, int]:
    """(max_num_batched_tokens, max_num_seqs) vLLM picks for `vllm serve` when unset
    (`engine/arg_utils.py:get_batch_defaults`, 2940-3006): 8192/1024 on >= 70 GiB GPUs other than A100."""
    if capacity_bytes >= 70 * GIB and "a100" not in gpu_name.lower():
        return 8192, 1024
    return 2048, 256


def non_torch_bytes(tp: int, pp: int = 1) -> int:
    """About 0.5 GiB on one GPU, over 2 GiB with the all-reduce buffers of tensor parallelism, little with pipeline
    parallelism alone (calibrated)."""
    if tp == 1 and pp > 1:
        return round(VLLM.non_torch_gib_pipeline_only * GIB)
    table = dict(VLLM.non_torch_gib_by_tp)
    return round(table.get(tp, max(table.values())) * GIB)


def context_gib(tp: int, pp: int, moe: bool) -> float:
    """CUDA context, NCCL and cuBLAS outside the share (calibrated): more once NCCL joins GPUs, most for MoE models."""
    if tp * pp == 1:
        return VLLM.context_gib_one_gpu
    return VLLM.context_gib_multi_gpu_moe if moe else VLLM.context_gib_multi_gpu


def cudagraph_gib(arch: ModelArch) -> float:
    """The CUDA graph pool (calibrated): by model size, MoE models apart."""
    if arch.moe:
        return VLLM.cudagraph_gib_moe
    return VLLM.cudagraph_gib_dense_large if arch.parameters_b > VLLM.cudagraph_large_above_b else VLLM.cudagraph_gib_dense


def rank_memory(hf: HfModel, weights_bytes: int, tp: int, util: float, capacity_bytes: int, gpu_name: str,
                max_num_batched_tokens: int | None, max_num_seqs: int | None, context_bytes: int,
                lora_bytes: int = 0, last_stage: bool = True, pp: int = 1, measured: Measured | None = None) -> RankMemory:
    """`weights_bytes`: what the rank's stage holds over its `tp` GPUs. `last_stage`: the sampler's profile run happens
    on the last pipeline stage only (`_dummy_sampler_run` needs the logits)."""
    arch: ModelArch = hf.arch
    tokens_default, seqs_default = batch_defaults(capacity_bytes, gpu_name)
    tokens = max_num_batched_tokens or tokens_default
    rows = min(tokens, max_num_seqs or seqs_default)
    if measured is not None:  # a team's own log of this very configuration (stacks/calibration.py local entries)
        return RankMemory(
            context_bytes=context_bytes, share_bytes=math.ceil(capacity_bytes * util),
            weights_bytes=math.ceil(weights_bytes / tp), activation_bytes=round(measured.peak_gib * GIB), sampler_bytes=0,
            non_torch_bytes=round(measured.non_torch_gib * GIB), cudagraph_bytes=round(measured.cudagraph_gib * GIB),
            lora_bytes=lora_bytes, measured_by=measured.source)
    return RankMemory(
        context_bytes=context_bytes,
        share_bytes=math.ceil(capacity_bytes * util),
        weights_bytes=math.ceil(weights_bytes / tp),
        activation_bytes=tokens * arch.hidden * 2 * VLLM.activation_factor,
        sampler_bytes=rows * arch.vocab * 4 * VLLM.sampler_copies + round(VLLM.sampler_extra_gib * GIB) if last_stage else 0,
        non_torch_bytes=non_torch_bytes(tp, pp),
        cudagraph_bytes=round(cudagraph_gib(arch) * GIB),
        lora_bytes=lora_bytes,
        moe_bytes=round(VLLM.moe_activation_gib_per_8k_tokens * GIB * tokens / 8192) if arch.moe else 0,
    )


@dataclass(frozen=True)
class KvBlocks:
    """The KV cache as the engine cuts it into blocks (the same count on every rank)."""

    bytes_per_block: int
    num_blocks: int
    max_model_len: int

    @property
    def usable_blocks(self) -> int:
        """Blocks requests can use: the block pool holds one null block back."""
        return max(0, self.num_blocks - 1)

    @property
    def blocks_per_sequence(self) -> int:
        return math.ceil(self.max_model_len / VLLM.block_size)

    @property
    def full_length_sequences(self) -> int:
        """max_model_len-token sequences the cache holds at once (vLLM's "Maximum concurrency")."""
        return self.usable_blocks // self.blocks_per_sequence

    @property
    def tokens(self) -> int:
        return self.usable_blocks * VLLM.block_size

    @property
    def pinned_bytes(self) -> int:
        """The size to pin with --kv-cache-memory-bytes: whole blocks, so the engine cuts none off."""
        return self.num_blocks * self.bytes_per_block


def kv_blocks(kv_bytes_per_rank: list[int], kv_bytes_per_token_per_rank: list[int], max_model_len: int) -> KvBlocks:
    """Blocks every rank can hold, cut to the smallest count. Pipeline stages hold different layers, so each rank has its
    own bytes per token (one per entry of `kv_bytes_per_rank`); the block size reported is the first rank's."""
    blocks = min(max(0, kv) // (VLLM.block_size * t) for kv, t in zip(kv_bytes_per_rank, kv_bytes_per_token_per_rank))
    return KvBlocks(VLLM.block_size * kv_bytes_per_token_per_rank[0], blocks, max_model_len)
