"""Training: fitting a model (``fitting``), the job it leaves behind (``jobs``), and the data it reads
(``datasets``). ``TrainingPipeline`` is importable from here, as custom training steps subclass it."""
from pipeline.training.fitting import BUILTIN_METRICS, CustomEvaluation, TrainingPipeline

__all__ = ["BUILTIN_METRICS", "CustomEvaluation", "TrainingPipeline"]
