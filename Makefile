# pmpgate - see README.md and INSTALL.
#
#   make              build pmpgated, pmpgate-credentials, pmpgate
#   make check        unit tests (plain, ASan/UBSan, valgrind) + integration
#   make demo         the whole story against real local services
#   make install DESTDIR=...   (GNU path variables below set the defaults)
#   make deps         install the Debian packages (as root)

VERSION := 0.1.0

PREFIX        ?= /usr/local
EXEC_PREFIX   ?= $(PREFIX)
BINDIR        ?= $(EXEC_PREFIX)/bin
SBINDIR       ?= $(EXEC_PREFIX)/sbin
LIBDIR        ?= $(EXEC_PREFIX)/lib
DATADIR       ?= $(PREFIX)/share
MANDIR        ?= $(DATADIR)/man
DOCDIR        ?= $(DATADIR)/doc/pmpgate
SYSCONFDIR    ?= /etc
LOCALSTATEDIR ?= /var
RUNSTATEDIR   ?= /run
UNITDIR       ?= $(LIBDIR)/systemd/system
SECUREDIR     ?= $(LIBDIR)/security

CC      ?= cc
CFLAGS  ?= -O2 -g
BUILD   ?= build
PYTHON  ?= /usr/bin/python3

PG_CPPFLAGS := -D_GNU_SOURCE -D_FORTIFY_SOURCE=2 \
	-DPG_SYSCONFDIR='"$(SYSCONFDIR)"' \
	-DPG_LOCALSTATEDIR='"$(LOCALSTATEDIR)"' \
	-DPG_RUNSTATEDIR='"$(RUNSTATEDIR)"' \
	-DPG_VERSION='"$(VERSION)"'
PG_CFLAGS := -std=c11 -Wall -Wextra -Werror -Wshadow -Wformat=2 \
	-Wstrict-prototypes -Wmissing-prototypes \
	-fstack-protector-strong -fPIC -fno-strict-aliasing
PG_LDFLAGS := -pie -Wl,-z,relro,-z,now -Wl,--as-needed



ifeq ($(SANITIZE),1)
  CC := clang
  BUILD := build-asan
  CFLAGS := -O1 -g -fno-omit-frame-pointer \
	-fsanitize=address,undefined -fno-sanitize-recover=all
  PG_LDFLAGS += -fsanitize=address,undefined
endif

DAEMON_LIBS := -lldap -llber -lcurl -lssl -lcrypto -ljansson -lexpat -lpthread
CLIENT_LIBS := -ljansson

CORE_SRC   := $(sort $(wildcard core/*.c))
CLIENT_SRC := $(sort $(wildcard client/*.c)) core/err.c
DAEMON_SRC := $(sort $(wildcard daemon/*.c))
HELPER_SRC := $(sort $(wildcard helper/*.c))
TOOLS_SRC  := $(sort $(wildcard tools/*.c))
MODULE_SRC := $(sort $(wildcard module/*.c))
# The audit chain (canonical form, hashes, signatures) is shared by the
# daemon's writer and pmpgate's verifier.
TOOLS_CORE := $(wildcard core/auditchain.c)
UNIT_SRC   := $(sort $(wildcard tests/unit/test_*.c))
PROBE_SRC  := $(sort $(wildcard tests/probe/*.c))

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))

CORE_LIB   := $(BUILD)/libpgcore.a
CLIENT_LIB := $(BUILD)/libpgclient.a
PAM_MODULE := $(if $(MODULE_SRC),$(BUILD)/pam_pmpgate.so)
BINS := $(BUILD)/pmpgated $(BUILD)/pmpgate-credentials $(BUILD)/pmpgate \
	$(PAM_MODULE)
UNIT_BINS := $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
PROBE_BINS := $(patsubst tests/probe/%.c,$(BUILD)/probe/%,$(PROBE_SRC))

.PHONY: probes all check unit unit-asan unit-valgrind integration demo deps \
	install clean bench
all: $(BINS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(PG_CPPFLAGS) $(CPPFLAGS) $(PG_CFLAGS) $(CFLAGS) -MMD -MP -c -o $@ $<

$(CORE_LIB): $(call obj,$(CORE_SRC))
	rm -f $@ && ar rcs $@ $^
$(CLIENT_LIB): $(call obj,$(CLIENT_SRC))
	rm -f $@ && ar rcs $@ $^

$(BUILD)/pmpgated: $(call obj,$(DAEMON_SRC)) $(CORE_LIB) $(CLIENT_LIB)
	$(CC) $(PG_LDFLAGS) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS)
$(BUILD)/pmpgate-credentials: $(call obj,$(HELPER_SRC)) $(CLIENT_LIB)
	$(CC) $(PG_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS)
$(BUILD)/pmpgate: $(call obj,$(TOOLS_SRC) $(TOOLS_CORE)) $(CLIENT_LIB)
	$(CC) $(PG_LDFLAGS) $(LDFLAGS) -o $@ $^ $(CLIENT_LIBS) \
		$(if $(TOOLS_CORE),-lcrypto)
# The PAM module: libpam, libc and Jansson only; only pam_sm_* exported.
$(BUILD)/pam_pmpgate.so: $(call obj,$(MODULE_SRC)) $(CLIENT_LIB) module/pam_pmpgate.map
	$(CC) -shared -Wl,-z,relro,-z,now -Wl,--as-needed \
		-Wl,--version-script=module/pam_pmpgate.map $(LDFLAGS) \
		$(PAM_LDFLAGS) -o $@ $(filter %.o %.a,$^) -lpam -ljansson

$(BUILD)/tests/%: $(BUILD)/tests/unit/%.o $(CORE_LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PG_LDFLAGS) $(LDFLAGS) -o $@ $^ -lcmocka $(DAEMON_LIBS)

# Probes: small drivers that call one core/ module against the real
# services of the harness (integration tests of core/ below the daemon).
$(BUILD)/probe/%: $(BUILD)/tests/probe/%.o $(CORE_LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(PG_LDFLAGS) $(LDFLAGS) -o $@ $^ $(DAEMON_LIBS)

probes: $(PROBE_BINS)

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# ---- tests ---------------------------------------------------------------

unit: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== $$t"; \
		PG_TEST_DATA=$(CURDIR)/tests/unit/data $$t; done

unit-asan:
	$(MAKE) SANITIZE=1 unit

unit-valgrind: $(UNIT_BINS)
	@set -e; for t in $(UNIT_BINS); do echo "== valgrind $$t"; \
		PG_TEST_DATA=$(CURDIR)/tests/unit/data valgrind -q \
		--error-exitcode=99 --leak-check=full --errors-for-leak-kinds=definite \
		$$t >/dev/null; done

integration: all probes
	$(MAKE) SANITIZE=1 build-asan/pam_pmpgate.so
	cd tests/integration && PMPGATE_BUILD=$(CURDIR)/$(BUILD) \
		$(PYTHON) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

# The daemon and clients under ASan+UBSan through the main end-to-end
# suites: any sanitizer report fails the run.
ASAN_SUITES := test_issuing.py test_separation.py test_audit_daemon.py \
	test_cache.py test_hostile.py test_peers.py test_imds.py
integration-asan:
	$(MAKE) SANITIZE=1 all probes
	cd tests/integration && PMPGATE_BUILD=$(CURDIR)/build-asan \
		$(PYTHON) -m pytest -q -p no:cacheprovider $(ASAN_SUITES)

check: deps-check unit unit-asan unit-valgrind integration integration-asan fuzz-smoke

demo: deps-check all
	PMPGATE_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) tests/harness/demo.py

bench: deps-check all
	PMPGATE_BUILD=$(CURDIR)/$(BUILD) $(PYTHON) bench/run.py

# ---- dependencies ----------------------------------------------------------

deps:
	sh .ci/deps.sh install

deps-check:
	@sh .ci/deps.sh check

# ---- install ---------------------------------------------------------------

install: all
	install -d -m 0755 $(DESTDIR)$(SBINDIR) $(DESTDIR)$(BINDIR)
	install -m 0755 $(BUILD)/pmpgated $(DESTDIR)$(SBINDIR)/pmpgated
	install -m 0755 $(BUILD)/pmpgate-credentials $(DESTDIR)$(BINDIR)/pmpgate-credentials
	install -m 0755 $(BUILD)/pmpgate $(DESTDIR)$(BINDIR)/pmpgate
	$(if $(PAM_MODULE),install -d -m 0755 $(DESTDIR)$(SECUREDIR))
	$(if $(PAM_MODULE),install -m 0644 $(PAM_MODULE) $(DESTDIR)$(SECUREDIR)/pam_pmpgate.so)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/pmpgate
	install -m 0640 conf/pmpgate.conf.example $(DESTDIR)$(SYSCONFDIR)/pmpgate/pmpgate.conf.example
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	sed -e 's|@SBINDIR@|$(SBINDIR)|g' -e 's|@SYSCONFDIR@|$(SYSCONFDIR)|g' \
		-e 's|@LOCALSTATEDIR@|$(LOCALSTATEDIR)|g' -e 's|@RUNSTATEDIR@|$(RUNSTATEDIR)|g' \
		conf/systemd/pmpgated.service > $(DESTDIR)$(UNITDIR)/pmpgated.service
	chmod 0644 $(DESTDIR)$(UNITDIR)/pmpgated.service
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 0644 docs/man/pmpgated.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 docs/man/pmpgate-credentials.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 docs/man/pmpgate.8 $(DESTDIR)$(MANDIR)/man8/
	install -m 0644 docs/man/pmpgate.conf.5 $(DESTDIR)$(MANDIR)/man5/
	$(if $(PAM_MODULE),install -m 0644 docs/man/pam_pmpgate.8 $(DESTDIR)$(MANDIR)/man8/)
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/logrotate.d
	sed -e 's|/var/log/pmpgate|$(LOCALSTATEDIR)/log/pmpgate|g' \
		conf/logrotate.d/pmpgate > $(DESTDIR)$(SYSCONFDIR)/logrotate.d/pmpgate
	chmod 0644 $(DESTDIR)$(SYSCONFDIR)/logrotate.d/pmpgate
	install -d -m 0755 $(DESTDIR)$(DOCDIR)/examples/iam
	install -m 0644 conf/iam/*.json $(DESTDIR)$(DOCDIR)/examples/iam/
	install -d -m 0755 $(DESTDIR)$(DOCDIR)/examples/pam.d
	install -m 0644 conf/pam.d/* $(DESTDIR)$(DOCDIR)/examples/pam.d/
	install -d -m 0755 $(DESTDIR)$(DOCDIR)
	install -m 0644 README.md INSTALL docs/*.md $(DESTDIR)$(DOCDIR)/

clean:
	rm -rf build build-asan build-fuzz

# ---- fuzzing (tests/fuzz) ----------------------------------------------------
# libFuzzer harnesses built with ASan+UBSan, each linking the core/ and
# client/ sources it exercises directly.  `make fuzz` builds them into
# build-fuzz/; `make fuzz-smoke` runs each from its seed corpus
# (tests/fuzz/corpus/NAME/) for FUZZ_RUNS_NAME inputs (at most
# FUZZ_SECONDS), new inputs going to a
# scratch directory, and fails on any crash, leak, timeout or sanitizer
# report (the reproducer is kept in build-fuzz/NAME-artifacts/).
FUZZ_CC      ?= clang
FUZZ_BUILD   := build-fuzz
FUZZ_SECONDS ?= 300
# make check runs a fixed number of inputs from a fixed seed, so that a
# smoke run is the same on every machine (a finding reproduces); `make
# fuzz-smoke FUZZ_SEED=0` draws a new seed.
FUZZ_SEED ?= 1
FUZZ_RUNS_config := 60000
FUZZ_RUNS_proto  := 1000000
FUZZ_RUNS_ticket := 1000000
FUZZ_RUNS_sts    := 300000
FUZZ_RUNS_audit  := 40000
FUZZ_CFLAGS  := -std=c11 -g -O1 -fno-omit-frame-pointer \
	-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
	-Wall -Wextra -Werror -Wshadow -Wformat=2 -Wstrict-prototypes \
	-Wmissing-prototypes -fno-strict-aliasing
FUZZ_CPPFLAGS := $(filter-out -D_FORTIFY_SOURCE=2,$(PG_CPPFLAGS))
FUZZ_NAMES   := config proto ticket sts audit
FUZZ_BINS    := $(patsubst %,$(FUZZ_BUILD)/fuzz_%,$(FUZZ_NAMES))

FUZZ_SRC_config := core/config.c core/secret.c core/err.c core/log.c
FUZZ_SRC_proto  := client/proto.c core/err.c
FUZZ_SRC_ticket := core/tickets.c core/jsonptr.c core/timefmt.c \
	core/config.c core/secret.c core/http.c core/deadline.c core/err.c \
	core/log.c
FUZZ_SRC_sts    := core/sts.c core/timefmt.c core/http.c core/awscreds.c \
	core/secret.c core/deadline.c core/err.c core/log.c
FUZZ_SRC_audit  := core/auditchain.c core/err.c
FUZZ_LIBS_config := -lldap -llber -ljansson -lcrypto
FUZZ_LIBS_proto  := -ljansson
FUZZ_LIBS_ticket := -lcurl -lldap -llber -ljansson -lcrypto
FUZZ_LIBS_sts    := -lcurl -lexpat -ljansson -lcrypto
FUZZ_LIBS_audit  := -lcrypto -ljansson

.PHONY: fuzz fuzz-smoke
fuzz: $(FUZZ_BINS)

define FUZZ_RULE
$(FUZZ_BUILD)/fuzz_$(1): tests/fuzz/fuzz_$(1).c $(FUZZ_SRC_$(1)) \
		$(wildcard core/*.h client/*.h)
	@mkdir -p $(FUZZ_BUILD)
	$(FUZZ_CC) $(FUZZ_CPPFLAGS) $(FUZZ_CFLAGS) -o $$@ $$< \
		$(FUZZ_SRC_$(1)) $(FUZZ_LIBS_$(1))
endef
$(foreach n,$(FUZZ_NAMES),$(eval $(call FUZZ_RULE,$(n))))

fuzz-smoke: $(FUZZ_BINS)
	@set -e; for n in $(FUZZ_NAMES); do \
		rm -rf $(FUZZ_BUILD)/$$n-new; \
		mkdir -p $(FUZZ_BUILD)/$$n-new $(FUZZ_BUILD)/$$n-artifacts; \
		runs=$$(case $$n in config) echo $(FUZZ_RUNS_config);; \
			proto) echo $(FUZZ_RUNS_proto);; \
			ticket) echo $(FUZZ_RUNS_ticket);; \
			sts) echo $(FUZZ_RUNS_sts);; \
			*) echo $(FUZZ_RUNS_audit);; esac); \
		echo "== fuzz $$n ($$runs inputs, seed $(FUZZ_SEED))"; \
		ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
		UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
		$(FUZZ_BUILD)/fuzz_$$n -max_total_time=$(FUZZ_SECONDS) \
			-seed=$(FUZZ_SEED) -runs=$$runs \
			-timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/$$n-artifacts/ \
			$(FUZZ_BUILD)/$$n-new tests/fuzz/corpus/$$n \
			> $(FUZZ_BUILD)/$$n.log 2>&1 || \
			{ tail -60 $(FUZZ_BUILD)/$$n.log; exit 1; }; \
		grep -E '^stat::number_of_executed_units' $(FUZZ_BUILD)/$$n.log \
			| sed "s/^/fuzz $$n: /"; \
	done
# ---- end of fuzzing -----------------------------------------------------------
