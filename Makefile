# The commands the README gives. `make up` builds kontena and the demo
# image, starts a one-node grid on this machine and installs the demo stack;
# `make test` runs every test, including the multi-node integration tests on
# the local Docker engine.
BIN ?= bin/kontena
DATA ?= $(CURDIR)/.kontena-data

.PHONY: build up down demo-image test bench-deploy bench-grid bench-stack bench-scheduler bench-dns bench-overlay bench-propagation clean

build:
	CGO_ENABLED=0 go build -trimpath -ldflags='-s -w' -o $(BIN) .

up: build
	BIN=$(BIN) DATA=$(DATA) bash examples/up.sh

down:
	-kill $$(cat $(DATA)/kontena.pid) 2>/dev/null; rm -f $(DATA)/kontena.pid

demo-image:
	bash examples/demo/build-image.sh

test:
	go test -count=1 -timeout 80m ./...

bench-deploy:
	bash bench/deploy.sh

bench-grid:
	bash bench/grid.sh

bench-stack:
	bash bench/stack.sh

bench-scheduler:
	bash bench/scheduler.sh

bench-dns:
	bash bench/dns.sh

bench-overlay:
	bash bench/overlay.sh

bench-propagation:
	bash bench/propagation.sh

clean:
	rm -rf bin $(DATA)
