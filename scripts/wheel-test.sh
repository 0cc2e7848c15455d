#!/usr/bin/env bash
# Build the wheel and sdist, check them, and run the suite against the installed wheel.
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf dist build
.venv/bin/python -m build --quiet --outdir dist . >/dev/null
.venv/bin/twine check --strict dist/*
wheel=$(ls dist/*.whl)
# The installation page shows what `python -m build` makes: it must name these files.
for built in dist/*; do
  grep -qF "$(basename "$built")" docs/installation.rst \
    || { echo "docs/installation.rst does not name $(basename "$built")"; exit 1; }
done
# List once into a variable: piping into `grep -q` lets grep exit early and
# the lister die of SIGPIPE, which pipefail reports as a missing file.
listing=$(python3 -m zipfile -l "$wheel")
for f in py.typed templates/datadog_partner migrations/0001_initial_connections_and_authorizations.py; do
  grep -q "django_datadog_partner/$f" <<<"$listing" || { echo "wheel lacks $f"; exit 1; }
done
work=$(mktemp -d)
python3 -m venv "$work/venv"
"$work/venv/bin/pip" install --quiet "$wheel[test]"
cp -r tests example_project docs .ci setup.cfg README.rst CHANGELOG.rst Makefile "$work/"
cd "$work"
"$work/venv/bin/python" -c 'import django_datadog_partner as p, sys; assert "site-packages" in p.__file__, p.__file__; print("testing", p.__file__)'
"$work/venv/bin/python" -m pytest -q -m "not browser"
