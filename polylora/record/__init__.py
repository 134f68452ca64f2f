"""The run record: what a polylora run writes and how it is read back.

:mod:`~polylora.record.names` holds every file, artifact, tag and metric name (and the one
metric-name normalizer), :mod:`~polylora.record.writer` writes them into the active MLflow run
and the output folder, :mod:`~polylora.record.reader` loads finished runs back as
:class:`~polylora.record.reader.RunInfo`. The MLflow side lives here too: the run
(:mod:`~polylora.record.tracking`), the store and its lock (:mod:`~polylora.record.store`,
:mod:`~polylora.record.db_lock`), provenance, redaction, run directories, cost and memory.
"""
