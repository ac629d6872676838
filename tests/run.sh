#!/usr/bin/env bash
# Sets up everything the test suite needs on a fresh Debian machine and runs it.
#   bash tests/run.sh [pytest args...]
# Installs Debian's prometheus and prometheus-alertmanager (promtool, amtool and
# the real servers used by end-to-end tests) and docker-compose (its `config`
# validates docker-compose.yml without a container engine) when they are missing, creates .venv
# with the project and its test extras, then runs pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v promtool >/dev/null || ! command -v amtool >/dev/null || ! command -v prometheus-alertmanager >/dev/null \
        || ! command -v docker-compose >/dev/null; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    echo "tests/run.sh: installing Debian's prometheus, prometheus-alertmanager and docker-compose" >&2
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
        prometheus prometheus-alertmanager docker-compose >/dev/null
fi

PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
if ! .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' > .venv/pip-install.log 2>&1; then
    cat .venv/pip-install.log >&2
    echo "tests/run.sh: pip install failed (log above)" >&2
    exit 1
fi
exec .venv/bin/python -m pytest "$@"
