P=.venv/bin/python
S="$P research/sweep.py"
$S aug-light '{"rotate": 5, "scale": [0.95, 1.05], "translate": 1}' --seeds 0
$S adam-oc '{"optimizer": "adam", "lr": 0.01, "weight_decay": 0}' --seeds 0
$S sgd-lr05-ls '{"lr": 0.05, "label_smoothing": 0.1, "rotate": 5, "scale": [0.95, 1.05], "translate": 1}' --seeds 0
$S ref-ourrecipe '{"model": "reference", "rotate": 5, "scale": [0.95, 1.05], "translate": 1}' --seeds 0
