#!/bin/sh
# Runs the real `deno` or `bun` binary. deno task treats whatever it finds in node_modules/.bin as JavaScript,
# and the `deno` and `bun` npm packages put native binaries there, so a task that says plain `deno run …`
# fails with "SyntaxError … ELF". This takes the project's own copy (npm ci) when there is one, else the one
# on PATH.
set -e
root=$(cd "$(dirname "$0")/.." && pwd)
tool=$1
shift
case "$tool" in
  deno) bin="$root/node_modules/deno/deno" ;;
  bun) bin="$root/node_modules/bun/bin/bun.exe" ;;
  *) echo "usage: scripts/run.sh deno|bun ARGS..." >&2; exit 2 ;;
esac
[ -x "$bin" ] || bin=$tool
exec "$bin" "$@"
