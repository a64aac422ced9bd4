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

# Unit, property and determinism tests; the swarm sweep runs 200 seeds x 10
# simulated minutes per fencing policy.
test: vet
	$(GO) test -count=1 ./...
	$(GO) run ./cmd/tandem sim --seed 7 --duration 1h --fencing stonith --faults swarm > /dev/null

bench:
	$(GO) test -run '^$$' -bench . -benchtime 3s ./sim/ ./internal/wire/

soak:
	$(GO) test -count=1 -timeout 0 -run 'TestSwarmSweep' ./sim/ -v \
		-sim.first=$(FIRST) -sim.seeds=$(SEEDS) -sim.duration=$(DURATION)
	$(GO) test -count=1 -timeout 0 -run 'TestRapidSchedules' ./sim/ -rapid.checks=$(SEEDS)
