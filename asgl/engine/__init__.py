"""Training engine: the epoch loop, evaluation, checkpoints and the run folder.

``trainer.train(recipe, ...)`` runs a recipe end to end; ``evaluation.evaluate`` measures the pure
SNN (eval mode); ``checkpoint.save_checkpoint`` / ``load_checkpoint`` are atomic and versioned and
load with ``torch.load(weights_only=True)`` only.
"""
