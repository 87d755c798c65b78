#!/usr/bin/env bash
# Checks that `deno install` (instead of `npm ci`) leaves a working project: in a fresh clone of this checkout's
# HEAD, `deno install` must run the lifecycle scripts of the bun, deno and webgpu packages (deno.json's
# allowScripts), so that node_modules/.bin/bun and node_modules/.bin/deno start. Needs the npm registry.
set -euo pipefail
cd "$(dirname "$0")/.."
deno=${DENO:-$(command -v deno || echo node_modules/.bin/deno)}
deno=$(cd "$(dirname "$deno")" && pwd)/$(basename "$deno")
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
git clone -q . "$dir/clone"
cd "$dir/clone"
"$deno" install >"$dir/install.log" 2>&1 || { cat "$dir/install.log" >&2; echo "deno_install_check: deno install failed" >&2; exit 1; }
if grep -q "Ignored build scripts" "$dir/install.log"; then
  cat "$dir/install.log" >&2
  echo "deno_install_check: deno install skipped build scripts (deno.json allowScripts)" >&2
  exit 1
fi
bun_version=$(node_modules/.bin/bun --version 2>&1) || { echo "deno_install_check: bun is broken after deno install: $bun_version" >&2; exit 1; }
deno_version=$(node_modules/.bin/deno --version 2>&1 | head -1) || { echo "deno_install_check: deno is broken after deno install: $deno_version" >&2; exit 1; }
node_modules/.bin/bun -e 'await import("webgpu")' || { echo "deno_install_check: the webgpu package does not load under bun" >&2; exit 1; }
echo "deno_install_check: ok (bun $bun_version, $deno_version)"
