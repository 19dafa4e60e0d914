"""Stage 6, analysis of a finished run: the report (curves, confusion matrix, misclassified digits)
and its plots."""
