#!/usr/bin/env bash
# mypy over the installed layout: the distribution maps outbox/, producer/, consumer/ and api/
# to handwerk.outbox etc. (package-dir), which mypy cannot follow, so check a symlinked tree
# that has the installed shape. Settings live in pyproject.toml [tool.mypy].
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tree="$(mktemp -d)"
trap 'rm -rf "$tree"' EXIT
mkdir "$tree/handwerk"
for entry in "$root"/handwerk/*; do ln -s "$entry" "$tree/handwerk/$(basename "$entry")"; done
for stage in outbox producer consumer api; do ln -s "$root/$stage" "$tree/handwerk/$stage"; done
cd "$tree"
"${MYPY:-$root/.venv/bin/mypy}" --config-file "$root/pyproject.toml" -p handwerk
# The shared foundation is held to --strict (issue 17): contract, settings, access, index, embedding
# (and the relevance benchmark's core, which the model gate runs).
"${MYPY:-$root/.venv/bin/mypy}" --config-file "$root/pyproject.toml" --strict \
  -p handwerk.contract -p handwerk.settings -p handwerk.access -p handwerk.index -p handwerk.embedding \
  -p handwerk.relevance
