#!/usr/bin/env bash
# Resume after a kill: run the main job to the end and time it; run it again into a new directory, SIGKILL it at
# half that time, re-run the same command into that directory and time the re-run.
#   ARGS="--limit 50 --num-candidates 10 --max-new-tokens 256" bash bench/resume.sh
set -u
cd "$(dirname "$0")/.."
export VLLM_CPU_KVCACHE_SPACE=${VLLM_CPU_KVCACHE_SPACE:-2}
ARGS=${ARGS:---limit 20 --num-candidates 5 --max-new-tokens 192}
OUT=${OUT:-runs/bench-resume}
PY=${PY:-.venv/bin/python}
rm -rf "$OUT-full" "$OUT-kill"
t0=$(date +%s.%N)
$PY -m beam_pipelines.inverse_instruct --output "$OUT-full" $ARGS --quiet > "$OUT-full.log" 2>&1
full=$(echo "$(date +%s.%N) - $t0" | bc)
echo "full run: ${full} s"
$PY -m beam_pipelines.inverse_instruct --output "$OUT-kill" $ARGS --quiet > "$OUT-kill.log" 2>&1 &
pid=$!
sleep "$(echo "$full / 2" | bc)"
kill -9 "$pid"
echo "killed after $(echo "$full / 2" | bc) s; cache parts: $(ls "$OUT-kill/cache" 2>/dev/null | wc -l)"
sleep 8  # the watchdog stops the killed run's engine processes
echo "engine processes left: $(pgrep -f 'EngineCore|VllmWorker' | wc -l)"
t2=$(date +%s.%N)
$PY -m beam_pipelines.inverse_instruct --output "$OUT-kill" $ARGS --quiet > "$OUT-rerun.log" 2>&1
rerun=$(echo "$(date +%s.%N) - $t2" | bc)
echo "re-run: ${rerun} s = $(echo "scale=3; $rerun / $full" | bc) of the full run (target <= 0.60)"
grep "inference cache" "$OUT-rerun.log"
