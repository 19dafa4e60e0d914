# waits for the given pid, then runs its queue
while kill -0 $1 2>/dev/null; do sleep 5; done
export OMP_NUM_THREADS=1
S=".venv/bin/python research/sweep.py"
L='"rotate": 5, "scale": [0.95, 1.05], "translate": 1'
$S wd0 "{$L, \"weight_decay\": 0}" --seeds 0
$S wd1e-4-adam "{$L, \"optimizer\": \"adam\", \"lr\": 0.01, \"weight_decay\": 0}" --seeds 0
