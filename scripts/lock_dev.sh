#!/usr/bin/env bash
# Regenerate requirements/dev.lock: resolve the [dev] extra afresh in a throw-away venv and pin
# what it installed. Run the suite against the new lock before committing it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=$(mktemp -d)
trap 'rm -rf "$venv"' EXIT
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --upgrade pip
"$venv/bin/pip" install --quiet -e ".[dev]"
{
    sed -n '1,3p' requirements/dev.lock
    "$venv/bin/pip" freeze --exclude-editable
} > requirements/dev.lock.new
mv requirements/dev.lock.new requirements/dev.lock
git --no-pager diff --stat -- requirements/dev.lock
