export OMP_NUM_THREADS=1
S=".venv/bin/python research/sweep.py"
L='"rotate": 5, "scale": [0.95, 1.05], "translate": 1'
$S aug-light "{$L}" --seeds 0
$S aug-light-bs64 "{$L, \"batch_size\": 64}" --seeds 0
$S aug-light-ema "{$L, \"ema\": 0.999}" --seeds 0
$S adam-oc "{$L, \"optimizer\": \"adam\", \"lr\": 0.01, \"weight_decay\": 0}" --seeds 0
