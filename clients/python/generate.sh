#!/usr/bin/env bash
# Regenerates the gRPC stubs in src/courier_client/v1 from ../../proto/courier/v1 with
# grpcio-tools (`pip install grpcio-tools`), and rewrites their imports to the package's own:
# `from courier.v1 import x_pb2` becomes `from courier_client.v1 import x_pb2`.
#
#   clients/python/generate.sh            # into src/courier_client/v1
#   clients/python/generate.sh DIR        # into DIR instead (CI diffs DIR against the package)
#
# PYTHON names the interpreter that has grpcio-tools (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="$here/../../proto"
out="${1:-$here/src/courier_client/v1}"
python="${PYTHON:-python3}"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$proto_root" && "$python" -m grpc_tools.protoc -I . \
  --python_out="$work" --pyi_out="$work" --grpc_python_out="$work" courier/v1/*.proto)

mkdir -p "$out"
rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py
for file in "$work"/courier/v1/*.py "$work"/courier/v1/*.pyi; do
  sed -e 's/^from courier\.v1 import /from courier_client.v1 import /' "$file" >"$out/$(basename "$file")"
done
cat >"$out/__init__.py" <<'INIT'
"""Generated from proto/courier/v1 by clients/python/generate.sh; do not edit."""
INIT
