#!/usr/bin/env bash
# A PostgreSQL database for the catalog's tests (`make test` runs this): installs Debian's server when it is
# missing, starts its cluster, makes a role and a database of their own, and prints the SQLAlchemy URL on stdout.
# Anything that fails is said on stderr and prints no URL: the PostgreSQL cases are then skipped, with that reason.
set -uo pipefail
say() { echo "postgres.sh: $*" >&2; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
as_postgres() { as_root su postgres -s /bin/sh -c "$1"; }

if ! command -v pg_lsclusters >/dev/null; then
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2 \
    || { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 \
         && as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql >&2; } \
    || { say "could not install postgresql"; exit 0; }
fi
read -r version name port status _ < <(pg_lsclusters -h | head -n 1)
if [ -z "${version:-}" ]; then say "no PostgreSQL cluster"; exit 0; fi
if [ "$status" != "online" ]; then
  as_root pg_ctlcluster "$version" "$name" start >&2 || { say "cluster $version/$name does not start"; exit 0; }
fi
role_exists=$(as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_roles WHERE rolname = 'cardmetry_test'\"") \
  || { say "psql cannot reach the cluster"; exit 0; }
if [ "$role_exists" != 1 ]; then
  as_postgres "psql -p $port -qc \"CREATE ROLE cardmetry_test LOGIN PASSWORD 'cardmetry_test'\"" >&2 || exit 0
fi
if [ "$(as_postgres "psql -p $port -tAc \"SELECT 1 FROM pg_database WHERE datname = 'cardmetry_test'\"")" != 1 ]; then
  as_postgres "createdb -p $port -O cardmetry_test cardmetry_test" >&2 || exit 0
fi
echo "postgresql+psycopg://cardmetry_test:cardmetry_test@127.0.0.1:$port/cardmetry_test"
