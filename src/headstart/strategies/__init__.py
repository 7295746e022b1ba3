from .freezing import apply_trainable, freeze, set_train_mode, trainable_parameter_count, unfreeze
from .stages import STRATEGIES, Stage, Strategy, StrategyOptions, decayed_rates, default_comparison, get_strategy

__all__ = [
    "STRATEGIES",
    "Stage",
    "Strategy",
    "StrategyOptions",
    "apply_trainable",
    "decayed_rates",
    "default_comparison",
    "freeze",
    "get_strategy",
    "set_train_mode",
    "trainable_parameter_count",
    "unfreeze",
]
