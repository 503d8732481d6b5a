#!/usr/bin/env bash
# `make test`: the whole suite in four parts, each printing its slowest tests.
# 1. The tests that mostly wait on daemons, webservers and workers (tests/production,
#    tests/e2e) run in a second pytest beside the rest: on two cores the one overlaps the
#    other's waiting.
# 2. The tests that stop or restart the PostgreSQL cluster (marker `cluster`) run alone, as
#    every other test that uses PostgreSQL would see the outage.
# 3. The clock tests again under TZ=Pacific/Honolulu and TZ=Asia/Kolkata, both at once.
# Each part keeps its own temporary folder; the exit status is the first failure's.
set -uo pipefail
python=${1:-.venv/bin/python}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
waiting=(tests/production tests/e2e)
run() { "$python" -m pytest -p no:cacheprovider "$@"; }

run --durations=15 -m "not cluster" --basetemp="$work/waiting" "${waiting[@]}" \
    > "$work/waiting.log" 2>&1 &
waiter=$!
run --durations=25 -m "not cluster" --basetemp="$work/main" \
    --ignore=tests/production --ignore=tests/e2e
main=$?
wait "$waiter"
waited=$?
echo "== the waiting tests (${waiting[*]}), run beside the rest"
cat "$work/waiting.log"

echo "== the tests that stop or restart the PostgreSQL cluster, alone"
run --durations=5 -m cluster --basetemp="$work/cluster"
cluster=$?

echo "== the clock tests under TZ=Pacific/Honolulu and TZ=Asia/Kolkata, both at once"
TZ=Pacific/Honolulu run -q -m clock --basetemp="$work/honolulu" > "$work/honolulu.log" 2>&1 &
west=$!
TZ=Asia/Kolkata run -q -m clock --basetemp="$work/kolkata" > "$work/kolkata.log" 2>&1
east=$?
wait "$west"
west=$?
tail -n 1 "$work/honolulu.log" "$work/kolkata.log"
[ "$west" -ne 0 ] && cat "$work/honolulu.log"
[ "$east" -ne 0 ] && cat "$work/kolkata.log"

for status in "$main" "$waited" "$cluster" "$west" "$east"; do
    [ "$status" -ne 0 ] && exit "$status"
done
exit 0
