# personalize: PGXS build.  `make && make install`, then see test/run.
EXTENSION   = personalize
MODULE_big  = personalize
OBJS        = $(patsubst %.c,%.o,$(sort $(wildcard src/*.c)))
DATA        = $(sort $(wildcard personalize--*.sql))

# pg_regress suites live in sql/ and expected/ (one file per concept).
REGRESS      = $(patsubst sql/%.sql,%,$(sort $(wildcard sql/*.sql)))
# the test database is UTF8 with the C locale wherever the server runs (a
# package build's throwaway cluster takes the environment's locale)
REGRESS_OPTS = --inputdir=. --load-extension=personalize --encoding=UTF8 --no-locale

# -Wall -Wextra are always on; CI adds WERROR=1 so a warning fails the build.
PG_CFLAGS   = -Wall -Wextra -Wno-unused-parameter -Wno-missing-field-initializers -Wno-sign-compare
ifdef WERROR
PG_CFLAGS  += -Werror
endif

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# every object depends on every header: they are few, and a stale object
# built against an older struct layout is worse than a slower rebuild
$(OBJS): $(wildcard src/*.h)

# make dist: the PGXN release archive of the committed tree,
# personalize-<default_version>.zip (META.json's version must match: test/meta)
DISTVERSION = $(shell sed -n "s/^default_version = '\(.*\)'/\1/p" $(EXTENSION).control)
dist:
	git archive --format zip --prefix=$(EXTENSION)-$(DISTVERSION)/ -o $(EXTENSION)-$(DISTVERSION).zip HEAD

.PHONY: dist test demo bench bench-identity bench-profiles bench-stream bench-audiences bench-citus format
test:
	test/run
demo:
	demo/run
bench:
	bench/run
bench-identity:
	bench/identity/run
bench-profiles:
	bench/profiles/run
bench-stream:
	bench/stream/run
bench-audiences:
	bench/audiences/run
bench-citus:
	bench/citus/run
format:
	clang-format -i src/*.c src/*.h
