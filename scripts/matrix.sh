#!/usr/bin/env bash
# The version matrix through tox: 3.11 x Django 5.2, 3.12 x 6.0, 3.13 x 6.1.
set -euo pipefail
cd "$(dirname "$0")/.."
# Make pyenv-installed interpreters visible to tox's discovery, when there are any.
for dir in "${PYENV_ROOT:-$HOME/.pyenv}"/versions/3.1[123]*/bin; do
  [ -d "$dir" ] && PATH="$dir:$PATH"
done
export PATH
for py in python3.11 python3.12 python3.13; do
  command -v "$py" >/dev/null || { echo "matrix: $py is not installed"; exit 1; }
done
exec .venv/bin/tox run-parallel --parallel 2 --parallel-no-spinner -q "$@"
