"""The comparison of groups of runs against a baseline (``polylora compare``), one concept per
module: :mod:`.model` (the result types), :mod:`.compute` (the statistics), :mod:`.render`
(Markdown), :mod:`.csv_export` (CSV files), :mod:`.figures` (plots) and :mod:`.store` (reading
runs from and logging the comparison to MLflow); :mod:`polylora.report.compare` is the CLI."""
