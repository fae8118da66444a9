# mlops-metal: `make demo` and `make test` each do their own set-up on a fresh clone.
SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

VENV        := .venv
PY          := $(VENV)/bin/python
REQ_HASH    := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP       := $(VENV)/.installed-$(REQ_HASH)
INVENTORIES := $(sort $(wildcard inventories/*))
# The example environments rendered and validated (make render, validate, checkov): not local
# (the controller alone) nor e2e (the live tier, which runs the platform for real instead), nor
# an inventory of your own (render it by hand: docs/install.md, section 7).
CLUSTER_ENVS := dev staging prod
CHECKOV_STAMP := $(VENV)/checkov/.installed-$(shell sha256sum requirements-checkov.txt | cut -c1-16)
export PATH := $(CURDIR)/$(VENV)/bin:$(PATH)
export ANSIBLE_CONFIG := $(CURDIR)/ansible.cfg
export ANSIBLE_FORCE_COLOR ?= 0
export PY_COLORS ?= 0

# Debian packages for the test hosts (systemd-nspawn containers) and namespace tests.
HOST_PACKAGES := iproute2 mmdebstrap systemd-container iptables openssh-client
# The services' local stack runs Debian's PostgreSQL 15 binaries (a private cluster, own port).
SERVICES_HOST_PACKAGES := postgresql-15 chromium chromium-driver
SVC_VENV    := .venv-services
SVC_PY      := $(SVC_VENV)/bin/python
SVC_STAMP   := $(SVC_VENV)/.installed-$(shell cat services/requirements.lock services/requirements-test.lock services/pyproject.toml services/dev/pyproject.toml | sha256sum | cut -c1-16)
AF_VENV     := .venv-airflow
AF_STAMP    := $(AF_VENV)/.installed-$(shell sha256sum services/airflow.lock | cut -c1-16)
# Where make demo keeps the local stack's state (PostgreSQL runs as the postgres user, so
# every parent of this directory must be world-searchable).
MLOPS_STATE_DIR ?= $(CURDIR)/.mlops-state
export MLOPS_STATE_DIR

# Molecule scenarios (molecule/<scenario>/), all run by make test: systemd-nspawn containers
# first, then QEMU VMs where the kernel matters. The single-VM scenarios run side by side
# (one emulated CPU each); hosts-multi (three VMs) and api-vip (four) each run alone.
MOLECULE_SCENARIOS := firewall selinux
# Single-VM scenarios, side by side in two waves of at most three VMs, as measured here (246 s and
# 400 s): five emulated VMs on two cores at once were not tried (sshd banners already lagged at three).
MOLECULE_VM_SCENARIOS := common iscsi nfs_server
MOLECULE_VM_SCENARIOS_2 := reset first-run
MOLECULE_MULTI_SCENARIOS := hosts-multi api-vip
VM_HOST_PACKAGES := qemu-system-x86 qemu-utils e2fsprogs
run-scenarios = for scenario in $(1); do \
  start=$$(date +%s); molecule test -s $$scenario || exit 1; \
  echo "molecule $$scenario: $$(( $$(date +%s) - start )) s"; \
done

.PHONY: images bundle e2e e2e-deps e2e-components e2e-up e2e-down e2e-kubelet e2e-cluster airflow-setup bench hadolint molecule molecule-nspawn molecule-vm services-setup services-deps services-test demo-cluster demo-services demo-down host-deps help setup demo test lint yamllint ansible-lint ruff docs docs-check syntax pytest render validate checkov clean

help:
	@echo "make demo    set up, run preflight against this machine, render and validate the prod cluster and platform layers, run the ML platform on loopback"
	@echo "make test    set up, then run every check CI runs"
	@echo "make render  write what the cluster layer would deploy to build/<env>/ (no hosts needed)"
	@echo "make docs    regenerate roles/*/README.md from meta/argument_specs.yml"
	@echo "make molecule-vm  the QEMU scenarios alone (MOLECULE_VM_STRATEGY=linear: stock Ansible, no Mitogen)"
	@echo "make images  build every platform image (IMAGES=\"api ui\" for some), smoke-run each with podman"
	@echo "make bundle  the air-gap bundle (on a connected machine): K3s release, charts, every image, all checked (docs/cluster.md)"
	@echo "make e2e     the live tier: Kubernetes built from its Go modules, up, tested, down (make e2e-up / e2e-down by hand)"
	@echo "make clean   remove the virtualenv and build output"

# Idempotent: the stamp names the hash of requirements.txt, so a changed pin reinstalls.
setup: $(STAMP)
$(STAMP): requirements.txt
	@command -v python3 >/dev/null || { echo "setup: python3 (3.11+) is required" >&2; exit 1; }
	@command -v ip >/dev/null || { echo "setup: iproute2 ('ip') is required: apt-get install iproute2 / dnf install iproute" >&2; exit 1; }
	@python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' || { echo "setup: Python 3.11+ is required for ansible-core 2.19" >&2; exit 1; }
	@python3 -m venv --help >/dev/null 2>&1 || { echo "setup: python3 venv is missing: apt-get install python3-venv" >&2; exit 1; }
	@[ -x $(PY) ] || python3 -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	@rm -f $(VENV)/.installed-* && touch $@
	@echo "setup: tools installed in $(VENV) ($$($(VENV)/bin/ansible --version 2>/dev/null | sed -n 1p))"

# Installed means installed: `dpkg -s` also succeeds for a removed package whose config files remain.
host-deps:
	@missing=$$(for p in $(HOST_PACKAGES); do dpkg-query -W -f='$${db:Status-Status}' $$p 2>/dev/null | grep -qx installed || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "host-deps: installing" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	  else echo "host-deps: missing" $$missing "(install them as root with apt-get)" >&2; exit 1; fi; \
	fi

# services/ has its own virtualenv: MLflow, LightGBM, SHAP and friends pin versions that have
# nothing to do with Ansible's.
services-setup: $(SVC_STAMP)
$(SVC_STAMP): services/requirements.lock services/requirements-test.lock services/pyproject.toml services/dev/pyproject.toml
	@[ -x $(SVC_PY) ] || python3 -m venv $(SVC_VENV)
	$(SVC_PY) -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(SVC_PY) -m pip install --quiet --disable-pip-version-check -r services/requirements.lock -r services/requirements-test.lock
	$(SVC_PY) -m pip install --quiet --disable-pip-version-check --no-deps -e services -e services/dev
	@rm -f $(SVC_VENV)/.installed-* && touch $@

# Airflow only runs the DAG's scheduler side; its tasks call the services venv (see services/dags).
airflow-setup: $(AF_STAMP)
$(AF_STAMP): services/airflow.lock
	@[ -x $(AF_VENV)/bin/python ] || python3 -m venv $(AF_VENV)
	$(AF_VENV)/bin/python -m pip install --quiet --disable-pip-version-check --upgrade pip
	$(AF_VENV)/bin/python -m pip install --quiet --disable-pip-version-check -r services/airflow.lock
	@rm -f $(AF_VENV)/.installed-* && touch $@

services-deps:
	@$(MAKE) --no-print-directory host-deps HOST_PACKAGES="$(SERVICES_HOST_PACKAGES)"

# Unit and live tests of services/: the suite starts its own PostgreSQL, SeaweedFS and MLflow on free loopback ports.
services-test: services-setup services-deps airflow-setup
	cd services && MLOPS_AIRFLOW_BIN=$(CURDIR)/$(AF_VENV)/bin/airflow ../$(SVC_PY) -m pytest

# Measured figures for docs/benchmarks.md (minutes; not part of make test: numbers, not verdicts).
bench: services-setup services-deps
	@$(MAKE) --no-print-directory host-deps HOST_PACKAGES="wrk"
	$(SVC_PY) services/bench/run_bench.py

demo: setup demo-cluster demo-services

demo-cluster: setup
	ansible-playbook playbooks/preflight.yml -i inventories/local
	rm -rf build/prod/manifests build/prod/nodes build/prod/platform
	@$(PY) tools/build_images.py --plan --out build/image-plan
	ansible-playbook playbooks/render.yml -i inventories/prod -e platform_images_dir=$(CURDIR)/build/image-plan >/dev/null
	$(PY) tools/validate_manifests.py build/prod
	@echo; echo "demo: what the cluster and platform layers would put on the prod hosts (make render does every inventory):"
	@cd build/prod && find nodes manifests platform -type f | sort | sed 's/^/  build\/prod\//'
	@echo "  e.g. build/prod/nodes/prod-server2/etc/rancher/k3s/config.yaml:"
	@sed 's/^/    /' build/prod/nodes/prod-server2/etc/rancher/k3s/config.yaml

# The ML platform on loopback: PostgreSQL, SeaweedFS, MLflow, one pipeline run, API and UI.
demo-services: services-setup services-deps
	$(SVC_VENV)/bin/mlops-dev demo up --state "$(MLOPS_STATE_DIR)"

demo-down: services-setup
	$(SVC_VENV)/bin/mlops-dev demo down --state "$(MLOPS_STATE_DIR)"

test: setup host-deps lint docs-check syntax validate checkov pytest services-test molecule images e2e
	@echo "make test: all checks passed"

lint: yamllint ansible-lint ruff hadolint

yamllint: setup
	yamllint --strict .

ansible-lint: setup
	ansible-lint --offline --profile production

ruff: setup
	ruff check .
	ruff format --check .

hadolint: setup
	hadolint services/images/*/Dockerfile

# Every image the platform runs (services/images/images.yml), built from a Debian 12 base we make
# with mmdebstrap, pinned packages and wheels; each smoke-run with podman on loopback. Archives,
# images.txt (ref digest) and images.json go to IMAGES_OUT (copy them to <k3s_airgap_dir>/images/).
IMAGES_OUT ?= build/images
IMAGES_HOST_PACKAGES := mmdebstrap buildah podman uidmap
images: setup
	@$(MAKE) --no-print-directory host-deps HOST_PACKAGES="$(IMAGES_HOST_PACKAGES)"
	@start=$$(date +%s); $(PY) tools/build_images.py --out $(IMAGES_OUT) $(if $(IMAGES),--only $(IMAGES)); \
	echo "images: $$(( $$(date +%s) - start )) s"; cat $(IMAGES_OUT)/images.txt

# The air-gap bundle (docs/cluster.md), on a machine that reaches the K3s releases, the chart
# repositories and the registries: the K3s release checked against its sha256 file, the charts
# against their index, the platform's images (make images) and, with skopeo, every other image of
# the rendered image list. BUNDLE_OUT=<dir> BUNDLE_ENV=<inventory> BUNDLE_ARGS=--arch=arm64
BUNDLE_OUT ?= build/bundle
BUNDLE_ENV ?= prod
bundle: setup images render
	$(PY) tools/build_bundle.py --out $(BUNDLE_OUT) --images-dir $(IMAGES_OUT) \
	  $(if $(wildcard build/$(BUNDLE_ENV)/images.txt),--image-list build/$(BUNDLE_ENV)/images.txt) $(BUNDLE_ARGS)

docs: setup
	$(PY) tools/role_docs.py

docs-check: setup
	$(PY) tools/role_docs.py --check

syntax: setup
	@for inv in $(INVENTORIES); do \
	  echo "syntax-check site.yml -i $$inv"; \
	  ansible-playbook --syntax-check -i $$inv site.yml >/dev/null; \
	  for pb in playbooks/*.yml; do ansible-playbook --syntax-check -i $$inv $$pb >/dev/null; done; \
	done

# Render every example environment, then validate every object strictly (K8s schemas of the
# pinned K3s minor, in-repo CRD schemas, K3s config schema).
# The platform's image references are known without building (tags derive from content):
# rendering needs no `make images`.
render: setup
	@$(PY) tools/build_images.py --plan --out build/image-plan
	@for env in $(CLUSTER_ENVS); do \
	  rm -rf build/$$env/manifests build/$$env/nodes build/$$env/platform; \
	  echo "render inventories/$$env -> build/$$env"; \
	  ansible-playbook playbooks/render.yml -i inventories/$$env -e platform_images_dir=$(CURDIR)/build/image-plan >/dev/null; \
	done

validate: render
	$(PY) tools/validate_manifests.py $(addprefix build/,$(CLUSTER_ENVS))

# checkov pins packaging<24 (pytest 9 needs newer): it lives in its own venv.
$(CHECKOV_STAMP): requirements-checkov.txt
	@[ -x $(VENV)/checkov/bin/python ] || python3 -m venv $(VENV)/checkov
	$(VENV)/checkov/bin/python -m pip install --quiet --disable-pip-version-check -r requirements-checkov.txt
	@rm -f $(VENV)/checkov/.installed-* && touch $@

checkov: render $(CHECKOV_STAMP)
	$(VENV)/checkov/bin/checkov --config-file .checkov.yaml $(addprefix -d build/,$(CLUSTER_ENVS)) -d roles -d playbooks -d services/images

# promtool (Debian's prometheus package, the platform image's version) runs the alert rules' unit
# tests (tests/unit/test_alert_rules.py); a promtool already on PATH, from anywhere, will do. On a
# systemd host the package also enables its own prometheus.service (:9090), as postgresql-15 its cluster.
PYTEST_HOST_PACKAGES := prometheus
pytest: setup
	@command -v promtool >/dev/null || $(MAKE) --no-print-directory host-deps HOST_PACKAGES="$(PYTEST_HOST_PACKAGES)"
	$(PY) -m pytest

# The VM image builds while the container scenarios run: measured cold, 147 s together against
# 80 + 103 s one after the other. molecule-vm then finds it built.
molecule: setup host-deps
	@$(MAKE) --no-print-directory host-deps HOST_PACKAGES="$(VM_HOST_PACKAGES)"
	@mkdir -p build/molecule; start=$$(date +%s); \
	molecule/testhosts/build-vm-image.sh >build/molecule/vm-image.log 2>&1 & image=$$!; \
	rc=0; $(MAKE) --no-print-directory molecule-nspawn || rc=$$?; \
	if wait $$image; then echo "VM image ready $$(( $$(date +%s) - start )) s after the container scenarios started"; \
	else echo "VM image build failed; its log:"; cat build/molecule/vm-image.log; rc=1; fi; exit $$rc
	@$(MAKE) --no-print-directory molecule-vm

molecule-nspawn: setup host-deps
	@$(call run-scenarios,$(MOLECULE_SCENARIOS))

molecule-vm: setup host-deps
	@$(MAKE) --no-print-directory host-deps HOST_PACKAGES="$(VM_HOST_PACKAGES)"
	@# Build (or reuse) the VM image once, before scenarios start in parallel.
	@start=$$(date +%s); molecule/testhosts/build-vm-image.sh >/dev/null && echo "VM image ready in $$(( $$(date +%s) - start )) s"
	@molecule/run-parallel.sh $(MOLECULE_VM_SCENARIOS)
	@molecule/run-parallel.sh $(MOLECULE_VM_SCENARIOS_2)
	@$(call run-scenarios,$(MOLECULE_MULTI_SCENARIOS))

# Live tier (tests/e2e, docs/verification.md): Kubernetes built from its upstream Go modules,
# run on this machine in namespaces of its own. Components and images are cached outside the
# work tree (~/.cache/mlops-metal/e2e), keyed by their inputs.
E2E_HOST_PACKAGES := containerd runc containernetworking-plugins buildah busybox-static gcc libc6-dev curl iproute2 util-linux procps
e2e-deps:
	@$(MAKE) --no-print-directory host-deps HOST_PACKAGES="$(E2E_HOST_PACKAGES)"
	@command -v go >/dev/null || { echo "e2e: Go 1.24+ is required to build the components" >&2; exit 1; }

e2e-components: e2e-deps
	tools/e2e/build-node-images.sh "$$(tools/e2e/build-components.sh)" >/dev/null

# A single-node cluster (control plane, kubelet, CoreDNS, local-path StorageClass, MetalLB; the
# platform images of make images imported into its containerd) and
# its kubeconfig at build/e2e/kubeconfig; e2e-down removes every trace of it.
e2e-up: setup e2e-components images
	tools/e2e/cluster.sh up

e2e-down:
	tools/e2e/cluster.sh down

# First milestone: a standalone kubelet runs a static pod from an image built here.
e2e-kubelet: setup e2e-components
	$(PY) -m pytest -p no:cacheprovider tests/e2e/test_kubelet_standalone.py

# The cluster is real in every part the platform relies on: DNS, volumes, LoadBalancer addresses.
e2e-cluster: setup e2e-components images
	$(PY) -m pytest -p no:cacheprovider tests/e2e/test_cluster.py

# The whole live tier, each step timed (pytest's durations: a fixture's setup is "up", its
# teardown "down"). Measured cold (empty Go caches) ~17 min of builds, then ~1 min of tests.
e2e: setup e2e-components images
	@rm -f build/e2e-timings.txt; start=$$(date +%s); $(PY) -m pytest -p no:cacheprovider --durations=0 --durations-min=0.5 tests/e2e; \
	rc=$$?; cat build/e2e-timings.txt 2>/dev/null; \
	echo "e2e: $$(( $$(date +%s) - start )) s after the components were ready"; exit $$rc

clean:
	rm -rf $(VENV) $(SVC_VENV) $(AF_VENV) build .pytest_cache .ruff_cache
