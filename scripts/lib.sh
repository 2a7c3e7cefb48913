# Sourced by scripts/bench, scripts/loadtest and scripts/chaos, not run: what they share to run the
# engine on a database of its own.

# Trust auth ignores the password; a server that checks it gets this one (scripts/local-stack).
PG_BASE="${QBILL_PG_BASE:-postgres://postgres:postgres@127.0.0.1:5432}"
# The workers' login, a member of qbill_application (`qbill migrate` makes it one), as on AWS.
APP_PG_BASE="${QBILL_APP_PG_BASE:-postgres://qbill_worker:qbill-worker@127.0.0.1:5432}"

# fresh_database NAME: drops the database NAME if it exists, and creates it.
fresh_database() {
  psql "$PG_BASE/postgres" -v ON_ERROR_STOP=1 -qAt \
    -c "DROP DATABASE IF EXISTS $1 WITH (FORCE)" -c "CREATE DATABASE $1" >/dev/null
}

# engine_database NAME QBILL: a fresh database NAME, migrated with the `qbill` binary QBILL, and the
# environment an engine needs on it: DATABASE_URL (the workers' login), QBILL_MIGRATION_DATABASE_URL
# (the owner's, for migrations and the harness's own users and checks), a JWT key of its own, and
# Redis (REDIS_URL, the machine's by default) under a cache prefix of this run's.
engine_database() {
  fresh_database "$1"
  export DATABASE_URL="$APP_PG_BASE/$1" QBILL_MIGRATION_DATABASE_URL="$PG_BASE/$1"
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
  export QBILL_CACHE_PREFIX="qbill-$1-$$" QBILL_JWT_SECRET
  QBILL_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 64)
  QBILL_LOG=warn "$2" migrate >/dev/null
}
