"""Train and evaluate one configuration: ``python -m polylora +experiment=polychromic_0.3``.

Hydra composes ``polylora/conf/`` (shipped inside the package: any directory works); the
return value (``optimized_metric``) is what sweeps optimize.
Bad input (config, data, checkpoints) ends with one ``polylora: error: ...`` line, exit 2.
"""

from __future__ import annotations

import os
import sys

import hydra
from omegaconf import DictConfig

from polylora.config import register_configs
from polylora.errors import PolyloraError
from polylora.record.redaction import install_log_redaction

register_configs()
install_log_redaction()


def _in_multirun() -> bool:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    try:
        return HydraConfig.get().mode == RunMode.MULTIRUN
    except ValueError:
        return False


@hydra.main(config_path="conf", config_name="config")
def main(cfg: DictConfig) -> float | tuple[float, ...]:
    """Hydra task function: run the job and return the optimized metric."""
    from polylora.run.pipeline import run
    from polylora.train.preemption import Preempted

    try:
        return run(cfg)
    except Preempted:
        print(
            f"polylora: stopped by SIGTERM; the MLflow run ended KILLED; continue with "
            f"train.resume=true hydra.run.dir={cfg.output_dir}",
            file=sys.stderr,
        )
        sys.exit(143)
    except PolyloraError as exc:
        if _in_multirun():  # the sweeper records the trial as failed and goes on
            raise
        print(f"polylora: error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    main()
