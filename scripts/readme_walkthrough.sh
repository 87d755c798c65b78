#!/usr/bin/env bash
# Runs the README's offline walkthrough exactly as written: the Quick start's `npm run demo`, then every line of the
# sh block under "### Offline walkthrough", in a shell whose PATH has no deno and no bun (npm finds the project's
# own in node_modules/.bin, as it does for a user who has installed neither). Fails on the first command that fails,
# or when evaluation does not print the SFT model's accuracy.
set -euo pipefail
cd "$(dirname "$0")/.."
readme=README.md

# PATH without node_modules/.bin and without any directory that holds a deno or bun
clean=""
IFS=: read -ra dirs <<< "$PATH"
for d in "${dirs[@]}"; do
  case "$d" in *node_modules/.bin*) continue ;; esac
  [ -x "$d/deno" ] || [ -x "$d/bun" ] && continue
  clean="${clean:+$clean:}$d"
done
if PATH="$clean" command -v deno >/dev/null || PATH="$clean" command -v bun >/dev/null; then
  echo "readme_walkthrough: could not take deno and bun off PATH" >&2
  exit 1
fi

block=$(awk '/^### Offline walkthrough/ {f = 1} f && /^```sh$/ {b = 1; next} b && /^```$/ {exit} b' "$readme")
[ -n "$block" ] || { echo "readme_walkthrough: no sh block under '### Offline walkthrough' in $readme" >&2; exit 1; }
grep -q '^npm run demo ' "$readme" || { echo "readme_walkthrough: the Quick start has no 'npm run demo'" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
run() {
  echo "+ $1"
  PATH="$clean" bash -c "set -o pipefail; $1" 2>&1 | tee -a "$log" | tail -n 3
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "readme_walkthrough: failed: $1" >&2; exit 1; }
}
run "npm run demo --silent"
while IFS= read -r line; do
  [ -n "$line" ] && run "$line"
done <<< "$block"
grep -q 'SFT' "$log" || { echo "readme_walkthrough: no SFT result in the evaluation's output" >&2; exit 1; }
echo "readme_walkthrough: ok"
