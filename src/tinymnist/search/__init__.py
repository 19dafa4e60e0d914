"""Stage 8, search: hyperparameter and architecture search on Optuna (space, study, report)."""
