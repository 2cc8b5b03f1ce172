"""wall_robots: the Robot protocol with safety limits, MetaWorld and ALOHA demos, closed-loop eval, policy serving.

Simulator and server pieces live behind extras (``[metaworld]``, ``[aloha]``, ``[server]``, ``[plot]``) and are
imported lazily: ``from wall_robots import MetaWorldEnv`` only needs MetaWorld when you touch it.
"""

from importlib import import_module
from typing import Any

from .contract import (
    FeatureSpec,
    ObservationContract,
    ObservationError,
    contracts_of,
    map_keys,
    select_contract,
)
from .guard import ActionGuard, EmptyChunkError
from .realtime import STRATEGIES, AsyncChunker, smoothness
from .robot import (
    FakeRobot,
    Policy,
    Robot,
    RobotNotConnectedError,
    SafeRobot,
    SafetyLimits,
    Spec,
    UnsafeActionError,
)
from .robot_env import LoggingRobot, RobotEnv, safe_robot_for
from .rollout import ActionChunker, EpisodeResult, EvalReport, evaluate, write_report

__version__ = "0.1.0"
_LAZY = {
    "MetaWorldEnv": "sim_metaworld",
    "ScriptedExpert": "sim_metaworld",
    "generate_demos": "sim_metaworld",
    "instruction_for": "sim_metaworld",
    "preload_triton": "sim_metaworld",
    "AlohaEnv": "sim_aloha",
    "ALOHA_JOINTS": "sim_aloha",
    "aloha_bimanual_spec": "sim_aloha",
    "AlohaScriptedExpert": "aloha_expert",
    "generate_aloha_demos": "aloha_expert",
    "Layout": "heldout",
    "LayoutOverlapError": "heldout",
    "LayoutRecord": "heldout",
    "PolicyServer": "serving",
    "PolicyClient": "serving",
    "RequestError": "serving",
    "packb": "wire",
    "unpackb": "wire",
    "write_realtime_report": "realtime_report",
    "sweep_row": "realtime_report",
    "LeRobotAdapter": "lerobot_adapter",
    "from_lerobot": "lerobot_adapter",
}
__all__ = [
    "STRATEGIES",
    "ActionChunker",
    "AsyncChunker",
    "ActionGuard",
    "EmptyChunkError",
    "EpisodeResult",
    "EvalReport",
    "FakeRobot",
    "FeatureSpec",
    "LoggingRobot",
    "ObservationContract",
    "ObservationError",
    "Policy",
    "Robot",
    "RobotEnv",
    "RobotNotConnectedError",
    "SafeRobot",
    "SafetyLimits",
    "Spec",
    "UnsafeActionError",
    "contracts_of",
    "evaluate",
    "map_keys",
    "safe_robot_for",
    "select_contract",
    "smoothness",
    "write_report",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'wall_robots' has no attribute {name!r}")
