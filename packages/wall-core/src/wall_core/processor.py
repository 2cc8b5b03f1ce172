"""Turn wall-data sample dicts into :class:`WallBatch` tensors, and model outputs back into robot actions.

Per robot sample: [<|im_start|> instruction bytes] after the camera tokens, then one <|propri|> state token,
then (training, when an action tokenizer is set) the discrete action tokens + <|im_end|>. Per VQA sample:
camera tokens, prompt, answer + <|im_end|> (supervised). Sequences are left-padded so that every prefix ends
at the same column and the flow slots follow it.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import numpy as np
import torch

import wall_data
import wall_tokenizer

from .model.batch import WallBatch
from .model.masks import SEG

__all__ = ["WallProcessor"]
logger = logging.getLogger(__name__)
STATE, ACTION = "observation.state", "action"


class WallProcessor:
    def __init__(
        self,
        text_tokenizer: Any,
        image_tokens: int,
        state_dim: int,
        action_dim: int,
        action_horizon: int,
        cameras: list[str],
        image_size: int,
        host_vocab_size: int,
        action_tokenizer: wall_tokenizer.ActionTokenizer | None = None,
        stats: dict[str, wall_data.FeatureStats] | None = None,
        norm_mode: str = "quantile",
        max_text_bytes: int = 96,
    ) -> None:
        self.tok, self.image_tokens = text_tokenizer, image_tokens
        self.state_dim, self.action_dim, self.horizon = state_dim, action_dim, action_horizon
        self.cameras, self.image_size, self.host_vocab_size = list(cameras), image_size, host_vocab_size
        self.action_tokenizer, self.stats, self.norm_mode = action_tokenizer, stats, norm_mode
        self.normalizer = wall_data.Normalizer(stats, [STATE, ACTION], norm_mode) if stats else None
        self.max_text_bytes = max_text_bytes
        self.sid = {
            t: int(self.tok.convert_tokens_to_ids(t))
            for t in ("<|im_start|>", "<|im_end|>", "<|image_pad|>", "<|propri|>", "<|pad|>")
        }

    # --- per sample ------------------------------------------------------------------------------------------
    def _text(self, s: str) -> list[int]:
        return self.tok(s[: self.max_text_bytes], add_special_tokens=False)["input_ids"]

    def _images(self, sample: dict[str, Any]) -> tuple[list[torch.Tensor | None], int]:
        keys = [k for k in self.cameras if k in sample]
        if not keys:  # e.g. a VQA sample whose camera has another name: fill the first slot
            keys = [k for k in sample if k.startswith("observation.images.")][:1]
            slots = (
                [sample[keys[0]]] + [None] * (len(self.cameras) - 1) if keys else [None] * len(self.cameras)
            )
        else:
            slots = [sample.get(k) for k in self.cameras]
        out = []
        for img in slots:
            if img is None:
                out.append(None)
                continue
            img = torch.as_tensor(np.asarray(img)) if not torch.is_tensor(img) else img
            if img.ndim != 3:
                raise ValueError(f"camera image must be [3, h, w] or [h, w, 3], got shape {tuple(img.shape)}")
            if img.shape[0] != 3:
                img = img.permute(2, 0, 1)
            if tuple(img.shape[1:]) != (self.image_size, self.image_size):
                img = (
                    torch.nn.functional.interpolate(
                        img[None].float(), size=(self.image_size,) * 2, mode="bilinear", antialias=True
                    )[0]
                    .round()
                    .clamp(0, 255)
                )
            out.append(img.to(torch.uint8))
        return out, sum(x is not None for x in out)

    def _pad(self, x: np.ndarray, width: int, what: str) -> tuple[np.ndarray, np.ndarray]:
        d = x.shape[-1]
        if d > width:
            raise ValueError(
                f"{what} has {d} dims but the model's padded {what} space holds {width}; raise it in the config"
            )
        out = np.zeros((*x.shape[:-1], width), dtype=np.float32)
        out[..., :d] = x
        mask = np.zeros(width, dtype=np.float32)
        mask[:d] = 1
        return out, mask

    def encode_sample(self, sample: dict[str, Any]) -> dict[str, Any]:
        ids: list[int] = []
        seg: list[int] = []
        labels: list[int] = []

        def add(tokens: list[int], kind: int, supervised: bool = False) -> None:
            ids.extend(tokens)
            seg.extend([kind] * len(tokens))
            labels.extend(tokens if supervised else [-100] * len(tokens))

        images, n_img = self._images(sample)
        add([self.sid["<|image_pad|>"]] * (self.image_tokens * n_img), SEG.IMAGE)
        raw: dict[str, Any] = {}
        if STATE in sample:
            raw[STATE] = np.asarray(sample[STATE], dtype=np.float64)
            if not np.isfinite(raw[STATE]).all():
                raise ValueError("observation.state contains NaN/inf")
        if ACTION in sample:
            raw[ACTION] = np.asarray(sample[ACTION], dtype=np.float64).reshape(
                -1, np.asarray(sample[ACTION]).shape[-1]
            )
        if self.normalizer is not None and raw:
            raw = self.normalizer.normalize(raw, keys=[k for k in (STATE, ACTION) if k in raw])
        is_vqa = "answer" in sample
        prompt = sample.get("prompt") if is_vqa else sample.get("task", "")
        add([self.sid["<|im_start|>"], *self._text(str(prompt or ""))], SEG.TEXT)
        state = np.zeros(self.state_dim, np.float32)
        if STATE in raw:
            state, _ = self._pad(np.asarray(raw[STATE], np.float32), self.state_dim, "state")
            add([self.sid["<|propri|>"]], SEG.STATE)
        actions = np.zeros((self.horizon, self.action_dim), np.float32)
        amask = np.zeros((self.horizon, self.action_dim), np.float32)
        dof = np.zeros(self.action_dim, np.float32)
        if ACTION in raw:
            act = np.asarray(raw[ACTION], np.float32)
            if act.shape[0] != self.horizon:
                raise ValueError(
                    f"action chunk has {act.shape[0]} steps; the model predicts {self.horizon} (set the dataset's action_horizon)"
                )
            actions, dof = self._pad(act, self.action_dim, "action")
            pad = np.asarray(sample.get("action_is_pad", np.zeros(self.horizon, bool)), bool)
            amask = dof[None, :] * (~pad)[:, None].astype(np.float32)
            if self.action_tokenizer is not None:
                codes = self.action_tokenizer.encode(act[None].astype(np.float64))[0]
                add(
                    [*(codes + self.host_vocab_size).tolist(), self.sid["<|im_end|>"]],
                    SEG.ACTION,
                    supervised=True,
                )
        elif STATE in raw:
            dof[: self.robot_action_dim(sample)] = 1
        if is_vqa:
            add([*self._text(str(sample["answer"])), self.sid["<|im_end|>"]], SEG.ANSWER, supervised=True)
        return dict(
            ids=ids, seg=seg, labels=labels, images=images, state=state, actions=actions, amask=amask, dof=dof
        )

    def robot_action_dim(self, sample: dict[str, Any]) -> int:
        if "action_dim" in sample:
            return int(sample["action_dim"])
        if self.stats and ACTION in self.stats:
            return len(self.stats[ACTION].mean)
        return self.action_dim

    # --- batch ---------------------------------------------------------------------------------------------------
    def __call__(self, samples: list[dict[str, Any]]) -> WallBatch:
        if not samples:
            raise ValueError("cannot build a batch from zero samples")
        enc = [self.encode_sample(s) for s in samples]
        n = max(len(e["ids"]) for e in enc)
        b, c = len(enc), len(self.cameras)
        ids = torch.full((b, n), self.sid["<|pad|>"], dtype=torch.long)
        seg = torch.zeros((b, n), dtype=torch.long)
        labels = torch.full((b, n), -100, dtype=torch.long)
        images = torch.zeros((b, c, 3, self.image_size, self.image_size), dtype=torch.uint8)
        image_valid = torch.zeros((b, c), dtype=torch.bool)
        for i, e in enumerate(enc):
            k = len(e["ids"])
            ids[i, n - k :] = torch.tensor(e["ids"])
            seg[i, n - k :] = torch.tensor(e["seg"])
            labels[i, n - k :] = torch.tensor(e["labels"])
            for j, img in enumerate(e["images"]):
                if img is not None:
                    images[i, j], image_valid[i, j] = img, True
        return WallBatch(
            input_ids=ids, valid=seg != SEG.PAD, segment=seg, labels=labels, images=images, image_valid=image_valid,
            state=torch.from_numpy(np.stack([e["state"] for e in enc])),
            actions=torch.from_numpy(np.stack([e["actions"] for e in enc])),
            action_loss_mask=torch.from_numpy(np.stack([e["amask"] for e in enc])),
            dof_mask=torch.from_numpy(np.stack([e["dof"] for e in enc])),
        )  # fmt: skip

    # --- outputs -------------------------------------------------------------------------------------------------
    def postprocess(
        self, actions: torch.Tensor | np.ndarray, robot_action_dim: int | None = None
    ) -> np.ndarray:
        """Normalised padded actions [B, H, A_pad] -> the robot's own actions [B, H, A] in its units."""
        a = np.asarray(actions.detach().cpu() if torch.is_tensor(actions) else actions, dtype=np.float64)
        d = robot_action_dim or (len(self.stats[ACTION].mean) if self.stats else a.shape[-1])
        a = a[..., :d]
        if self.normalizer is not None:
            a = self.normalizer.unnormalize({ACTION: a}, keys=[ACTION])[ACTION]
        return np.asarray(a, dtype=np.float64)

    def decode_action_tokens(
        self, codes: list[list[int]], robot_action_dim: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Discrete action ids -> (normalised padded actions [B, H, A_pad], valid [B])."""
        if self.action_tokenizer is None:
            raise RuntimeError("this processor has no action tokenizer")
        res = self.action_tokenizer.decode([np.asarray(c, dtype=np.int64) for c in codes])
        padded, _ = self._pad(res.actions.astype(np.float32), self.action_dim, "action")
        return padded, res.valid

    # --- persistence --------------------------------------------------------------------------------------------
    def save_pretrained(self, path: str | Path) -> None:
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.tok.save_pretrained(path / "text_tokenizer")
        if self.action_tokenizer is not None:
            self.action_tokenizer.save(path / "action_tokenizer")
        if self.stats:
            wall_data.save_stats(self.stats, path / "stats.json")
        cfg = dict(
            image_tokens=self.image_tokens, state_dim=self.state_dim, action_dim=self.action_dim,
            action_horizon=self.horizon, cameras=self.cameras, image_size=self.image_size,
            host_vocab_size=self.host_vocab_size, norm_mode=self.norm_mode, max_text_bytes=self.max_text_bytes,
        )  # fmt: skip
        (path / "processor.json").write_text(json.dumps(cfg, indent=2))

    @classmethod
    def from_pretrained(cls, path: str | Path) -> WallProcessor:
        from transformers import PreTrainedTokenizerFast

        path = Path(path)
        if not (path / "processor.json").is_file():
            raise FileNotFoundError(
                f"{path / 'processor.json'} not found: not a directory written by save_pretrained"
            )
        cfg = json.loads((path / "processor.json").read_text())
        tok = PreTrainedTokenizerFast.from_pretrained(path / "text_tokenizer")
        at = wall_tokenizer.load(path / "action_tokenizer") if (path / "action_tokenizer").exists() else None
        stats = wall_data.load_stats(path / "stats.json") if (path / "stats.json").exists() else None
        return cls(tok, action_tokenizer=at, stats=stats, **cfg)
