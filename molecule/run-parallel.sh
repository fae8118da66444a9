#!/usr/bin/env bash
# Run molecule scenarios side by side (single-VM scenarios each keep one emulated CPU busy, and
# this machine has two). Each scenario logs to build/molecule/<scenario>.log; the script prints
# a summary line per scenario, the log of each failure, and fails if any scenario failed.
set -uo pipefail
mkdir -p build/molecule
declare -A pids started
for scenario in "$@"; do
  started[$scenario]=$(date +%s)
  molecule test -s "$scenario" >"build/molecule/$scenario.log" 2>&1 &
  pids[$scenario]=$!
done
failed=0
for scenario in "$@"; do
  if wait "${pids[$scenario]}"; then
    echo "molecule $scenario: passed in $(( $(date +%s) - started[$scenario] )) s (log: build/molecule/$scenario.log)"
  else
    echo "molecule $scenario: FAILED after $(( $(date +%s) - started[$scenario] )) s; its log:"
    cat "build/molecule/$scenario.log"
    failed=1
  fi
done
exit $failed
