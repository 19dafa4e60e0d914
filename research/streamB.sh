export OMP_NUM_THREADS=1
S=".venv/bin/python research/sweep.py"
L='"rotate": 5, "scale": [0.95, 1.05], "translate": 1'
$S no-aug '{"augment": false}' --seeds 0
$S ref-light "{$L, \"model\": \"reference\"}" --seeds 0
$S aug-light-ls "{$L, \"label_smoothing\": 0.1}" --seeds 0
$S aug-light-lr05 "{$L, \"lr\": 0.05}" --seeds 0
