# Cinch: the top-level entry points. CMake does the building; this file only
# picks build directories and flags. Every target that builds runs
# scripts/deps.sh first, which installs missing Debian packages (as root)
# and does nothing when they are all present.
#
#   make          release build (gcc, -O2) in build/release
#   make check    deps + ASan/UBSan build (clang, -Werror, fuzzers) + ctest
#                 (-j2: only the two rotation scenarios run side by side,
#                 every other test alone; tests/CMakeLists.txt)
#   make demo     deps + build + the local mesh on this machine
#   make bench    deps (with benchmark peers) + release build + bench/run
#   make images   deps + release build + OCI image archives in build/images
#                 (scripts/images.sh: Debian packages only, no daemon)
#   make fuzz     deps + the check build + every fuzzer for FUZZ_TIME seconds
#                 (600) each, FUZZ_TARGETS to pick some (scripts/fuzz.sh)
#   make fmt      clang-format every C file
#   make policy-model [SEED=N WORLDS=N]  the policy's reference model, long

GENERATOR := $(shell command -v ninja >/dev/null 2>&1 && echo -GNinja)
CTEST_ARGS ?=
RELEASE := build/release
CHECK := build/check

FUZZ_TIME ?= 600
FUZZ_TARGETS ?=

.PHONY: all deps build check fuzz demo demo-down bench images fmt clean

all: build

deps:
	@sh scripts/deps.sh

build: deps
	cmake -S . -B $(RELEASE) $(GENERATOR) -DCMAKE_BUILD_TYPE=RelWithDebInfo \
		-DCINCH_WERROR=ON
	cmake --build $(RELEASE)
	@ln -sf $(RELEASE)/compile_commands.json compile_commands.json

check: deps
	cmake -S . -B $(CHECK) $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_COMPILER=clang -DCINCH_WERROR=ON -DCINCH_SANITIZE=ON -DCINCH_FUZZ=ON
	cmake --build $(CHECK)
	cd $(CHECK) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
		ctest -j2 --output-on-failure --no-tests=error $(CTEST_ARGS)

fuzz: deps
	cmake -S . -B $(CHECK) $(GENERATOR) -DCMAKE_BUILD_TYPE=Debug \
		-DCMAKE_C_COMPILER=clang -DCINCH_WERROR=ON -DCINCH_SANITIZE=ON -DCINCH_FUZZ=ON
	cmake --build $(CHECK)
	FUZZ_TIME=$(FUZZ_TIME) FUZZ_TARGETS="$(FUZZ_TARGETS)" sh scripts/fuzz.sh $(CHECK)

demo: build
	@if [ -x deploy/local/demo.sh ]; then deploy/local/demo.sh; else \
		echo "make demo: the local mesh is not built yet (issue #6); nothing to run." >&2; \
		exit 1; fi

demo-down:
	@if [ -x deploy/local/down.sh ]; then deploy/local/down.sh; else \
		echo "make demo-down: the local mesh is not built yet; nothing to remove." >&2; fi

bench:
	@sh scripts/deps.sh bench
	$(MAKE) build
	@if [ -x bench/run ]; then bench/run; else \
		echo "make bench: no benchmarks are built yet." >&2; exit 1; fi

images: build
	@sh scripts/images.sh --bin $(RELEASE)/bin --out build/images

# The reference model of docs/policy.md against the engine, for as long as
# you like (policy.model in `make check` runs one fixed seed briefly):
#   make policy-model [SEED=N] [WORLDS=N]
SEED ?= $(shell date +%s)
WORLDS ?= 10000
.PHONY: policy-model
policy-model:
	cmake --build $(CHECK) --target policy_model_harness cinchctl
	ASAN_OPTIONS=detect_leaks=1 /usr/bin/python3 tests/unit/policy/model/model.py --seed $(SEED) \
		--worlds $(WORLDS) --harness $(CHECK)/bin/policy_model_harness \
		--cinchctl $(CHECK)/bin/cinchctl

fmt:
	git ls-files '*.c' '*.h' | xargs clang-format -i

clean:
	rm -rf build compile_commands.json
