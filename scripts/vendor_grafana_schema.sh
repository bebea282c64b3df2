#!/usr/bin/env bash
# Vendors the JSON Schema that tests/deploy/test_grafana_dashboard.py checks the chart's Grafana dashboard against.
#
#   bash scripts/vendor_grafana_schema.sh      # rewrites tests/deploy/grafana/ (needs npm and the npm registry)
#
# Grafana publishes its dashboard model as TypeScript types in the npm package @grafana/schema (generated there from
# Grafana's CUE kinds; Apache-2.0), not as a JSON Schema file. This script turns the pinned version's `Dashboard`
# type (dist/types/raw/dashboard/x/types.gen.d.ts) into a JSON Schema (draft-07) with ts-json-schema-generator
# (pinned, MIT), which keeps the types' strictness: unknown fields are refused (additionalProperties: false) and
# enums, required fields and value types come from Grafana's own definitions. Output: dashboard.schema.json, Grafana's
# licence beside it and SOURCE.txt naming the versions and the tarball's sha512 (npm's integrity). docs/grafana.md.
set -euo pipefail

SCHEMA_VERSION=13.2.3
GENERATOR_VERSION=2.9.0
HERE="$(cd "$(dirname "$0")/.." && pwd)"
OUT="$HERE/tests/deploy/grafana"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

cd "$WORK"
npm pack --silent "@grafana/schema@$SCHEMA_VERSION" >/dev/null
tar xzf "grafana-schema-$SCHEMA_VERSION.tgz"
INTEGRITY="$(npm view "@grafana/schema@$SCHEMA_VERSION" dist.integrity)"
npm install --silent --no-audit --no-fund --prefix "$WORK/gen" "ts-json-schema-generator@$GENERATOR_VERSION" >/dev/null
"$WORK/gen/node_modules/.bin/ts-json-schema-generator" \
  --path package/dist/types/raw/dashboard/x/types.gen.d.ts --type Dashboard --no-type-check \
  --out "$WORK/dashboard.schema.json"

mkdir -p "$OUT"
cp "$WORK/dashboard.schema.json" "$OUT/dashboard.schema.json"
cp package/LICENSE_APACHE2 "$OUT/LICENSE_APACHE2"
cat > "$OUT/SOURCE.txt" <<TXT
dashboard.schema.json: the type Dashboard of @grafana/schema $SCHEMA_VERSION (npm; Apache-2.0, LICENSE_APACHE2 here),
file dist/types/raw/dashboard/x/types.gen.d.ts, converted by ts-json-schema-generator $GENERATOR_VERSION (npm; MIT).
@grafana/schema $SCHEMA_VERSION integrity: $INTEGRITY
Made by scripts/vendor_grafana_schema.sh; do not edit by hand.
TXT
echo "vendored @grafana/schema $SCHEMA_VERSION -> $OUT/dashboard.schema.json"
