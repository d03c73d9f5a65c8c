"""Training engine: the trainer and its callbacks, evaluation, checkpoints and the run folder.

``trainer.train(recipe, ...)`` runs a recipe end to end with a ``trainer.Trainer`` (setup, resume, epochs,
finish) that calls ``callbacks`` (signals, metrics file, TensorBoard, progress, checkpoints, and whatever
the caller adds); ``restore`` rebuilds recipe and model from a checkpoint; ``evaluation.evaluate``
measures the pure SNN (eval mode); ``checkpoint.save_checkpoint`` / ``load_checkpoint`` are atomic and
versioned and load with ``torch.load(weights_only=True)`` only; ``device.check_runtime`` and
``runfolder.RunFolderLock`` refuse what cannot run before anything is written.

The engine imports nothing above it: :mod:`asgl.diagnose` builds on it, never the reverse.
"""
