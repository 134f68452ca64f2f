"""One GPU per parallel job: the ``polylora_gpu`` resolver that
``hydra.job.env_set.CUDA_VISIBLE_DEVICES`` uses in ``conf/hydra/launcher/joblib_gpus.yaml``.
"""

from __future__ import annotations

import os
from typing import Any


def gpu_for_job(job_num: Any) -> str:
    """The GPU a job should see: ``POLYLORA_GPUS`` (e.g. ``0,1,2,3``; default: every visible
    CUDA device) indexed by job number modulo their count; '' when there is none."""
    listed = os.environ.get("POLYLORA_GPUS")
    if listed is not None:
        gpus = [g.strip() for g in listed.split(",") if g.strip()]
    else:
        try:
            import torch

            gpus = [str(i) for i in range(torch.cuda.device_count())]
        except ImportError:
            gpus = []
    if not gpus:
        return ""
    return gpus[int(job_num) % len(gpus)]


def register_resolvers() -> None:
    """``${polylora_gpu:${hydra:job.num}}`` for ``hydra.job.env_set.CUDA_VISIBLE_DEVICES``
    (see ``polylora/conf/hydra/launcher/joblib_gpus.yaml``). Idempotent."""
    from omegaconf import OmegaConf

    if OmegaConf.has_resolver("polylora_gpu"):
        return
    register = getattr(OmegaConf, "register_resolver", None)  # omegaconf >= 2.4
    if register is None:
        OmegaConf.register_new_resolver("polylora_gpu", gpu_for_job)
    else:
        register("polylora_gpu", gpu_for_job)
