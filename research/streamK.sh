while kill -0 $1 2>/dev/null; do sleep 5; done
export OMP_NUM_THREADS=1
S=".venv/bin/python research/sweep.py"
R='"rotate": 5, "scale": [0.95, 1.05], "translate": 1, "batch_size": 64, "label_smoothing": 0.1, "weight_decay": 1e-4'
$S R-sepB-nodwbn "{$R, \"model_args\": {\"plan\": \"c8 s16 s16 M s24 s24 M s32 s32\", \"dw_bn\": false}}" --seeds 0
