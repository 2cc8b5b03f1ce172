from .module import WallDataModule, WallLightningModule
from .optim import ChainedOptimizer, OptimConfig, build_optimizer, muon_param_names
from .run import TrainConfig, build, fit_action_tokenizer, load_config, train

__all__ = [
    "ChainedOptimizer",
    "OptimConfig",
    "TrainConfig",
    "WallDataModule",
    "WallLightningModule",
    "build",
    "build_optimizer",
    "fit_action_tokenizer",
    "load_config",
    "muon_param_names",
    "train",
]
