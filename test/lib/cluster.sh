# shellcheck shell=bash
# test/lib/cluster.sh: helpers shared by test/run, the demo and the benchmarks.
#
#   source test/lib/cluster.sh
#   pz_install_deps                # root: apt-get what is missing (no-op if all there)
#   pz_build                       # make WERROR=1 && make install
#   pz_start_cluster 'work_mem = 64MB' ...   # throwaway server; stopped on EXIT
#   psql -c 'SELECT 1'             # PGHOST/PGPORT/PGUSER/PGDATA/PZ_TMP are exported
#   pz_stop_cluster                # optional: also runs from the EXIT trap
#
# Everything targets PostgreSQL 15 as packaged by Debian 12.  Sourcing this
# file turns on `set -euo pipefail` in the caller.
set -euo pipefail

# PG_CONFIG=/path/to/pg_config (environment or `make test PG_CONFIG=...`)
# points everything at another PostgreSQL 15 build (a relocated copy, say);
# by default, Debian's.  The package cycle (test/package) needs Debian's.
if [[ -n ${PG_CONFIG:-} && ${PG_CONFIG:-} != pg_config ]]; then
	PZ_PG_CONFIG=$(readlink -f "$PG_CONFIG")
	PZ_PGBIN=$("$PZ_PG_CONFIG" --bindir)
	PZ_PGXS=$("$PZ_PG_CONFIG" --pgxs)
	PZ_PGXS=${PZ_PGXS%/src/makefiles/pgxs.mk}
else
	PZ_PGBIN=/usr/lib/postgresql/15/bin
	PZ_PG_CONFIG=$PZ_PGBIN/pg_config
	PZ_PGXS=/usr/lib/postgresql/15/lib/pgxs
fi
export PZ_PGBIN PZ_PG_CONFIG PZ_PGXS
export PZ_PG_REGRESS=$PZ_PGXS/src/test/regress/pg_regress
export PZ_PERL_LIB=$PZ_PGXS/src/test/perl
# Debian's /usr/bin/psql etc. are wrappers; use the version-15 binaries directly.
export PATH=$PZ_PGBIN:$PATH
# A locale every Debian 12 has, so initdb (ours and the TAP nodes') never
# trips over an ungenerated LANG, and messages/sorting are deterministic.
export LANG=C.UTF-8
unset LC_ALL LC_CTYPE LC_COLLATE LC_MESSAGES LC_MONETARY LC_NUMERIC LC_TIME

# Debian packages the build and all three test suites need.
PZ_DEPS=(
	postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
	libtap-parser-sourcehandler-pgtap-perl libipc-run-perl perl
	make gcc libc6-dev git
	# test/package: the Debian package's build, install and purge
	debhelper postgresql-server-dev-all dpkg-dev
	# test/t/014_monitoring.pl: the exporter scraped, the rules checked
	prometheus-postgres-exporter prometheus
)

# Install whichever of PZ_DEPS is missing.  Idempotent; silent when nothing is.
pz_install_deps() {
	local missing=() p
	for p in "${PZ_DEPS[@]}"; do
		[[ $(dpkg-query -W -f '${Status}' "$p" 2>/dev/null) == 'install ok installed' ]] ||
			missing+=("$p")
	done
	((${#missing[@]} == 0)) && return 0
	if ((EUID != 0)); then
		echo "pz_install_deps: missing ${missing[*]}; run as root to install them" >&2
		return 1
	fi
	echo "pz_install_deps: installing ${missing[*]}"
	apt-get update -qq
	DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
		"${missing[@]}" >/dev/null
}

# Build with warnings as errors, then install into the PostgreSQL 15 tree.
# Run from the repository root.
pz_build() {
	make -s WERROR=1 PG_CONFIG="$PZ_PG_CONFIG" &&
		make -s install PG_CONFIG="$PZ_PG_CONFIG" >/dev/null
}

# Run a command as the unprivileged postgres user (initdb/postgres refuse
# root), from a directory it can enter.
pz_as_postgres() {
	(cd "${PZ_TMP:-/}" && runuser -u postgres -- "$@")
}

# First port from 5433 (or $PZ_PORT_MIN) up with nothing listening on TCP and no socket file
# in the usual places.  (Our own server listens only on a private socket, so
# this just keeps clear of anything else on the machine.)
pz_free_port() {
	local p
	for ((p = ${PZ_PORT_MIN:-5433}; p < 6000; p++)); do
		[[ -e /tmp/.s.PGSQL.$p || -e /var/run/postgresql/.s.PGSQL.$p ]] && continue
		(exec 3<>"/dev/tcp/127.0.0.1/$p") 2>/dev/null && continue
		echo "$p"
		return 0
	done
	echo "pz_free_port: no free port" >&2
	return 1
}

# Start a throwaway server.  Arguments are extra postgresql.conf lines,
# appended last so they override the defaults below.  Every step checks its
# own status, since callers may run this under `if !` (where set -e is off).
pz_start_cluster() {
	id postgres >/dev/null 2>&1 ||
		useradd --system --no-create-home --home-dir /var/lib/postgresql \
			--shell /bin/bash postgres || return 1
	PZ_TMP=$(mktemp -d /tmp/pz.XXXXXX) && chown postgres: "$PZ_TMP" || return 1
	export PZ_TMP PGDATA=$PZ_TMP/data PGHOST=$PZ_TMP PGUSER=postgres
	PGPORT=$(pz_free_port) || return 1
	export PGPORT
	trap pz_stop_cluster EXIT
	trap 'exit 130' INT TERM

	pz_as_postgres "$PZ_PGBIN/initdb" -D "$PGDATA" -U postgres --auth=trust \
		--no-locale --encoding=UTF8 --no-sync >"$PZ_TMP/initdb.log" 2>&1 ||
		{ cat "$PZ_TMP/initdb.log" >&2; return 1; }

	{
		echo "# added by test/lib/cluster.sh"
		echo "port = $PGPORT"
		echo "listen_addresses = ''"
		echo "unix_socket_directories = '$PZ_TMP'"
		echo "wal_level = logical"
		echo "shared_preload_libraries = 'personalize'"
		echo "max_worker_processes = 16"
		echo "max_parallel_workers_per_gather = 2"
		echo "max_replication_slots = 10"
		echo "max_wal_senders = 10"
		echo "fsync = off"
		local line
		for line in "$@"; do echo "$line"; done
	} >>"$PGDATA/postgresql.conf" || return 1

	if ! pz_as_postgres "$PZ_PGBIN/pg_ctl" -D "$PGDATA" -l "$PZ_TMP/server.log" \
		-w -t 60 start >/dev/null; then
		echo "pz_start_cluster: server did not start; its log:" >&2
		cat "$PZ_TMP/server.log" >&2
		return 1
	fi
	echo "pz_start_cluster: PostgreSQL 15 up, PGHOST=$PGHOST PGPORT=$PGPORT"
}

# Stop the server and remove its directory.  Safe to call more than once.
pz_stop_cluster() {
	[[ -n ${PZ_TMP:-} && -d $PZ_TMP ]] || return 0
	if [[ -f $PGDATA/postmaster.pid ]]; then
		pz_as_postgres "$PZ_PGBIN/pg_ctl" -D "$PGDATA" -m fast -w stop >/dev/null 2>&1 || true
	fi
	rm -rf "$PZ_TMP"
	PZ_TMP=
}
