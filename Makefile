# oml2-server -- see README.md.  The two commands: `make run`, `make test`.

PREFIX		?= /usr/local
BINDIR		?= $(PREFIX)/bin
MANDIR		?= $(PREFIX)/share/man
SHAREDIR	?= $(PREFIX)/share/oml2
SYSCONFDIR	?= $(PREFIX)/etc
LOCALSTATEDIR	?= $(PREFIX)/var
DEFAULT_DATADIR	?= $(LOCALSTATEDIR)/oml2
DESTDIR		?=

CC		?= cc
CFLAGS		?= -O2 -g
WFLAGS		 = -Wall -Wextra -Wshadow -Wmissing-prototypes -Wstrict-prototypes \
		   -Werror
PG_INC		:= $(shell pkg-config --cflags-only-I libpq 2>/dev/null || echo -I/usr/include/postgresql)
XCPPFLAGS	 = -I. $(PG_INC) -D_GNU_SOURCE \
		   -DDEFAULT_DATADIR='"$(DEFAULT_DATADIR)"' \
		   -DSHAREDIR='"$(SHAREDIR)"'
LDLIBS		 = -lsqlite3 -lbsd -lm -ldl -lpthread

# Debian packages: what building needs, what `make run` needs on top (the
# sqlite3 shell, to read what it stored), and what the test suite, the
# benchmarks and the fuzzers need on top of that.  Installing postgresql,
# haproxy and prometheus starts the system's own services; the suite
# leaves them be and runs its own instances on free ports.
DEPS_BUILD	 = make gcc libc6-dev pkg-config libsqlite3-dev libpq-dev libbsd-dev
DEPS_RUN	 = sqlite3
DEPS_TEST	 = clang jq libclang-rt-14-dev bats parallel postgresql postgresql-client \
		   haproxy mandoc procps iproute2 util-linux passwd coreutils \
		   systemd prometheus curl
# ... and what `make bench` compares with, beyond SQLite and PostgreSQL.
DEPS_BENCH	 = curl influxdb victoria-metrics

O		?= obj
COMMON_SRC	 = $(wildcard common/*.c)
PROTO_SRC	 = $(wildcard proto/*.c)
# child/ also holds the mains of the two tools, experiment-process code:
# oml2-import links the child's connection and storage code, oml2-merge
# its storage code, both without child.c, hook.c, report.c or reporter.c.
TOOL_SRC	 = child/import.c child/merge.c
# master/ also holds oml2ctl's main, the client of the master's control
# socket, which links nothing of the server but common/ and proto/.
CTL_SRC		 = master/oml2ctl.c
SERVER_SRC	 = $(filter-out $(CTL_SRC),$(wildcard master/*.c)) \
		   $(filter-out $(TOOL_SRC),$(wildcard child/*.c))
LIB_OBJ		 = $(patsubst %.c,$(O)/%.o,$(COMMON_SRC) $(PROTO_SRC))
SERVER_OBJ	 = $(patsubst %.c,$(O)/%.o,$(SERVER_SRC))
STORE_OBJ	 = $(patsubst %,$(O)/child/%.o,db journal store_sqlite store_pg pqlib stats)
IMPORT_OBJ	 = $(O)/child/import.o $(O)/child/conn.o $(STORE_OBJ) $(LIB_OBJ)
MERGE_OBJ	 = $(O)/child/merge.o $(STORE_OBJ) $(LIB_OBJ)
CTL_OBJ		 = $(O)/master/oml2ctl.o $(LIB_OBJ)
HEADERS		 = $(wildcard common/*.h proto/*.h master/*.h child/*.h)

BINS		 = oml2-server oml2-import oml2-merge oml2ctl
MANS		 = $(patsubst %,man1/%.1,$(BINS))
TOOLS		 = t/omlsend t/unit_proto t/unit_chan

.PHONY: all deps deps-build deps-run deps-bench run test test-unit test-bats test-pg \
	test-asan bench fuzz fuzz-build fuzz-bins test-fuzz test-fresh install uninstall \
	clean lint-man check-clang

all: $(BINS) $(TOOLS)

oml2-server: $(SERVER_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

oml2-import: $(IMPORT_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lmd

oml2-merge: $(MERGE_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

oml2ctl: $(CTL_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

$(O)/%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WFLAGS) $(XCPPFLAGS) $(CPPFLAGS) -c -o $@ $<

t/omlsend: $(O)/t/omlsend.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

t/unit_proto: $(O)/t/unit_proto.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

t/unit_chan: $(O)/t/unit_chan.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

# The benchmark's SQLite baseline inserter and its commit watcher.
t/baseline: $(O)/t/baseline.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lsqlite3 -lpq

# The benchmark's decoders-alone harness.
t/decode: $(O)/t/decode.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

# The benchmark's ceiling: the fastest SQLite inserter it can build.
t/ceiling: $(O)/t/ceiling.o
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lsqlite3 -lpthread

deps-build:
	@sh t/deps.sh $(DEPS_BUILD)

deps-run:
	@sh t/deps.sh $(DEPS_BUILD) $(DEPS_RUN)

deps:
	@sh t/deps.sh $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST)

deps-bench:
	@sh t/deps.sh $(DEPS_BUILD) $(DEPS_RUN) $(DEPS_TEST) $(DEPS_BENCH)

run: deps-run
	@$(MAKE) --no-print-directory all
	@mkdir -p data
	./oml2-server -l 3003 -D ./data --logfile=-

# The whole suite: build with gcc, then every stage: a build with clang,
# unit tests, a short pass of each fuzzer, the bats suite against the
# normal build, its compatibility tests against PostgreSQL (test-pg), and
# the bats suite again against an ASan+UBSan build (any report fails it).
# A stage that fails does not keep the others from running; the last lines
# say how long each took and which failed.
TEST_STAGES	 = check-clang test-unit test-fuzz test-bats test-pg test-asan

test: deps
	@$(MAKE) --no-print-directory all
	@failed=; times=; start=$$(date +%s); \
	for s in $(TEST_STAGES); do \
	    t=$$(date +%s); \
	    $(MAKE) --no-print-directory $$s || failed="$$failed $$s"; \
	    times="$$times $$s $$(($$(date +%s) - t)) s,"; \
	done; \
	echo "make test:$${times%,}; $$(($$(date +%s) - start)) s in all"; \
	set -- $$failed; \
	echo "stages: $$(($(words $(TEST_STAGES)) - $$#)) passed, $$# failed"; \
	[ -z "$$failed" ] || { echo "make test: failed:$$failed" >&2; exit 1; }

# (the benchmark's programs are built too, so that a change that breaks
# them fails here rather than in the next make bench)
test-unit: $(TOOLS) t/baseline t/ceiling t/decode
	./t/unit_proto
	./t/unit_chan

# Bats files run BATS_JOBS at a time (GNU parallel), each file's tests in
# order.  The suite mostly waits (on timers, on its servers), so on 2 cores
# 4 files at a time take a third of the time of one at a time.
BATS_JOBS	?= $(if $(shell command -v parallel),4,1)
BATS		 = bats --timing $(if $(filter-out 1,$(BATS_JOBS)),--jobs $(BATS_JOBS) \
		   --no-parallelize-within-files)

test-bats: all
	$(BATS) t/

# The compatibility tests again, against throwaway PostgreSQL clusters (one
# per file, see t/pg.bash).
test-pg: all
	OML2_BACKEND=postgresql $(BATS) t/20-serve.bats $(wildcard t/5*.bats t/6*.bats) \
	    t/92-import.bats

ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	     -fno-sanitize-recover=all

test-asan:
	@$(MAKE) --no-print-directory O=obj-asan CFLAGS="$(ASAN_FLAGS)" \
	    LDFLAGS="$(ASAN_FLAGS)" SUFFIX=-asan asan-build
	./t/asan/unit_proto
	./t/asan/unit_chan
	OML2_SERVER=$(CURDIR)/t/asan/oml2-server OML2_SANITIZED=1 $(BATS) t/

# (the tests take oml2-import and oml2-merge from beside OML2_SERVER)
asan-build: $(SERVER_OBJ) $(IMPORT_OBJ) $(MERGE_OBJ) $(CTL_OBJ) $(O)/t/unit_proto.o \
	    $(O)/t/unit_chan.o
	@mkdir -p t/asan
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/oml2-server $(SERVER_OBJ) $(LIB_OBJ) $(LDLIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/oml2-import $(IMPORT_OBJ) $(LDLIBS) -lmd
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/oml2-merge $(MERGE_OBJ) $(LDLIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/oml2ctl $(CTL_OBJ) -lbsd -lm
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/unit_proto $(O)/t/unit_proto.o $(LIB_OBJ) -lbsd -lm
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/unit_chan $(O)/t/unit_chan.o $(LIB_OBJ) -lbsd -lm

# libFuzzer harnesses (t/fuzz/): the header reader, the master's sniffer,
# the text and the binary decoders, built with clang and ASan+UBSan.
# `make fuzz` runs each for FUZZ_SECONDS, keeping what it learns in
# t/fuzz/work/NAME; `make test-fuzz` (part of `make test`) runs each for
# FUZZ_SHORT seconds over its committed seed corpus only.
FUZZERS		 = header sniff proxy text binary
FUZZ_SECONDS	?= 600
FUZZ_SHORT	?= 5
FUZZ_CFLAGS	 = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
		   -fno-sanitize-recover=all
FUZZ_OPTS	 = -timeout=10 -rss_limit_mb=2048 -max_len=65536 \
		   -dict=t/fuzz/omsp.dict -print_final_stats=1
FUZZ_BINS	 = $(patsubst %,t/fuzz/bin/fuzz_%,$(FUZZERS))

fuzz-build:
	@$(MAKE) --no-print-directory O=obj-fuzz CC=clang \
	    CFLAGS="$(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link" fuzz-bins

fuzz-bins: $(FUZZ_BINS)

t/fuzz/bin/fuzz_%: $(O)/t/fuzz/fuzz_%.o $(LIB_OBJ)
	@mkdir -p $(@D)
	$(CC) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ -lbsd -lm

$(O)/t/fuzz/fuzz_%.o: t/fuzz/fuzz.h
$(O)/t/unit_proto.o $(O)/t/unit_chan.o: t/check.h
.SECONDARY: $(patsubst %,$(O)/t/fuzz/fuzz_%.o,$(FUZZERS))

fuzz: fuzz-build
	@for f in $(FUZZERS); do \
	    mkdir -p t/fuzz/work/$$f || exit 1; \
	    echo "fuzz_$$f: $(FUZZ_SECONDS) s"; \
	    ./t/fuzz/bin/fuzz_$$f $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
		-artifact_prefix=t/fuzz/work/$$f- t/fuzz/work/$$f \
		t/fuzz/corpus/$$f 2>t/fuzz/work/$$f.log || \
		{ tail -n 60 t/fuzz/work/$$f.log; exit 1; }; \
	    grep -E '^stat::(number_of_executed_units|peak_rss_mb)' \
		t/fuzz/work/$$f.log; \
	done

test-fuzz: fuzz-build
	@for f in $(FUZZERS); do \
	    d=$$(mktemp -d) || exit 1; \
	    ./t/fuzz/bin/fuzz_$$f $(FUZZ_OPTS) -max_total_time=$(FUZZ_SHORT) \
		-artifact_prefix=$$d/ $$d t/fuzz/corpus/$$f >$$d/log 2>&1 || \
		{ tail -n 60 $$d/log; cp $$d/crash-* $$d/leak-* \
		    $$d/timeout-* t/fuzz/ 2>/dev/null; rm -rf $$d; exit 1; }; \
	    echo "fuzz_$$f: $$(sed -n 's/^stat::number_of_executed_units: *//p' \
		$$d/log) runs in $(FUZZ_SHORT) s, no findings"; \
	    rm -rf $$d; \
	done

# README's two commands on a freshly bootstrapped Debian 12, as root and
# as a user, in a chroot (not part of `make test`; root; see t/fresh.sh).
test-fresh:
	bash t/fresh.sh

# Throughput and memory figures (not a test): see README, Performance.
bench: all t/baseline t/ceiling t/decode
	bash t/bench.sh

# Build once more with clang, warnings as errors, into a scratch tree.
check-clang:
	@$(MAKE) --no-print-directory O=obj-clang CC=clang oml2-server-clang

oml2-server-clang: $(SERVER_OBJ) $(IMPORT_OBJ) $(MERGE_OBJ) $(CTL_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o obj-clang/oml2-server $(SERVER_OBJ) $(LIB_OBJ) $(LDLIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o obj-clang/oml2-import $(IMPORT_OBJ) $(LDLIBS) -lmd
	$(CC) $(CFLAGS) $(LDFLAGS) -o obj-clang/oml2-merge $(MERGE_OBJ) $(LDLIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o obj-clang/oml2ctl $(CTL_OBJ) -lbsd -lm

# The systemd unit goes where systemd looks when PREFIX is /usr or
# /usr/local (for another PREFIX, set UNITDIR=/etc/systemd/system), with
# ExecStart naming $(BINDIR); a copy and the other examples (defaults file,
# logrotate, HAProxy) go to $(SHAREDIR).  Nothing is written to /etc.
UNITDIR		?= $(PREFIX)/lib/systemd/system
ETC_EXAMPLES	 = etc/oml2-server.default etc/oml2-server.logrotate etc/haproxy.cfg

install: $(BINS)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(SHAREDIR)
	install -m 0755 $(BINS) $(DESTDIR)$(BINDIR)/
	install -m 0644 $(MANS) $(DESTDIR)$(MANDIR)/man1/
	@mkdir -p $(O)
	sed -e 's|@BINDIR@|$(BINDIR)|g' -e 's|@SHAREDIR@|$(SHAREDIR)|g' \
	    etc/oml2-server.service.in >$(O)/oml2-server.service
	install -d $(DESTDIR)$(UNITDIR)
	install -m 0644 $(O)/oml2-server.service $(DESTDIR)$(UNITDIR)/oml2-server.service
	install -m 0644 $(O)/oml2-server.service $(ETC_EXAMPLES) $(DESTDIR)$(SHAREDIR)/
	sed 's|/usr/local/etc/oml2-server-hook.conf|$(SYSCONFDIR)/oml2-server-hook.conf|' \
	    hooks/oml2-server-hook.sh >$(DESTDIR)$(SHAREDIR)/oml2-server-hook.sh
	chmod 0755 $(DESTDIR)$(SHAREDIR)/oml2-server-hook.sh
	install -d $(DESTDIR)$(SYSCONFDIR)
	[ -e $(DESTDIR)$(SYSCONFDIR)/oml2-server-hook.conf ] || \
	    install -m 0644 etc/oml2-server-hook.conf $(DESTDIR)$(SYSCONFDIR)/oml2-server-hook.conf

uninstall:
	rm -f $(patsubst %,$(DESTDIR)$(BINDIR)/%,$(BINS)) \
	    $(patsubst man1/%,$(DESTDIR)$(MANDIR)/man1/%,$(MANS))
	rm -f $(DESTDIR)$(UNITDIR)/oml2-server.service
	rm -f $(DESTDIR)$(SHAREDIR)/oml2-server.service \
	    $(patsubst etc/%,$(DESTDIR)$(SHAREDIR)/%,$(ETC_EXAMPLES))
	rm -f $(DESTDIR)$(SHAREDIR)/oml2-server-hook.sh \
	    $(DESTDIR)$(SHAREDIR)/oml2-server-hook.conf \
	    $(DESTDIR)$(SYSCONFDIR)/oml2-server-hook.conf
	rmdir $(DESTDIR)$(SHAREDIR) 2>/dev/null || true

clean:
	rm -rf obj obj-asan obj-clang obj-fuzz $(BINS) $(TOOLS) t/asan \
	    t/fuzz/bin t/baseline t/ceiling t/decode
