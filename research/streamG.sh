while kill -0 $1 2>/dev/null; do sleep 5; done
export OMP_NUM_THREADS=1
S=".venv/bin/python research/sweep.py"
R='"rotate": 5, "scale": [0.95, 1.05], "translate": 1, "batch_size": 64, "label_smoothing": 0.1, "weight_decay": 1e-4'
$S R-lr02 "{$R, \"lr\": 0.2}" --seeds 0
