set -x
P=.venv/bin/python
$P research/sweep.py base-sgd '{}' --seeds 0 1
$P research/sweep.py base-ls '{"label_smoothing": 0.1}' --seeds 0 1
$P research/sweep.py adam '{"optimizer": "adam", "lr": 0.01, "weight_decay": 0}' --seeds 0 1
$P research/sweep.py ref-ourrecipe '{"model": "reference"}' --seeds 0 1
$P research/sweep.py ref-article '{"model": "reference", "optimizer": "adam", "lr": 0.01, "weight_decay": 0, "schedule": "article", "batch_size": 64, "rotate": 5, "scale": [1.0, 1.085], "translate": 0}' --seeds 0 1
