while kill -0 $1 2>/dev/null; do sleep 5; done
export OMP_NUM_THREADS=1
S=".venv/bin/python research/sweep.py"
L='"rotate": 5, "scale": [0.95, 1.05], "translate": 1'
$S wd1e-4 "{$L, \"weight_decay\": 1e-4}" --seeds 0
$S wd0-lr05 "{$L, \"weight_decay\": 0, \"lr\": 0.05}" --seeds 0
