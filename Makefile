# Thin wrapper over CMake and ctest. See README.md.
SHELL := /bin/bash
JOBS ?= $(shell nproc)
BUILD ?= build
CHECK_BUILD ?= build-check
FUZZ_BUILD ?= build-fuzz
FUZZ_SECONDS ?= 60
DATA ?= ../shared/data

.PHONY: all deps run check bench fuzz lint format clean models

all: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	cmake --build $(BUILD) -j $(JOBS) --target custos custos-mockllm

deps:
	@scripts/bootstrap --check || scripts/bootstrap

run: all
	scripts/run-demo

check: deps
	cmake -S . -B $(CHECK_BUILD) -DCMAKE_BUILD_TYPE=Debug -DCUSTOS_SANITIZE=ON -DCUSTOS_WERROR=ON >/dev/null
	cmake --build $(CHECK_BUILD) -j $(JOBS)
	ctest --test-dir $(CHECK_BUILD) --output-on-failure -j $(JOBS)

bench: all
	bench/proxy

# Rebuilds the shipped harm, shields, grounded and PII tagger models (deterministic) and prints their dev-split and
# hard-negative metrics.
models: all
	$(BUILD)/custos train harm --data $(DATA) --out models/harm.model --dev-out $(BUILD)/harm-dev.jsonl \
		--extra models/data/benign_sensitive.jsonl --extra models/data/everyday.jsonl \
		--extra models/data/identity_benign.jsonl --extra models/data/identity_harm.jsonl
	$(BUILD)/custos eval --task harm --model models/harm.model $(BUILD)/harm-dev.jsonl
	$(BUILD)/custos eval --task harm --model models/harm.model models/data/benign_sensitive_heldout.jsonl
	$(BUILD)/custos eval --task harm --model models/harm.model models/data/everyday_heldout.jsonl
	$(BUILD)/custos train shields --data $(DATA) --out models/shields.model --dev-out $(BUILD)/shields-dev.jsonl \
		--extra models/data/shields_benign_trigger.jsonl --extra models/data/everyday.jsonl \
		--extra models/data/identity_benign.jsonl --extra models/data/everyday.jsonl
	$(BUILD)/custos eval --task attacks --model models/shields.model $(BUILD)/shields-dev.jsonl
	$(BUILD)/custos eval --task attacks --model models/shields.model models/data/shields_benign_trigger_heldout.jsonl
	$(BUILD)/custos eval --task attacks --model models/shields.model models/data/everyday_heldout.jsonl
	$(BUILD)/custos eval --fairness --save || test $$? -eq 3   # models/eval/fairness.json (docs/rai-eval.md)
	$(BUILD)/custos train grounded --data $(DATA) --out models/grounded.model --dev-out $(BUILD)/grounded-dev.jsonl
	$(BUILD)/custos eval --task grounded --model models/grounded.model $(BUILD)/grounded-dev.jsonl
	$(BUILD)/custos train pii --data $(DATA) --out models/pii_ner.model --dev-out $(BUILD)/pii-dev.jsonl
	grep -a '"src":"generated"' $(BUILD)/pii-dev.jsonl > $(BUILD)/pii-dev-generated.jsonl
	grep -av '"src":"generated"' $(BUILD)/pii-dev.jsonl > $(BUILD)/pii-dev-wnut17.jsonl
	$(BUILD)/custos eval --task pii --model models/pii_ner.model $(BUILD)/pii-dev-generated.jsonl
	$(BUILD)/custos eval --task pii --model models/pii_ner.model $(BUILD)/pii-dev-wnut17.jsonl

fuzz: deps
	CC=clang cmake -S . -B $(FUZZ_BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCUSTOS_FUZZ=ON >/dev/null
	cmake --build $(FUZZ_BUILD) -j $(JOBS)
	scripts/run-fuzz $(FUZZ_BUILD) $(FUZZ_SECONDS)

lint: deps
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=Release >/dev/null
	scripts/lint $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h')

clean:
	rm -rf $(BUILD) $(CHECK_BUILD) $(FUZZ_BUILD)
