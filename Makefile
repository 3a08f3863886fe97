# Set-up is part of every target: a fresh clone needs only `make render` and `make test`.
# Python 3.12 is required (llama-stack, used by later stacks, needs it); pyenv's 3.12 is found too.
SHELL := /bin/bash
VENV  ?= .venv
CHECKOV_VENV ?= .venv-checkov
PROMTOOL := .tools/bin/promtool
PY    := $(VENV)/bin/python
STACK ?=
OUT   ?=
CONFIG ?=

# A real 3.12 interpreter: pyenv's own binary first (its shim needs PYENV_VERSION), then PATH.
PYTHON312 ?= $(firstword $(wildcard $(or $(PYENV_ROOT),$(HOME)/.pyenv)/versions/3.12*/bin/python3.12) \
                         $(shell PYENV_VERSION=3.12.1 command -v python3.12 2>/dev/null))

.PHONY: render test e2e e2e-tools docs bench clean venv test-venv catalog smoke status vllm-flags check-vllm-parser calibrate

venv: $(VENV)/.installed
test-venv: $(VENV)/.installed-test

$(VENV)/.installed: requirements.txt
	@if [ -z "$(PYTHON312)" ]; then \
	  echo "error: Python 3.12 not found. Install it (e.g. 'pyenv install 3.12.1') or put python3.12 on PATH." >&2; exit 1; fi
	@PYENV_VERSION=3.12.1 $(PYTHON312) -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null \
	  || { echo "error: $(PYTHON312) is not a working Python 3.12 (with pyenv: PYENV_VERSION=3.12.1)" >&2; exit 1; }
	@echo "creating $(VENV) with $(PYTHON312)"
	@PYENV_VERSION=3.12.1 $(PYTHON312) -m venv $(VENV)
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

# The validators the tests run (llama-stack 0.7.3 and what its server imports); not needed to render or deploy.
$(VENV)/.installed-test: $(VENV)/.installed requirements-test.txt $(CHECKOV_VENV)/.installed $(PROMTOOL)
	@echo "installing the test validators (requirements-test.txt) into $(VENV)"
	@$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt -r requirements-test.txt
	@touch $@

# promtool (checks the alert rules in the tests) of Prometheus 3.16.0, built with Go from its module pinned in
# e2e/go/promtool like the e2e tools (about 4 minutes the first time on 2 cores; rebuilt only when the pin changes).
$(PROMTOOL): e2e/go/promtool/go.mod e2e/go/promtool/go.sum
	@command -v go >/dev/null || { echo "error: building promtool for the tests needs Go 1.26 on PATH" >&2; exit 1; }
	@bash e2e/build-tools.sh promtool && $(PROMTOOL) --version >/dev/null && touch $(PROMTOOL)

# checkov gets a venv of its own: it pins packaging<24, which pulumi (>=26) refuses in one environment.
$(CHECKOV_VENV)/.installed: requirements-checkov.txt
	@echo "installing checkov (requirements-checkov.txt) into $(CHECKOV_VENV)"
	@PYENV_VERSION=3.12.1 $(PYTHON312) -m venv $(CHECKOV_VENV)
	@$(CHECKOV_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@touch $@

render: venv
	@$(PY) -m tools.render $(if $(STACK),--stack $(STACK)) $(if $(OUT),--out $(OUT)) $(if $(CONFIG),--config $(CONFIG))

test: test-venv
	@$(PY) -m pytest -q

# The real Pulumi CLI, engine and pulumi-kubernetes provider against a real Kubernetes 1.34 control plane on 127.0.0.1
# (etcd, kube-apiserver, controller-manager, scheduler, KWOK nodes), every stack or STACK=<name>; the tools are built from
# their Go modules into .tools/bin the first time (e2e/build-tools.sh). KEEP=1 leaves the last cluster running.
# Bounded (40 minutes; all four stacks take about 7): a Deployment that never becomes ready would otherwise hold
# `pulumi up` for its whole start-up budget. On the bound the run stops its clusters (SIGTERM) and fails.
E2E_TIMEOUT ?= 2400
e2e: venv e2e-tools
	@timeout --signal=TERM --kill-after=60 $(E2E_TIMEOUT) $(PY) -m e2e.run $(if $(STACK),--stack $(STACK)) $(if $(KEEP),--keep)

e2e-tools:
	@bash e2e/build-tools.sh

# Adds catalog/hf/<org>--<name>.yaml from the repo's config.json and safetensors metadata (from the Hub), or from a local
# copy without the network: MODEL=<config.json or its directory> [REPO=<org>/<name>] [PARAMS=<billions>].
catalog: venv
	@if [ -z "$(MODEL)" ]; then echo "usage: make catalog MODEL=<hf repo id | local config.json or its directory> [REVISION=<commit>] [REPO=<org>/<name>] [PARAMS=<billions>]" >&2; exit 2; fi
	@$(PY) -m tools.catalog '$(MODEL)' $(if $(REVISION),--revision '$(REVISION)') $(if $(REPO),--repo '$(REPO)') $(if $(PARAMS),--params '$(PARAMS)')

# The live check of a deployed stack (outputs from `pulumi stack output --json`, or ENDPOINTS=<file or URL>).
smoke: venv
	@$(PY) -m tools.smoke $(if $(STACK),--stack $(STACK)) $(if $(ENDPOINTS),--endpoints $(ENDPOINTS)) $(if $(filter 0,$(PORT_FORWARD)),--no-port-forward,$(if $(PORT_FORWARD),--port-forward))

# The stack's pods next to the plan (kubeconfig's current context; ARGS="--service-url svc=URL" for port-forwards).
status: venv
	@$(PY) -m tools.status --stack $(or $(STACK),dev) $(ARGS)

# The plan's vLLM memory terms against published startup logs, or against your own: make calibrate LOG=<file> STACK=<stack>
# [WRITE=1: the plan then uses the log's figures for that model, GPU and settings; ROLE=<server> for an Ollama log]
calibrate: venv
	@$(PY) -m tools.calibrate $(if $(LOG),--log $(LOG)) $(if $(STACK),--stack $(STACK)) $(if $(ROLE),--role $(ROLE)) $(if $(WRITE),--write)

docs: venv
	@$(PY) -m tools.gen_docs --write

clean:
	rm -rf build $(VENV) $(CHECKOV_VENV) .tools

bench: venv
	@$(PY) -m tools.bench

# vLLM's own `vllm serve` parser, where a Python with vllm==0.33.0 is installed (CPU is enough; not part of `make test`,
# which parses with catalog/vllm-flags.json): VLLM_PY=/path/to/python make check-vllm-parser
VLLM_PY ?= python3
vllm-flags:
	@$(VLLM_PY) tools/vllm_flags.py

check-vllm-parser:
	@for s in dev prod lab scale; do $(MAKE) --no-print-directory render STACK=$$s >/dev/null || exit 1; done
	@$(VLLM_PY) tools/vllm_flags.py --check build/dev/manifests.yaml build/prod/manifests.yaml build/lab/manifests.yaml build/scale/manifests.yaml
