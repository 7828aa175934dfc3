# Thin wrapper over CMake.  Every target that runs something first installs
# what is missing (scripts/setup.sh, apt-get, only when needed).
BUILD ?= build
ASAN_BUILD ?= build-asan
PREFIX ?= /usr/local
JOBS ?= $(shell nproc 2>/dev/null || echo 2)
MAKEFLAGS += --no-print-directory

.PHONY: all build setup test test-fast demo bench soak fuzz install clean

all: build

setup:
	@bash scripts/setup.sh

$(BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_INSTALL_PREFIX=$(PREFIX) >/dev/null

build: setup $(BUILD)/Makefile
	@cmake --build $(BUILD) -j $(JOBS) -- --no-print-directory --quiet

$(ASAN_BUILD)/Makefile: CMakeLists.txt
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DASAN=ON >/dev/null

build-asan: setup $(ASAN_BUILD)/Makefile
	@cmake --build $(ASAN_BUILD) -j $(JOBS) -- --no-print-directory --quiet

# The whole suite, then again under ASan+UBSan; ends with "N passed, N failed".
test: build build-asan
	@bash scripts/test.sh $(BUILD) $(ASAN_BUILD)

# Only the normal build's suite (for quick iterations).
test-fast: build
	@bash scripts/test.sh $(BUILD)

demo: build
	@bash scripts/demo.sh $(BUILD)

bench: build
	@bash scripts/bench.sh $(BUILD)

# The fault soaks (tests/integ/test_soak*.c) in their long form: storms of
# SIGKILL, scheduler and Redis crashes, a full domain (docs/testing.md).
soak: build
	@VOLQ_SOAK=1 VOLQ_TESTS='test_soak*' VOLQ_TEST_TIMEOUT=3600 bash scripts/test.sh $(BUILD)

# libFuzzer targets of fuzz/ (clang and its fuzzer runtime are installed when
# missing), built into FUZZ_BUILD and run FUZZ_SECONDS each; a crash fails it.
FUZZ_SECONDS ?= 60
FUZZ_BUILD ?= build-fuzz
fuzz:
	@VOLQ_SETUP_EXTRA="clang libclang-rt-dev" bash scripts/setup.sh
	@bash fuzz/run.sh $(FUZZ_BUILD) $(FUZZ_SECONDS)

install: build
	@DESTDIR=$(DESTDIR) cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(FUZZ_BUILD)
