"""Weighted mixtures of datasets (torchdata.nodes) and a vision-language (VQA) corpus loader."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset, IterableDataset
from torchdata.nodes import IterableWrapper, MultiNodeWeightedSampler

__all__ = ["VQADataset", "WeightedMixture"]
logger = logging.getLogger(__name__)


def _shuffled_forever(ds: Dataset, name: str, seed: int) -> Iterator[dict[str, Any]]:
    rng = np.random.default_rng(seed)
    n = len(ds)  # type: ignore[arg-type]
    if n == 0:
        raise ValueError(f"dataset {name!r} in the mixture is empty")
    while True:
        for i in rng.permutation(n):
            sample = dict(ds[int(i)])
            sample["dataset"] = name
            yield sample


class WeightedMixture(IterableDataset):
    """Endless stream drawing from ``datasets`` with probabilities ∝ ``weights`` (deterministic per seed).

    Each sample gets ``dataset`` = its source name. With DataLoader workers, each worker gets its own seed.
    """

    def __init__(
        self, datasets: Mapping[str, Dataset], weights: Mapping[str, float] | None = None, seed: int = 0
    ) -> None:
        if not datasets:
            raise ValueError("a mixture needs at least one dataset")
        weights = dict(weights or dict.fromkeys(datasets, 1.0))
        if set(weights) != set(datasets):
            raise KeyError(
                f"weights name {sorted(weights)} but datasets are {sorted(datasets)}; give one weight per dataset"
            )
        if any(w < 0 for w in weights.values()) or sum(weights.values()) <= 0:
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {weights}")
        self.datasets, self.weights, self.seed = dict(datasets), weights, seed

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = torch.utils.data.get_worker_info()
        seed = self.seed + (info.id * 9973 if info is not None else 0)
        nodes = {
            name: IterableWrapper(_shuffled_forever(ds, name, seed + i))
            for i, (name, ds) in enumerate(self.datasets.items())
        }
        active = {k: float(w) for k, w in self.weights.items() if w > 0}
        sampler = MultiNodeWeightedSampler({k: nodes[k] for k in active}, active, seed=seed)
        yield from sampler


class VQADataset(Dataset):
    """Vision-language samples from a JSONL file: one ``{"image": "rel.png" | [..], "question": .., "answer": ..}``
    per line (``"prompt"`` is read as the question too), or ``{"images": [...], "messages": [{"role":
    "user"|"assistant", "content": ..}]}``.

    Args:
        jsonl: the corpus file; image paths are relative to ``image_root`` (default: the file's folder).
        image_size: (h, w) to resize images to, or None to keep their size.
        camera: sample key the image goes under.
        name: the samples' ``dataset`` field (default: the file's stem).

    Samples: ``<camera>`` uint8 [3, h, w], ``question`` (str), ``answer`` (str), ``task`` (= question),
    ``dataset``; ``prompt`` (= question) is kept as a deprecated alias for processors that still read it.
    """

    def __init__(
        self,
        jsonl: str | Path,
        image_root: str | Path | None = None,
        image_size: tuple[int, int] | None = None,
        camera: str = "observation.images.main",
        name: str | None = None,
    ) -> None:
        self.path = Path(jsonl)
        if not self.path.is_file():
            raise FileNotFoundError(f"VQA file {self.path} not found")
        self.root = Path(image_root) if image_root else self.path.parent
        self.image_size, self.camera, self.name = image_size, camera, name or self.path.stem
        self.rows: list[dict[str, Any]] = []
        for i, line in enumerate(self.path.read_text().splitlines()):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{self.path} line {i + 1}: not JSON ({e})") from e
            self.rows.append(self._normalise(row, i + 1))
        if not self.rows:
            raise ValueError(f"{self.path} holds no samples")

    def _normalise(self, row: dict[str, Any], line: int) -> dict[str, Any]:
        if "messages" in row:
            msgs = row["messages"]
            user = [m["content"] for m in msgs if m.get("role") == "user"]
            asst = [m["content"] for m in msgs if m.get("role") == "assistant"]
            q, a, imgs = (user[0] if user else None), (asst[0] if asst else None), row.get("images", [])
        else:
            q = row.get("question", row.get("prompt"))
            a, imgs = row.get("answer"), row.get("image", row.get("images", []))
        imgs = [imgs] if isinstance(imgs, str) else list(imgs)
        if not q or a is None or not imgs:
            raise ValueError(
                f"{self.path} line {line}: need an image, a question and an answer, got keys {sorted(row)}"
            )
        for im in imgs:
            if not (self.root / im).is_file():
                raise FileNotFoundError(f"{self.path} line {line}: image {self.root / im} not found")
        return {"question": str(q), "answer": str(a), "images": imgs}

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, idx: int) -> dict[str, Any]:
        row = self.rows[idx]
        img = Image.open(self.root / row["images"][0]).convert("RGB")
        if self.image_size is not None:
            img = img.resize((self.image_size[1], self.image_size[0]), Image.Resampling.BILINEAR)
        t = torch.from_numpy(np.asarray(img).copy()).permute(2, 0, 1)
        return {
            self.camera: t,
            "question": row["question"],
            "answer": row["answer"],
            "task": row["question"],
            "prompt": row["question"],  # deprecated alias of "question" (TEAM naming); remove once unused
            "dataset": self.name,
        }


class IndexedMixture(Dataset):
    """Map-style weighted mixture whose sample ``i`` is a pure function of ``(seed, i)``.

    Useful for exactly resumable training: a run that stops after N samples continues with index N and
    draws exactly what an uninterrupted run would have drawn. Each sample gets ``dataset`` = its source.
    """

    def __init__(
        self,
        datasets: Mapping[str, Dataset],
        weights: Mapping[str, float] | None = None,
        seed: int = 0,
        length: int = 10**9,
    ) -> None:
        weights = dict(weights or dict.fromkeys(datasets, 1.0))
        if set(weights) != set(datasets) or not datasets:
            raise KeyError(
                f"weights name {sorted(weights)} but datasets are {sorted(datasets)}; give one weight per dataset"
            )
        total = sum(weights.values())
        if total <= 0 or any(w < 0 for w in weights.values()):
            raise ValueError(f"mixture weights must be >= 0 with a positive sum, got {weights}")
        self.names = list(datasets)
        self.datasets = [datasets[n] for n in self.names]
        self.cum = np.cumsum([weights[n] / total for n in self.names])
        self.seed, self.length = seed, length
        for name, ds in zip(self.names, self.datasets):
            if len(ds) == 0:  # type: ignore[arg-type]
                raise ValueError(f"dataset {name!r} in the mixture is empty")

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int) -> dict[str, Any]:
        rng = np.random.default_rng([self.seed, int(i)])
        k = min(int(np.searchsorted(self.cum, rng.random(), side="right")), len(self.names) - 1)
        ds = self.datasets[k]
        sample = dict(ds[int(rng.integers(len(ds)))])  # type: ignore[arg-type]
        sample["dataset"] = self.names[k]
        return sample
