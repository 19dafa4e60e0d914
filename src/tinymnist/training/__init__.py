"""Stage 5, training: the run configuration, the training loop and its parts, checkpoints (writing,
reading, the bundled pretrained model) and BatchNorm recalibration."""
