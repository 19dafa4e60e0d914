"""Stage 8, search: architecture and recipe search on Optuna. study.run_search runs it all; the parts,
in import order: space (what is searched, what a candidate costs) -> config (SearchConfig) -> budgets
-> storage -> trials (a stored trial's status) -> objective (one trial) -> workers -> finalists ->
monitor (progress) -> report (trials.csv, best.json, pareto.png, search.md) -> study."""
