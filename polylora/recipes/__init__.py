"""Recipes: designs that train and evaluate many runs through :func:`polylora.run.pipeline.execute`
and then hand the runs to a report (:mod:`polylora.report`, which only reads them)."""
