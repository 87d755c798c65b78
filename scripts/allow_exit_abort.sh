#!/bin/bash
# Usage: bash scripts/allow_exit_abort.sh 'SUCCESS-REGEX' COMMAND ARGS...
# Runs COMMAND. Deno with WebGPU on Mesa's lavapipe sometimes aborts *while exiting* ("corrupted size vs.
# prev_size in fastbins", SIGABRT, exit 134) after every test has run and passed: a teardown crash in native
# code (seen 2 times in about 60 runs of one test file; never reproduced in a plain script). When the command
# aborts that way and its output already holds the success line (SUCCESS-REGEX, an extended regex matched on
# the output without colour codes), this prints a warning and exits 0. Any other failure, and an abort before
# the success line, keep their exit code.
pattern=$1
shift
log=$(mktemp)
"$@" 2>&1 | tee "$log"
status=${PIPESTATUS[0]}
if [ "$status" -eq 134 ] && sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -Eq "$pattern"; then
  echo "warning: '$*' aborted while exiting (exit 134) after reporting success; treated as passed (known lavapipe/wgpu teardown crash)" >&2
  status=0
fi
rm -f "$log"
exit "$status"
