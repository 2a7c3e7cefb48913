# Sourced by the scripts, not run: `source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"`.
# The one copy of what they share: messages with the script's name in front, running as root, and
# installing Debian packages; and, for bench, loadtest, chaos and lambda-duration, running the
# engine on a database of its own.

# log MESSAGE: to standard error, after the running script's name ([local-stack], [fauxqs], …).
log() { printf '\033[1m[%s]\033[0m %s\n' "${0##*/}" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# as_root COMMAND…: runs it as root, through sudo unless this is root already.
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# apt_install PACKAGE…: installs Debian packages, updating the package lists once per run first.
apt_updated=""
apt_install() {
  command -v apt-get >/dev/null || die "cannot install $*: no apt-get (install it by hand)"
  if [ -z "$apt_updated" ]; then
    log "apt-get update"
    as_root apt-get update -qq >/dev/null
    apt_updated=1
  fi
  log "installing $*"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# --- The engine on a database of its own ---------------------------------------------------------

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
# Redis (REDIS_URL, the machine's by default) under a cache prefix of this run's. Its payments
# settle without a processor (QBILL_PAYMENTS=ledger): the load harnesses measure the engine and
# the database, and the ledger mode is kept for them alone.
engine_database() {
  fresh_database "$1"
  export DATABASE_URL="$APP_PG_BASE/$1" QBILL_MIGRATION_DATABASE_URL="$PG_BASE/$1"
  export QBILL_PAYMENTS=ledger
  export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379}"
  export QBILL_CACHE_PREFIX="qbill-$1-$$" QBILL_JWT_SECRET
  QBILL_JWT_SECRET=$(head -c 48 /dev/urandom | base64 | tr -d '/+=\n' | head -c 64)
  QBILL_LOG=warn "$2" migrate >/dev/null
}
