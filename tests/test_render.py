"""What `make render` writes and prints: where, without secrets, and tables a person can read."""

from __future__ import annotations

import contextlib
import io
import shutil

import yaml

from tools import render
from tools.offline import ROOT


def run_render(args: list[str]) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = render.main(args)
    return code, out.getvalue()


def test_a_config_without_a_stack_renders_under_its_own_name(tmp_path):
    config = tmp_path / "Pulumi.renderedbyname.yaml"
    shutil.copy(ROOT / "Pulumi.dev.yaml", config)
    target = ROOT / "build" / "renderedbyname"
    shutil.rmtree(target, ignore_errors=True)
    try:
        code, _ = run_render(["--config", str(config)])
        assert code == 0 and (target / "manifests.yaml").is_file()
    finally:
        shutil.rmtree(target, ignore_errors=True)
    assert render.stack_name(config) == "renderedbyname"
    assert render.stack_name(tmp_path / "workstation.yaml") == "workstation"


def test_secrets_stay_out_of_the_manifests_and_the_kubectl_line_is_printed(tmp_path):
    code, printed = run_render(["--stack", "prod", "--out", str(tmp_path)])
    assert code == 0
    text = (tmp_path / "manifests.yaml").read_text()
    objects = list(yaml.safe_load_all(text))
    assert "Secret" not in {o["kind"] for o in objects} and "redacted" not in text
    refs = [v["secret"]["secretName"] for o in objects if o["kind"] == "Deployment"
            for v in o["spec"]["template"]["spec"]["volumes"] if "secret" in v]
    assert refs and set(refs) == {"huggingface-token"}  # the Deployments mount the Secret the kubectl line creates
    assert 'kubectl -n llama-serve create secret generic huggingface-token --from-literal=HF_TOKEN="$HF_TOKEN"' in printed


def test_tables_explain_their_columns_align_numbers_and_mark_what_does_not_fit():
    from stacks.plan import format_table
    from tests.conftest import plan_of, stack_raw

    text = format_table(plan_of(stack_raw("dev")))
    assert "  free at load: what an Ollama pod sees free if it loads after every other pod on its GPU" in text
    assert "within free at load less 1024 MiB" in text
    design = [line for line in text.splitlines() if line.startswith("workstation/0  base+chatbot")][0]
    # The bf16 multi-LoRA design does not fit 20 GiB; Ollama's does. vLLM: 14.96 weights + 0.08 LoRA + 4.00 KV + 2.48
    # overhead = 21.52, the overhead being the one-GPU context (0.55) + the profile peak (the forward pass, 2048 tokens x
    # hidden 4096 x 2 B x 18 = 0.28, above the sampler's 14 rows x vocab 128256 x 4 B x 4 + 0.05 = 0.08) + non-torch at
    # TP 1 (0.5) + CUDA graphs of a dense model <= 30B (1.15) = 2.48 GiB.
    assert "15.08          21.52 !" in design
    assert design.split()[-5:] == ["14.96", "0.08", "4.00", "2.48", "20.00"]
    node = [line for line in text.splitlines() if line.startswith("workstation  ")][0]
    assert node.split() == ["workstation", "11.00", "14.00", "36.00", "56.00", "4"]
    header = text.splitlines()[text.splitlines().index("Node plan") + 1]
    assert node.index("11.00") + len("11.00") == header.index("CPU requested") + len("CPU requested")  # right-aligned


def test_the_bench_stack_is_a_valid_plan():
    """make bench renders generated stacks; they must stay valid as the plan's rules tighten."""
    import json

    from stacks.loader import stack_from
    from tools.bench import generated_config

    raw = {k.split(":", 1)[1]: json.loads(v) if v[:1] in "{[" else v for k, v in generated_config(16).items()}
    plan = stack_from(raw).plan
    assert len(plan.vllm) == 16 and all(g.allocated_bytes + plan.vllm_margin_bytes <= g.gpu.capacity_bytes for g in plan.gpus)


def test_render_draws_the_plan_for_every_stack(tmp_path):
    import xml.etree.ElementTree as ET

    from tests.test_validate import STACKS

    for stack in STACKS:
        code, printed = run_render(["--stack", stack, "--out", str(tmp_path / stack)])
        assert code == 0 and "plan.svg" in printed
        svg = (tmp_path / stack / "plan.svg").read_text()
        texts = " ".join(t.text or "" for t in ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}text"))
        plan = yaml.safe_load((tmp_path / stack / "plan.json").read_text())
        for g in plan["gpus"]:
            assert f"{g['node']}/{g['index']}" in texts  # one bar per GPU, labelled
            assert f" of {g['capacityGiB']:.2f} GiB" in texts
        pods = {p["name"].removeprefix("vllm-").removeprefix("ollama-adapter-").removeprefix("ollama-")
                for g in plan["gpus"] for p in g["pods"]}
        assert pods and all(p in texts for p in pods), stack  # pods are named inside their bars


def test_the_readme_pictures_are_current():
    from tools import gen_docs

    for path, svg in gen_docs.plan_pictures().items():
        assert path.read_text() == svg, f"{path.name} is stale: make docs"
