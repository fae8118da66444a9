#!/usr/bin/env bash
# Run molecule scenarios side by side (single-VM scenarios each keep one emulated CPU busy, and
# this machine has two). Each scenario logs to build/molecule/<scenario>.log; the script prints
# a summary line per scenario, the log of each failure, and fails if any scenario failed.
set -uo pipefail
mkdir -p build/molecule
declare -A pids started
for scenario in "$@"; do
  started[$scenario]=$(date +%s)
  # Each records its own end time: the waits below finish in list order, not in completion order.
  ( rc=0; molecule test -s "$scenario" >"build/molecule/$scenario.log" 2>&1 || rc=$?
    date +%s >"build/molecule/$scenario.end"; exit $rc ) &
  pids[$scenario]=$!
done
failed=0
for scenario in "$@"; do
  if wait "${pids[$scenario]}"; then
    echo "molecule $scenario: passed in $(( $(cat "build/molecule/$scenario.end") - started[$scenario] )) s (log: build/molecule/$scenario.log)"
  else
    echo "molecule $scenario: FAILED after $(( $(cat "build/molecule/$scenario.end") - started[$scenario] )) s; its log:"
    cat "build/molecule/$scenario.log"
    failed=1
  fi
done
echo "molecule $*: side by side in $(( $(date +%s) - ${started[$1]} )) s"
exit $failed
