# Tandem — high availability for two Linux hosts, proven in a simulator.
GO ?= go

# make soak: a slice of the seed space, so many machines can split it.
FIRST ?= 1
SEEDS ?= 5000
DURATION ?= 10m

.PHONY: demo test bench soak vet build

demo:
	$(GO) run ./cmd/tandem demo

build:
	$(GO) build -o bin/tandem ./cmd/tandem

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))" || { gofmt -l .; echo "gofmt: files above need formatting"; exit 1; }

# Unit, property and determinism tests; the swarm sweeps run 200 seeds x 10
# simulated minutes per fencing policy, without and with the data path; the
# daemon's packages run again under the race detector.
test: vet
	$(GO) test -count=1 -timeout 30m ./...
	$(GO) test -count=1 -race -timeout 15m ./daemon/...
	$(GO) run ./cmd/tandem sim --seed 7 --duration 1h --fencing stonith --faults swarm > /dev/null
	$(GO) run ./cmd/tandem sim --seed 11 --duration 1h --workload mixed --protocol C --fencing stonith --faults swarm > /dev/null

# Simulator speed (with and without the data path), resync efficiency, and
# the daemon's building blocks against their bare baselines, as ratios.
bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./sim/ ./internal/wire/
	$(GO) test -run '^$$' -bench . -benchtime 2s ./daemon/link/ ./daemon/disk/ ./daemon/nbd/ ./daemon/

soak:
	$(GO) test -count=1 -timeout 0 -run 'TestSwarmSweep' ./sim/ -v \
		-sim.first=$(FIRST) -sim.seeds=$(SEEDS) -sim.duration=$(DURATION)
	TANDEM_RAPID_RANDOM=1 $(GO) test -count=1 -timeout 0 -run 'TestRapidSchedules|TestRapidReplication' ./sim/ -rapid.checks=$(SEEDS)

# The VM suite (vmtests/, see CONTRIBUTING.md): QEMU VMs booted from Debian's
# kernel. vmtest-deps installs the host tools with apt (only those missing);
# the kernel itself is fetched into vmtests/.cache by the tests.
.PHONY: vmtest vmtest-deps
VMTEST_PKGS = qemu-system-x86 busybox-static kmod cpio e2fsprogs xz-utils dmsetup
SUDO = $(shell [ "$$(id -u)" = 0 ] || echo sudo)

vmtest-deps:
	@missing=""; for p in $(VMTEST_PKGS); do \
		dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
		echo "vmtest-deps: installing$$missing"; \
		$(SUDO) apt-get update -qq && \
		$(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi; \
	PATH="$$PATH:/usr/sbin:/sbin"; \
	for c in qemu-system-x86_64 busybox modprobe depmod mke2fs xz dmsetup cpio; do \
		command -v $$c >/dev/null || { echo "vmtest-deps: $$c still missing"; exit 1; }; \
	done

vmtest: vmtest-deps
	TANDEM_VMTEST=1 $(GO) test -count=1 -timeout 30m -v ./vmtests/...
