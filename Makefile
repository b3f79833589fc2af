# gretel: one Makefile, no autotools. `make` builds build/gretel; `make test` installs what
# is missing (scripts/deps.sh), then runs unit tests, fuzzers (briefly) and integration tests
# against real servers with an ASan+UBSan build; `make run` starts the proxy.

PREFIX ?= /usr/local
DESTDIR ?=
CC ?= cc
FUZZ_CC ?= clang
FUZZ_SECONDS ?= 5
JOBS ?= $(shell nproc 2>/dev/null || echo 2)

PKGS = libevent libevent_openssl libevent_pthreads openssl libnghttp2 lmdb libpcre2-8 libpsl jansson inih zlib
VERSION := $(shell cat VERSION 2>/dev/null || echo 0.0.0)

WARN = -Wall -Wextra -Werror -Wshadow -Wformat=2 -Wundef -Wstrict-prototypes -Wstack-usage=16384 \
       -Wmissing-prototypes -Wno-missing-field-initializers
BASE_CFLAGS = -std=c17 -D_GNU_SOURCE -g $(WARN) -MMD -MP -Iinclude -DGT_VERSION='"$(VERSION)"' -DGT_RULES_DIR='"$(PREFIX)/share/gretel/rules"'
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS))
PKG_LIBS = $(shell pkg-config --libs $(PKGS)) -lpthread

CFLAGS ?= -O2
SAN = -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer

SRC = $(wildcard src/util/*.c src/http1/*.c src/net/*.c src/proxy/*.c src/rules/*.c src/products/*.c src/store/*.c src/tls/*.c src/lists/*.c src/control/*.c src/cli/*.c)
LIB_SRC = $(filter-out src/cli/main.c,$(SRC))
UNIT_SRC = $(wildcard tests/unit/test_*.c)
FUZZ_SRC = $(wildcard tests/fuzz/fuzz_*.c)

OBJ = $(SRC:%.c=build/obj/%.o)
TOBJ = $(SRC:%.c=build/test/obj/%.o)
TLIB_OBJ = $(LIB_SRC:%.c=build/test/obj/%.o)
UNIT_BIN = $(UNIT_SRC:tests/unit/%.c=build/test/%)
FUZZ_BIN = $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all deps deps-test run test unit fuzz fuzz-quick integration bench bench-rules bench-store bench-mark bench-tls bench-h2 bench-lists install clean format

all: build/gretel

deps:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

build/gretel: $(OBJ)
	$(CC) $(CFLAGS) -o $@ $(OBJ) $(PKG_LIBS)

build/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -c -o $@ $<

# --- test build: sanitizers on, separate objects ---
build/test/gretel: $(TOBJ)
	$(CC) -O1 $(SAN) -o $@ $(TOBJ) $(PKG_LIBS)

build/test/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -O1 $(SAN) $(PKG_CFLAGS) -c -o $@ $<

build/test/test_%: tests/unit/test_%.c $(TLIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) -Wno-stack-usage -O1 $(SAN) $(PKG_CFLAGS) $(shell pkg-config --cflags cmocka) -o $@ $< \
	    $(TLIB_OBJ) $(PKG_LIBS) $(shell pkg-config --libs cmocka)

# --- fuzzers: clang's libFuzzer with ASan+UBSan. The library is compiled once (with
# fuzzer-no-link coverage) into an archive every fuzzer links against. ---
FUZZ_CFLAGS = -std=c17 -D_GNU_SOURCE -g -O1 -Iinclude -DGT_VERSION='"$(VERSION)"' \
    -DGT_RULES_DIR='"$(PREFIX)/share/gretel/rules"' -Wframe-larger-than=16384 \
    -fno-sanitize-recover=all $(PKG_CFLAGS)
FUZZ_OBJ = $(LIB_SRC:%.c=build/fuzz/obj/%.o)

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -fsanitize=fuzzer-no-link,address,undefined -c -o $@ $<

build/fuzz/libgretel.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $(FUZZ_OBJ)

# the whole-proxy fuzzers share an in-process driver (tests/fuzz/proxy_driver.c)
FUZZ_PROXY_BIN = build/fuzz/fuzz_proxy build/fuzz/fuzz_proxy_h2
$(FUZZ_PROXY_BIN): build/fuzz/%: tests/fuzz/%.c tests/fuzz/proxy_driver.c tests/fuzz/proxy_driver.h build/fuzz/libgretel.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
	    tests/fuzz/proxy_driver.c build/fuzz/libgretel.a $(PKG_LIBS)

build/fuzz/fuzz_%: tests/fuzz/fuzz_%.c build/fuzz/libgretel.a
	@mkdir -p $(dir $@)
	$(FUZZ_CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $< \
	    build/fuzz/libgretel.a $(PKG_LIBS)

run:
	@scripts/deps.sh build
	@$(MAKE) --no-print-directory all
	exec build/gretel run

test:
	@scripts/deps.sh test
	@$(MAKE) --no-print-directory -j$(JOBS) build/test/gretel $(UNIT_BIN) $(FUZZ_BIN) build/gretel
	@scripts/run-tests.sh

unit: $(UNIT_BIN)
	@scripts/run-tests.sh unit

fuzz: $(FUZZ_BIN)
	@FUZZ_SECONDS=$${FUZZ_SECONDS:-60} scripts/run-tests.sh fuzz

integration: build/test/gretel
	@scripts/run-tests.sh integration

bench: build/gretel build/bench/rules_bench build/bench/store_bench build/bench/tls_bench
	@scripts/deps.sh bench
	scripts/bench/rules.sh
	$(MAKE) --no-print-directory bench-store bench-mark
	scripts/bench/proxy.sh
	scripts/bench/tls.sh
	scripts/bench/h2page.sh
	scripts/bench/lists.sh

bench-h2: build/gretel
	@scripts/deps.sh bench test
	scripts/bench/h2page.sh

bench-lists:
	scripts/bench/lists.sh

bench-tls: build/gretel build/bench/tls_bench
	@scripts/deps.sh bench
	scripts/bench/tls.sh

bench-mark: build/gretel
	/usr/bin/python3 scripts/bench/mark_latency.py

bench-store: build/bench/store_bench
	@d=$$(mktemp -d) && build/bench/store_bench $$d/store $${PRODUCTS:-1000000}; rm -rf $$d

bench-rules: build/gretel build/bench/rules_bench
	scripts/bench/rules.sh

LIB_OBJ = $(LIB_SRC:%.c=build/obj/%.o)
build/bench/store_bench: scripts/bench/store_bench.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_OBJ) $(PKG_LIBS)

build/bench/lists_bench: scripts/bench/lists_bench.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_OBJ) $(PKG_LIBS)

build/bench/tls_bench: scripts/bench/tls_bench.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_OBJ) $(PKG_LIBS)

build/bench/rules_bench: scripts/bench/rules_bench.c $(LIB_OBJ)
	@mkdir -p $(dir $@)
	$(CC) $(BASE_CFLAGS) $(CFLAGS) $(PKG_CFLAGS) -o $@ $< $(LIB_OBJ) $(PKG_LIBS)

install: build/gretel
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/share/man/man1 \
	    $(DESTDIR)$(PREFIX)/share/gretel/rules $(DESTDIR)$(PREFIX)/etc/gretel
	install -m 755 build/gretel $(DESTDIR)$(PREFIX)/bin/gretel
	install -m 644 docs/gretel.1 $(DESTDIR)$(PREFIX)/share/man/man1/gretel.1
	install -m 644 conf/gretel.conf $(DESTDIR)$(PREFIX)/etc/gretel/gretel.conf
	for f in rules/*.rules; do [ -e "$$f" ] && install -m 644 "$$f" $(DESTDIR)$(PREFIX)/share/gretel/rules/; done; true

format:
	clang-format -i $(SRC) $(wildcard include/gretel/*.h src/*/*.h) $(UNIT_SRC) $(FUZZ_SRC)

clean:
	rm -rf build

-include $(OBJ:.o=.d) $(TOBJ:.o=.d) $(FUZZ_OBJ:.o=.d)
