"""Reports over finished runs: the overfitting diagnosis and run comparisons.

Pure logic lives here; the CLI fetches metrics (MLflow) and hands them to these modules.
"""
