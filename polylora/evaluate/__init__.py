"""Evaluating one job: end-of-run sampling and scoring, and the evaluation loop around it."""
