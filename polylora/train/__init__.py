"""Training one job: its preparation and config checks, the Trainer, checkpoints, preemption
and in-training pruning."""
