# Remote Support Suite. `make run` starts the suite on SQLite under var/; `make test` runs every test.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PROTOS := $(shell find protos -name '*.proto')
GEN_STAMP := gen/.stamp

.PHONY: all venv gen lint run test node-deps bench proof certs up down clean

all: gen

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	mkdir -p gen/remotesupport && touch gen/remotesupport/__init__.py
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

venv: $(STAMP)

# google/api's annotations (field_behavior, resource) come from the installed googleapis-common-protos: copied
# under gen/third_party for protoc and buf to resolve the imports; their Python code is that package's own.
THIRD_PARTY := gen/third_party
GOOGLE_API_PROTOS := field_behavior resource

$(GEN_STAMP): $(STAMP) $(PROTOS)
	rm -rf gen/remotesupport $(THIRD_PARTY) && mkdir -p gen $(THIRD_PARTY)/google/api
	api=$$($(PY) -c 'import os, google.api.field_behavior_pb2 as m; print(os.path.dirname(m.__file__))') && \
	  for p in $(GOOGLE_API_PROTOS); do cp "$$api/$$p.proto" $(THIRD_PARTY)/google/api/; done
	$(PY) -m grpc_tools.protoc -Iprotos -I$(THIRD_PARTY) --python_out=gen --pyi_out=gen --grpc_python_out=gen $(PROTOS)
	find gen/remotesupport -type d -exec touch {}/__init__.py \;
	touch $(GEN_STAMP)

gen: $(GEN_STAMP)

lint: gen
	$(VENV)/bin/buf lint

run: gen
	$(PY) -m services.kit.supervisor

NODE_DIR := tests/e2e/node
$(NODE_DIR)/node_modules/.package-lock.json: $(NODE_DIR)/package-lock.json
	cd $(NODE_DIR) && npm ci --no-audit --no-fund --silent

node-deps: $(NODE_DIR)/node_modules/.package-lock.json

test: gen lint node-deps
	$(PY) -m pytest -q $(PYTEST_ARGS)

proof: gen
	RS_PROOF=full $(PY) -m pytest -q tests/proof $(PYTEST_ARGS)

bench: gen
	$(PY) -m pip install --quiet -e '.[bench]'
	npm ci --prefix bench/peers --no-audit --no-fund
	$(PY) -m bench.run --profile $(BENCH_ARGS)

certs: $(STAMP)
	$(PY) -m services.kit.certs --out var/certs

up: certs
	$(PY) deploy/make_secrets.py
	docker compose --env-file deploy/secrets/compose.env up -d --build --wait

down:
	docker compose down

clean:
	rm -rf gen $(VENV) var
