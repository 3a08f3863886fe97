"""`vllm serve`'s command line as vLLM 0.33.0's own parser reads it: the parser lives in stacks/vllm_args.py (the config
checks parse extraArgs with it); the tests import it from here."""

from stacks.vllm_args import FLAGS, TYPES, Refused, catalog, expand, known, parse, parser

__all__ = ["FLAGS", "TYPES", "Refused", "catalog", "expand", "known", "parse", "parser"]
