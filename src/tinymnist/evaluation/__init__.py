"""Stage 4, evaluation: logits over a set of images on the fastest back end, metrics (loss, accuracy,
per-class precision and recall, confusion), predictions for single digits. The trainer evaluates
every epoch, so this stage sits below training."""
