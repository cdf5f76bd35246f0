"""Training engine: train and evaluate a table row's model as its spec says.

* :mod:`repro.engine.trainer` -- the loop (:class:`~repro.engine.trainer.Trainer`, :func:`~repro.engine.trainer.fit`,
  :func:`~repro.engine.trainer.evaluate`), exact resume after ``kill -9``, AMP on GPU.
* :mod:`repro.engine.optim` -- SGD/Adam, per-branch learning rates, step / multi-step / cosine
  schedules with warm-up, partial BN.
* :mod:`repro.engine.metrics` -- top-1/top-5/their average, mean class accuracy, EPE, as
  all-reducible sums.
* :mod:`repro.engine.checkpoint` -- atomic, ``weights_only`` checkpoints with RNG states;
  initialisation from another checkpoint (classifier dropped on shape mismatch).
* :mod:`repro.engine.distributed` -- torchrun / DistributedDataParallel, deterministic sharded
  sampling, padding-free evaluation shards.
* :mod:`repro.engine.data` -- the run's datasets from its ``RunConfig`` (decoded-frame cache of
  the built-in benchmark).
* :mod:`repro.engine.aggregate` -- a row's metrics from its seeds (mean + per-seed details).
* :mod:`repro.engine.job` -- the ``train`` job (:func:`~repro.engine.job.train_row`).
* :mod:`repro.engine.commands` -- ``python -m repro train|eval <paper>:<table>:<row>``.
"""
