#!/usr/bin/env bash
# Start `handwerk serve` and, the first time, load demo projects through the REST API.
set -euo pipefail
BIN=${BIN:-.venv/bin}; PORT=${PORT:-8000}; DATA_DIR=${DATA_DIR:-./data}
"$BIN/handwerk" serve --port "$PORT" --data-dir "$DATA_DIR" &
server=$!
trap 'kill -TERM $server 2>/dev/null; wait $server' INT TERM EXIT
for _ in $(seq 300); do  # the first start exports e5 to ONNX once (about a minute)
  curl -sf "http://127.0.0.1:$PORT/readyz" >/dev/null && break
  kill -0 $server 2>/dev/null || exit 1
  sleep 1
done
if [ ! -f "$DATA_DIR/.demo-loaded" ]; then
  "$BIN/handwerk" demo-data --url "http://127.0.0.1:$PORT" --count 300 && touch "$DATA_DIR/.demo-loaded"
fi
echo "handwerk is ready on http://127.0.0.1:$PORT (docs: /docs). Ctrl+C stops it."
wait $server
