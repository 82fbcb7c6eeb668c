#!/usr/bin/env bash
# The Django tests (tests/django) in their own Python 3.12+ environments (Django 6 needs one),
# one per requirements/django-*.lock (Django 6.0 and the latest 6.x): each made once under the
# cache directory, again when its lock, pyproject.toml or this checkout's path changes; then
# `pytest tests/django -n 2 -q` in each, extra arguments added. `--lock` renews the locks instead:
# each one's Django series resolved afresh with the [django-test] extra.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
    local candidate
    for candidate in python3.13 python3.12 "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[2-9]*/bin/python3; do
        if "$candidate" -c 'import sys; assert sys.version_info >= (3, 12)' >/dev/null 2>&1; then
            echo "$candidate"
            return
        fi
    done
    echo "django_env: no Python 3.12 or newer found (Django 6 needs one)" >&2
    exit 1
}

python=$(find_python)
cache="${XDG_CACHE_HOME:-$HOME/.cache}/qsup"
mkdir -p "$cache"

if [ "${1:-}" = "--lock" ]; then
    for lock in requirements/django-*.lock; do
        series=$(basename "$lock" .lock)
        series=${series#django-}
        venv=$(mktemp -d)
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet --upgrade pip
        "$venv/bin/pip" install --quiet -e ".[django-test]" "django~=$series.0"
        { sed -n '1,2p' "$lock"; "$venv/bin/pip" freeze --exclude-editable; } > "$lock.new"
        mv "$lock.new" "$lock"
        rm -rf "$venv"
    done
    git --no-pager diff --stat -- requirements/
    exit 0
fi

status=0
for lock in requirements/django-*.lock; do
    key=$(cat "$lock" pyproject.toml <(pwd) <("$python" -V) | sha256sum | cut -c1-16)
    venv="$cache/$(basename "$lock" .lock)-$key"
    if [ ! -f "$venv/.ready" ]; then
        rm -rf "$venv"
        "$python" -m venv "$venv"
        "$venv/bin/pip" install --quiet --upgrade pip
        "$venv/bin/pip" install --quiet -e ".[django-test]" -c "$lock"
        "$venv/bin/python" -m compileall -q src >/dev/null  # as .ci/run does: serve starts fast
        touch "$venv/.ready"
    fi
    echo "== tests/django on $("$venv/bin/python" -m django --version | sed 's/^/Django /')"
    "$venv/bin/python" -m pytest tests/django -n 2 -q "$@" || status=$?
done
exit "$status"
