#!/usr/bin/env bash
# Regenerates Sources/EtcdProto from Protos/. Run it after editing a .proto file and commit the
# result: builds and CI never run it (building the protoc plugin takes minutes).
#
# Needs Debian's `protoc` (apt-get install -y protobuf-compiler) and builds `protoc-gen-swift`
# from the swift-protobuf version this package depends on, in a scratch folder outside the tree.
set -euo pipefail
cd "$(dirname "$0")/.."

version=$(sed -n 's|.*apple/swift-protobuf.git", exact: "\([0-9.]*\)".*|\1|p' Package.swift)
[ -n "$version" ] || { echo "cannot find the swift-protobuf version in Package.swift" >&2; exit 1; }
command -v protoc >/dev/null || { echo "protoc missing: apt-get install -y protobuf-compiler" >&2; exit 1; }

plugin_src=${PROTOC_GEN_SWIFT_SRC:-${TMPDIR:-/tmp}/swift-protobuf-$version}
if [ ! -x "$plugin_src/.build/release/protoc-gen-swift" ]; then
  rm -rf "$plugin_src"
  git clone -q --depth 1 --branch "$version" https://github.com/apple/swift-protobuf.git "$plugin_src"
  swift build -c release --package-path "$plugin_src" --product protoc-gen-swift
fi

out=Sources/EtcdProto/Generated
rm -rf "$out"
mkdir -p "$out"
protos=$(cd Protos && find . -name '*.proto' | sed 's|^\./||' | sort)
(cd Protos && protoc --plugin="protoc-gen-swift=$plugin_src/.build/release/protoc-gen-swift" \
  --swift_out="../$out" --swift_opt=Visibility=Public --swift_opt=FileNaming=PathToUnderscores \
  $protos)
python3 scripts/generate-rpc-catalog.py $protos
echo "generated $(ls "$out" | wc -l) files into $out"
