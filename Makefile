# The two commands a newcomer needs:  make demo  (the whole pipeline on its built-in default)  and  make test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv test test-quick lint demo bench clean mmdeploy-venv test-mmdeploy

help:
	@echo "make demo   - run the whole pipeline (real ./cifar-100-python if present, else the built-in demo set);"
	@echo "              PROFILE=ms-resnet50-plain-cifar10 for the shortcut-free ResNet-50 on CIFAR-10"
	@echo "make test   - create .venv, install requirements, run the test suite"
	@echo "make test-quick  - the fast tests only, for the edit-test loop"
	@echo "make lint   - ruff over the scripts, poc/ and tests/"
	@echo "make mmdeploy-venv  - the optional mmdeploy exporter's own venv (.venv-mmdeploy, requirements-mmdeploy.txt)"
	@echo "make test-mmdeploy  - the mmdeploy-vs-native export tests, in that venv (CI runs it)"
	@echo "make bench  - benchmarks (preprocess speed, CPU throughput INT8 vs FP32)"
	@echo "make clean  - remove what the toolkit wrote, for every profile (keeps .venv and your own files)"

$(PY):
	python3 -m venv $(VENV)

# Re-install only when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

# One worker per core, a test file per worker at a time (a file's fixtures are built once, on its worker).
test: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile tests

# The edit-test loop: the tests that start no other process and build no demo model (conftest.py says which).
test-quick: $(STAMP)
	$(PY) -m pytest -q -n auto --dist loadfile -m "not slow" tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash pipeline.sh --demo $(if $(PROFILE),--profile "$(PROFILE)") \
	    $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)")

# Needs the compiled models: run `make demo` first.
bench: $(STAMP)
	$(PY) -m poc.bench_stages
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash benchmark.sh --sweep --e2e_input bench_out/stages/bin_data

# The OpenMMLab stack pins protobuf<=3.20.2 (so onnx 1.17, onnxruntime 1.26) and needs torchvision, which does not
# import beside the torch pin: it gets its own venv, torch's CPU wheel and an import-only torchvision stand-in.
MMD_VENV := .venv-mmdeploy
MMD_STAMP := $(MMD_VENV)/.installed

$(MMD_STAMP): requirements-mmdeploy.txt tools/torchvision_stub/torchvision/__init__.py
	python3 -m venv $(MMD_VENV)
	$(MMD_VENV)/bin/python -m pip install --quiet torch==2.13.0
	$(MMD_VENV)/bin/python -m pip install --quiet -r requirements-mmdeploy.txt
	echo "$(CURDIR)/tools/torchvision_stub" > "$$($(MMD_VENV)/bin/python -c 'import site; print(site.getsitepackages()[0])')/torchvision_stub.pth"
	$(MMD_VENV)/bin/python -c "import mmdeploy, mmpretrain, torch; print('mmdeploy', mmdeploy.__version__, 'torch', torch.__version__)"
	touch $(MMD_STAMP)

mmdeploy-venv: $(MMD_STAMP)

test-mmdeploy: $(MMD_STAMP)
	POC_REQUIRE_MMDEPLOY=1 PYTHON="$(CURDIR)/$(MMD_VENV)/bin/python" $(MMD_VENV)/bin/python -m pytest -q -p no:cacheprovider \
	    tests/test_model_export.py -k mmdeploy

# Only what the toolkit wrote, for every profile: a file of yours in bin_data/ or models/ stays (python3 -m poc.clean
# --dry_run lists it all first).
clean:
	$(if $(wildcard $(PY)),$(PY),python3) -m poc.clean
