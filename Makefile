# The two commands a newcomer needs:  make demo  (the whole pipeline on its built-in default)  and  make test.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: help venv test lint demo bench clean

help:
	@echo "make demo   - run the whole pipeline (real ./cifar-100-python if present, else the built-in demo set)"
	@echo "make test   - create .venv, install requirements, run the test suite"
	@echo "make lint   - ruff over the scripts, poc/ and tests/"
	@echo "make bench  - benchmarks (preprocess speed, CPU throughput INT8 vs FP32)"
	@echo "make clean  - remove pipeline outputs (keeps .venv)"

$(PY):
	python3 -m venv $(VENV)

# Re-install only when a requirements file changes.
$(STAMP): requirements.txt requirements-dev.txt | $(PY)
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(PY) -m pytest -q tests

lint: $(STAMP)
	$(VENV)/bin/ruff check .

demo: $(STAMP)
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash pipeline.sh --demo $(if $(CHECKPOINT),--checkpoint "$(CHECKPOINT)")

# Needs the compiled models: run `make demo` first.
bench: $(STAMP)
	$(PY) -m poc.bench_stages
	PATH="$(CURDIR)/$(VENV)/bin:$$PATH" bash benchmark.sh --sweep --e2e_input bench_out/stages/bin_data

clean:
	rm -rf bin_data pic img_label.txt amct_bin_data models dst dst_summary.json dst_fp32 dst_fp32_summary.json \
	       dst_bf16 dst_bf16_summary.json result.json result_fp32.json result_bf16.json benchmark.json benchmark.png bench_out demo-data
