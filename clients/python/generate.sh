#!/usr/bin/env bash
# Regenerates the gRPC stubs in src/courier_client/v1 from ../../proto/courier/v1 and rewrites
# their imports to the package's own: `from courier.v1 import x_pb2` becomes
# `from courier_client.v1 import x_pb2`.
#
#   clients/python/generate.sh            # into src/courier_client/v1
#   clients/python/generate.sh DIR        # into DIR instead (CI diffs DIR against the package)
#
# The generator is pinned: grpcio-tools 1.80.1, the last release for Python 3.9, so the stubs
# need only grpcio >= 1.80.1 and protobuf >= 6.31.1 (newer runtimes load them too). It is
# installed once with pip into a cache folder (GRPC_TOOLS_DIR), apart from any environment.
# PYTHON names the interpreter (default python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
proto_root="$here/../../proto"
out="${1:-$here/src/courier_client/v1}"
python="${PYTHON:-python3}"
case "$python" in */*) python="$(cd "$(dirname "$python")" && pwd)/$(basename "$python")" ;; esac
tools_version=1.80.1
tools="${GRPC_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/courier-client/grpcio-tools-$tools_version}"

if [ ! -f "$tools/.complete" ]; then
  rm -rf "$tools"
  "$python" -m pip install --quiet --disable-pip-version-check --no-warn-conflicts \
    --target "$tools" "grpcio-tools==$tools_version"
  touch "$tools/.complete"
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$proto_root" && PYTHONPATH="$tools" "$python" -m grpc_tools.protoc -I . \
  --python_out="$work" --pyi_out="$work" --grpc_python_out="$work" courier/v1/*.proto)

mkdir -p "$out"
rm -f "$out"/*_pb2.py "$out"/*_pb2.pyi "$out"/*_pb2_grpc.py
for file in "$work"/courier/v1/*.py "$work"/courier/v1/*.pyi; do
  sed -e 's/^from courier\.v1 import /from courier_client.v1 import /' "$file" >"$out/$(basename "$file")"
done
cat >"$out/__init__.py" <<'INIT'
"""Generated from proto/courier/v1 by clients/python/generate.sh; do not edit."""
INIT
