# podgate — see README.md. Every target is safe to run on a fresh machine of
# this kind: what a target needs, it builds or installs (as root).

SHELL := /bin/bash
GO ?= go
LC := ./bin/localcluster
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.6.1
OVERLAY ?= deploy/overlays/local
# The kubectl the local cluster harness built (it matches the cluster), else
# kubectl from PATH; the local cluster's kubeconfig unless KUBECONFIG is set.
KUBECTL_CACHED := $${XDG_CACHE_HOME:-$$HOME/.cache}/podgate/bin/k8s-v1.33.13/kubectl
KUBECTL ?= $(shell k=$(KUBECTL_CACHED); [ -x "$$k" ] && echo "$$k" || command -v kubectl || echo kubectl)
KUBECTL_ENV := KUBECONFIG=$${KUBECONFIG:-/var/lib/podgate-localcluster/admin.kubeconfig}
export PATH := $(shell go env GOPATH)/bin:$(PATH)

.PHONY: all build deps hostcheck test test-unit lint fmt vet staticcheck cluster-up cluster-kwok cluster-down cluster-status cluster-check run bench bench-scale chaos image deploy rules-test clean

all: build

## build: compile podgate and the cluster harness into bin/
build:
	$(GO) build -o bin/podgate ./cmd/podgate
	$(GO) build -o bin/localcluster ./cmd/localcluster

bin/localcluster: $(shell find cmd/localcluster internal/testenv/localcluster -name '*.go' 2>/dev/null)
	$(GO) build -o $@ ./cmd/localcluster

## run: podgate on the local cluster (brought up if needed) in demo auth mode; prints the ssh line
run: build
	./hack/run.sh

## deps: install (as root) the Debian packages of every missing host tool on internal/testenv/hosttools/tools.tsv
deps:
	./hack/deps.sh

## hostcheck: pre-flight: fail naming each host tool on the list that is missing, with its Debian package
hostcheck:
	./hack/deps.sh check

## cluster-up: bring up the local single-node cluster (builds binaries and images once); KWOK_NODES=100 adds KWOK with 100 fake nodes
cluster-up: bin/localcluster
	$(LC) up $(if $(KWOK_NODES),-kwok-nodes $(KWOK_NODES))

## cluster-kwok: give the running local cluster exactly KWOK_NODES fake nodes (KWOK started if needed; KWOK_NODES=0 removes them and KWOK)
cluster-kwok: bin/localcluster
	$(LC) kwok -nodes $(or $(KWOK_NODES),0)

## cluster-down: stop the local cluster and remove everything it created
cluster-down: bin/localcluster
	$(LC) down

## cluster-status: kubeconfig path, node state and images of the local cluster
cluster-status: bin/localcluster
	$(LC) status

## cluster-check: prove up, refusal of a second cluster, recovery after SIGKILL, and a clean down
cluster-check: bin/localcluster
	./hack/cluster-check.sh

## test: lint, rule tests, unit tests, then every integration/e2e test on a real cluster (local, or KUBECONFIG)
test: deps hostcheck lint rules-test bin/localcluster
	@st=$$($(LC) status); if [ -z "$$KUBECONFIG" ] && ! grep -q '^cluster: running' <<<"$$st"; then ./hack/cluster-check.sh; fi
	./hack/with-cluster.sh $(GO) test -race -count=1 -p 1 -timeout 60m ./...

## test-unit: the tests that need no cluster (the others skip)
test-unit:
	PODGATE_TEST_NO_CLUSTER=1 $(GO) test -race -count=1 ./...

## chaos: every chaos scenario at full size (disruptive fault scenarios under the exclusive cluster lock), all fuzz targets for 10+ minutes, report in chaos/results/
chaos: deps hostcheck bin/localcluster
	./hack/chaos.sh

## rules-test: promtool check/test of the Prometheus rules (builds promtool from the Go module proxy once)
rules-test:
	./deploy/prometheus/test.sh

## image: build podgate's image (the Dockerfile's content, without Docker) and import it into the local cluster
image:
	./deploy/image/build.sh

## deploy: apply OVERLAY (default deploy/overlays/local; run `make image` first) and wait for the rollout
deploy:
	$(KUBECTL_ENV) $(KUBECTL) apply -k $(OVERLAY)
	$(KUBECTL_ENV) $(KUBECTL) -n podgate rollout status deployment/podgate --timeout=3m

## lint: gofmt, go vet and staticcheck
lint: fmt vet staticcheck

fmt:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

staticcheck:
	$(GO) run $(STATICCHECK) ./...

## bench: end-to-end benchmark (report, CSV, plots in bench/results) on a real cluster (local, brought up if needed, or KUBECONFIG); BENCH_QUICK=1 for the reduced run
bench: deps hostcheck bin/localcluster
	mkdir -p bench/results
	set -o pipefail; PODGATE_TEST_NO_CLUSTER=1 $(GO) test -run '^$$' -bench . -benchmem $(if $(filter 1,$(BENCH_QUICK)),-benchtime 200ms) ./pool/ ./sshfront/ ./sshfront/recording/ | tee bench/results/micro-$$(date -u +%Y-%m-%d-%H%M).txt
	$(GO) build -o bin/podgate-bench ./bench/cmd/podgate-bench
	./hack/with-cluster.sh ./bin/podgate-bench $(if $(filter 1,$(BENCH_QUICK)),-quick)

## bench-scale: scale benchmark (issue 16): 3 replicas, pools of 20, 500 and 5,000 pods on SCALE_NODES (100) KWOK fake nodes of the local cluster (brought up if needed); report, CSV, plots and profiles in bench/results/scale. SCALE_SIZES=20,200 for a short run. Needs the cluster to itself.
bench-scale: deps hostcheck bin/localcluster
	$(GO) build -o bin/podgate-bench-scale ./bench/cmd/podgate-bench-scale
	env -u KUBECONFIG SCALE_NODES=$(or $(SCALE_NODES),100) SCALE_SIZES=$(SCALE_SIZES) ./hack/with-cluster.sh ./hack/bench-scale.sh $(SCALE_ARGS)

clean:
	rm -rf bin
