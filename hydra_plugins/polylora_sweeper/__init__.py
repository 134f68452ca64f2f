"""polylora's Hydra sweeper: the Optuna sweeper plus resume-to-``n_trials``, an MLflow parent
run per sweep, trial tags, fail-fast checks and a summary table. Select it with
``defaults: [override /hydra/sweeper: polylora_optuna]`` (every
``polylora/conf/hparams_search`` file does).
"""
