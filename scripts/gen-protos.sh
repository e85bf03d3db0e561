#!/usr/bin/env bash
# Generates Python code and .pyi stubs from protos/ into libs/api/src.
# With --check, generates into a scratch directory and fails if the checked-in code differs.
set -euo pipefail
cd "$(dirname "$0")/.."
out=$PWD/libs/api/src
if [[ "${1:-}" == "--check" ]]; then
  out=$(mktemp -d)
  trap 'rm -rf "$out"' EXIT
fi
bin=.venv/bin
mapfile -t protos < <(cd protos && find flakehouse -name '*.proto' | sort)
for p in "${protos[@]}"; do
  rm -f "$out/${p%.proto}"_pb2*.py "$out/${p%.proto}"_pb2*.pyi
done
(cd protos && ../$bin/python -m grpc_tools.protoc -I . \
  --python_out="$out" --grpc_python_out="$out" \
  --plugin=protoc-gen-mypy="../$bin/protoc-gen-mypy" --mypy_out="$out" \
  --plugin=protoc-gen-mypy_grpc="../$bin/protoc-gen-mypy_grpc" --mypy_grpc_out="$out" \
  "${protos[@]}") 2> >(grep -v "^Writing mypy to" >&2)
if [[ "${1:-}" == "--check" ]]; then
  # diff exits 1 when the trees differ and 2 when it cannot compare them; only 2 is an error
  # here. (Piping diff into grep under pipefail let diff's 1 mask grep's answer: the check
  # passed on stale code.)
  diffs=$(diff -r -q -x '__pycache__' "$out/flakehouse" libs/api/src/flakehouse) || (($? == 1))
  stale=$(grep -v '^Only in libs/api/src/flakehouse: py.typed$' <<<"$diffs" || true)
  if [[ -n "$stale" ]]; then
    echo "$stale" >&2
    echo "error: generated code in libs/api/src is stale: run 'make protos' and commit" >&2
    exit 1
  fi
  echo "generated code is fresh"
fi
