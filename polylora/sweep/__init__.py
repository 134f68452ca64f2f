"""Hyperparameter search: the ``polylora_optuna`` Hydra sweeper (:mod:`.plugin`, its loop in
:mod:`.sweeper`), trial bookkeeping on Optuna's RDB heartbeat (:mod:`.trials`), the MLflow
parent run (:mod:`.parent_run`), trial tags (:mod:`.tags`), the summary table
(:mod:`.summary`) and one GPU per parallel job (:mod:`.gpus`).

Start one with ``python -m polylora -m +experiment=smoke +hparams_search=lr``.
"""
