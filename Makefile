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
WFLAGS		 = -Wall -Wextra -Werror
PG_INC		:= $(shell pkg-config --cflags-only-I libpq 2>/dev/null || echo -I/usr/include/postgresql)
XCPPFLAGS	 = -I. $(PG_INC) -D_GNU_SOURCE \
		   -DDEFAULT_DATADIR='"$(DEFAULT_DATADIR)"' \
		   -DSHAREDIR='"$(SHAREDIR)"'
LDLIBS		 = -lsqlite3 -lpq -lbsd -lm

# Debian packages: what building needs, and what the test suite, the
# benchmarks and the fuzzers need on top.
DEPS_BUILD	 = make gcc libc6-dev pkg-config libsqlite3-dev libpq-dev libbsd-dev
DEPS_TEST	 = clang libclang-rt-14-dev sqlite3 bats postgresql postgresql-client \
		   haproxy mandoc procps iproute2 util-linux passwd coreutils \
		   systemd

O		?= obj
COMMON_SRC	 = $(wildcard common/*.c)
PROTO_SRC	 = $(wildcard proto/*.c)
SERVER_SRC	 = $(wildcard master/*.c child/*.c)
LIB_OBJ		 = $(patsubst %.c,$(O)/%.o,$(COMMON_SRC) $(PROTO_SRC))
SERVER_OBJ	 = $(patsubst %.c,$(O)/%.o,$(SERVER_SRC))
HEADERS		 = $(wildcard common/*.h proto/*.h master/*.h child/*.h)

TOOLS		 = t/omlsend t/unit_proto

.PHONY: all deps deps-build run test test-unit test-bats test-pg test-asan bench \
	fuzz install uninstall clean lint-man check-clang

all: oml2-server $(TOOLS)

oml2-server: $(SERVER_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(O)/%.o: %.c $(HEADERS)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WFLAGS) $(XCPPFLAGS) $(CPPFLAGS) -c -o $@ $<

t/omlsend: $(O)/t/omlsend.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

t/unit_proto: $(O)/t/unit_proto.o $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o $@ $^ -lbsd -lm

deps-build:
	@sh t/deps.sh $(DEPS_BUILD)

deps:
	@sh t/deps.sh $(DEPS_BUILD) $(DEPS_TEST)

run: deps-build
	@$(MAKE) --no-print-directory all
	@mkdir -p data
	./oml2-server -l 3003 -D ./data --logfile=-

# The whole suite: unit tests, then the bats suite against the normal
# build, the compatibility tests against PostgreSQL (test-pg), then the bats
# suite again against an ASan+UBSan build (any report fails it).
test: deps
	@$(MAKE) --no-print-directory all check-clang
	@$(MAKE) --no-print-directory test-unit test-bats test-pg
	@$(MAKE) --no-print-directory test-asan

test-unit: $(TOOLS)
	./t/unit_proto

test-bats: all
	bats --timing t/

# The compatibility tests again, against a throwaway PostgreSQL cluster.
test-pg: all
	OML2_BACKEND=postgresql bash t/pg.bash run bats --timing \
	    t/20-serve.bats $(wildcard t/5*.bats t/6*.bats)

ASAN_FLAGS = -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
	     -fno-sanitize-recover=all

test-asan:
	@$(MAKE) --no-print-directory O=obj-asan CFLAGS="$(ASAN_FLAGS)" \
	    LDFLAGS="$(ASAN_FLAGS)" SUFFIX=-asan asan-build
	./t/asan/unit_proto
	OML2_SERVER=$(CURDIR)/t/asan/oml2-server OML2_SANITIZED=1 bats --timing t/

asan-build: $(SERVER_OBJ) $(LIB_OBJ) $(O)/t/unit_proto.o
	@mkdir -p t/asan
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/oml2-server $(SERVER_OBJ) $(LIB_OBJ) $(LDLIBS)
	$(CC) $(CFLAGS) $(LDFLAGS) -o t/asan/unit_proto $(O)/t/unit_proto.o $(LIB_OBJ) -lbsd -lm

# Build once more with clang, warnings as errors, into a scratch tree.
check-clang:
	@$(MAKE) --no-print-directory O=obj-clang CC=clang oml2-server-clang

oml2-server-clang: $(SERVER_OBJ) $(LIB_OBJ)
	$(CC) $(CFLAGS) $(LDFLAGS) -o obj-clang/oml2-server $^ $(LDLIBS)

install: oml2-server
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(SHAREDIR)
	install -m 0755 oml2-server $(DESTDIR)$(BINDIR)/oml2-server
	install -m 0644 man1/oml2-server.1 $(DESTDIR)$(MANDIR)/man1/oml2-server.1

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/oml2-server $(DESTDIR)$(MANDIR)/man1/oml2-server.1
	-rmdir $(DESTDIR)$(SHAREDIR) 2>/dev/null

clean:
	rm -rf obj obj-asan obj-clang oml2-server $(TOOLS) t/asan
