"""Tokenizer benchmark: wall-tokenizer FAST against per-sample reference-style FAST, and FAST vs RVQ vs bins.

Batches of 1,000 chunks of 50x14 (smooth random walks in [-1, 1]; the test chunks are fresh, so a few leave
the fitted range and get clipped). Everything runs in this process, one thread of ours against one thread of
theirs, medians of repeated runs. Two per-sample baselines, each what the original processor does per chunk
(scipy DCT of one chunk, ``chr()`` per coefficient, one BPE call; decode per chunk):

* **reference style, same BPE** — our fitted BPE model through ``tokenizers.Tokenizer.encode``: identical
  ids to ours (asserted), so this ratio is the speed-up of the same tokenizer. The issue's 20x target.
* **released-processor config** — ``tokenizers.ByteLevelBPETokenizer`` over ``chr(coef - min)`` fitted on the
  same chunks, as ``physical-intelligence/fast`` is built (GPT-2 pre-tokenizer, word cache): a different
  tokenization, shown for its speed and token count.

Also: ``FASTTokenizer(backend="tokenizers")`` (``encode_batch``, multi-threaded Rust) and batch-1 latency.
Run: ``python benchmarks/tokenizer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info, timeit

import wall_tokenizer as wt


def reference_encode(tok: wt.FASTTokenizer, chunks: np.ndarray) -> list[list[int]]:
    """Straightforward per-sample FAST, in the style of the reference processor (same BPE model)."""
    out = []
    for chunk in chunks:
        coef = np.around(scipy.fft.dct(chunk, axis=0, norm="ortho") * tok.scale).astype(int).flatten()
        coef = np.clip(coef, tok.min_token, tok.max_token)
        text = "".join(chr(0xE000 + int(c) - tok.min_token) for c in coef)
        out.append(tok._bpe.encode(text).ids)
    return out


def reference_decode(tok: wt.FASTTokenizer, seqs: list[list[int]], h: int, d: int) -> list[np.ndarray]:
    out = []
    for ids in seqs:
        text = "".join(tok._bpe.id_to_token(i) for i in ids)
        coef = np.array([ord(c) - 0xE000 + tok.min_token for c in text]).reshape(h, d)
        out.append(scipy.fft.idct(coef / tok.scale, axis=0, norm="ortho"))
    return out


class ReleasedStyleFAST:
    """The released processor's construction: ByteLevel BPE over ``chr(coef - min)``, one chunk at a time."""

    def __init__(self, train: np.ndarray, scale: float = 10, vocab_size: int = 1024) -> None:
        from tokenizers import ByteLevelBPETokenizer

        self.scale = scale
        q = self._coef(train).reshape(len(train), -1)
        self.lo, self.hi = int(q.min()), int(q.max())
        self.bpe = ByteLevelBPETokenizer()
        texts = ("".join(map(chr, row - self.lo)) for row in q)
        self.bpe.train_from_iterator(texts, vocab_size=vocab_size, min_frequency=2, show_progress=False)

    def _coef(self, x: np.ndarray) -> np.ndarray:
        return np.around(scipy.fft.dct(x, axis=-2, norm="ortho") * self.scale).astype(int)

    def encode(self, chunks: np.ndarray) -> list[list[int]]:
        out = []
        for chunk in chunks:
            coef = np.clip(self._coef(chunk).flatten(), self.lo, self.hi) - self.lo
            out.append(self.bpe.encode("".join(map(chr, coef))).ids)
        return out

    def decode(self, seqs: list[list[int]], h: int, d: int) -> np.ndarray:
        out = np.zeros((len(seqs), h, d))
        for b, ids in enumerate(seqs):
            coef = np.array([ord(c) + self.lo for c in self.bpe.decode(ids)])
            if coef.size == h * d:  # the released processor returns zeros otherwise
                out[b] = scipy.fft.idct(coef.reshape(h, d) / self.scale, axis=0, norm="ortho")
        return out


def budget_sweep(train: np.ndarray, test: np.ndarray, scales: tuple[float, ...]) -> list[dict]:
    """FAST at several scales; RVQ (10 time segments) and bins (time stride) matched to each FAST budget."""
    out = []
    for scale in scales:
        fast = wt.FASTTokenizer(scale=scale, vocab_size=1024).fit(train)
        budget = float(np.mean([len(i) for i in fast.encode(test)]))
        h, d = test.shape[1:]
        rvq = wt.RVQTokenizer(levels=max(1, round(budget / 10)), codebook_size=256, segments=10, iters=10)
        bins = wt.BinTokenizer(256, time_stride=max(1, round(h / max(1, budget / d - 1))))
        for name, tok in (("fast", fast), ("rvq", rvq.fit(train[:1000])), ("bins", bins.fit(train))):
            ids = tok.encode(test)
            err = np.abs(tok.decode(ids).actions - test)
            out.append(
                {
                    "fast_scale": scale,
                    "tokenizer": name,
                    "tokens_per_chunk": float(np.mean([len(i) for i in ids])),
                    "mae": float(err.mean()),
                    "max_err": float(err.max()),
                }
            )
    return out


def _per_chunk_us(seconds: float, n: int) -> float:
    return seconds / n * 1e6


def _chunks(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` smooth random-walk chunks [n, 50, 14] clipped to [-1, 1]."""
    return np.clip(rng.normal(size=(n, 50, 14)).cumsum(1) * 0.03, -1, 1)


def _time_fast(fast: wt.FASTTokenizer, test: np.ndarray, reps: int, ref_reps: int) -> dict:
    """Check batched FAST against the per-sample reference and time both (seconds per batch of ``test``)."""
    assert fast._batch is not None, "numpy BPE encoder not in use"
    ids = fast.encode(test)
    clipped_chunks = fast.last_stats.clipped_chunks
    dec_out = fast.decode(ids)
    ref_ids = reference_encode(fast, test)
    assert all(list(a) == b for a, b in zip(ids, ref_ids)), "batched and reference FAST disagree"
    t = {
        "enc": timeit(lambda: fast.encode(test), repeat=reps),
        "dec": timeit(lambda: fast.decode(ids), repeat=reps),
        "ref_enc": timeit(lambda: reference_encode(fast, test), repeat=ref_reps, warmup=0),
        "ref_dec": timeit(lambda: reference_decode(fast, ref_ids, 50, 14), repeat=ref_reps, warmup=0),
    }
    fast.backend = "tokenizers"
    t["tk_enc"] = timeit(lambda: fast.encode(test), repeat=reps)
    fast.backend = "auto"
    return {
        "t": t,
        "ids": ids,
        "ref_ids": ref_ids,
        "clipped_chunks": clipped_chunks,
        "budget": float(np.mean([len(i) for i in ids])),
        "mae": float(np.abs(dec_out.actions - test).mean()),
    }


def _time_released(train: np.ndarray, test: np.ndarray, ref_reps: int) -> dict:
    """The released-processor config: its encode/decode times, tokens per chunk and MAE on ``test``."""
    released = ReleasedStyleFAST(train)
    rel_ids = released.encode(test)
    return {
        "enc": timeit(lambda: released.encode(test), repeat=ref_reps, warmup=0),
        "dec": timeit(lambda: released.decode(rel_ids, 50, 14), repeat=ref_reps, warmup=0),
        "tokens": float(np.mean([len(i) for i in rel_ids])),
        "mae": float(np.abs(released.decode(rel_ids, 50, 14) - test).mean()),
    }


def _batch1_latency(fast: wt.FASTTokenizer, test: np.ndarray, ids: list, ref_ids: list) -> dict:
    """Median batch-1 encode/decode latency (us) of ours and of the reference style."""
    one = test[:1]
    return {
        "encode": timeit(lambda: fast.encode(one), repeat=50) * 1e6,
        "decode": timeit(lambda: fast.decode(ids[:1]), repeat=50) * 1e6,
        "reference_encode": timeit(lambda: reference_encode(fast, one), repeat=50) * 1e6,
        "reference_decode": timeit(lambda: reference_decode(fast, ref_ids[:1], 50, 14), repeat=50) * 1e6,
    }


def _other_rows(train: np.ndarray, test: np.ndarray, budget: float, reps: int) -> list[list]:
    """Table rows [name, enc chunks/s, dec chunks/s, tokens/chunk, MAE] for RVQ and bins at FAST's budget."""
    n = len(test)
    levels = max(1, round(budget / 10))
    rvq = wt.RVQTokenizer(levels=levels, codebook_size=256, segments=10, iters=10).fit(train[:1000])
    stride = max(1, round(50 / max(1, budget / 14 - 1)))
    bins = wt.BinTokenizer(256, time_stride=stride).fit(train)
    rows = []
    for name, tok in (("rvq", rvq), ("bins", bins)):
        tids = tok.encode(test)
        out = tok.decode(tids)
        e = timeit(lambda: tok.encode(test), repeat=reps)
        d = timeit(lambda: tok.decode(tids), repeat=reps)
        rows.append(
            [
                name,
                n / e,
                n / d,
                float(np.mean([len(i) for i in tids])),
                float(np.abs(out.actions - test).mean()),
            ]
        )
    return rows


def _result(n: int, t: dict, rel: dict, latency: dict, rows: list[list], extra: dict) -> dict:
    """The JSON line: throughputs, speed-ups, latency, per-tokenizer budgets/MAE, plus ``extra`` keys."""
    return {
        "chunks": n,
        "shape": [50, 14],
        "fast_encode_chunks_per_s": n / t["enc"],
        "fast_decode_chunks_per_s": n / t["dec"],
        "fast_encode_us_per_chunk": _per_chunk_us(t["enc"], n),
        "fast_decode_us_per_chunk": _per_chunk_us(t["dec"], n),
        "reference_encode_chunks_per_s": n / t["ref_enc"],
        "reference_decode_chunks_per_s": n / t["ref_dec"],
        "encode_speedup_vs_reference": t["ref_enc"] / t["enc"],
        "decode_speedup_vs_reference": t["ref_dec"] / t["dec"],
        "encode_speedup_vs_released_config": rel["enc"] / t["enc"],
        "decode_speedup_vs_released_config": rel["dec"] / t["dec"],
        "encode_speedup_vs_tokenizers_encode_batch": t["tk_enc"] / t["enc"],
        "target_20x_met": bool(t["ref_enc"] / t["enc"] >= 20 and t["ref_dec"] / t["dec"] >= 20),
        "batch1_latency_us": latency,
        "tokens_per_chunk": {r[0]: r[3] for r in rows},
        "mae": {r[0]: r[4] for r in rows},
        **extra,
        "machine": machine_info(),
        "timestamp": time.time(),
    }


def _print_summary(result: dict) -> None:
    """Print the matched-budget sweep and the speed-up / latency line."""
    print("\nreconstruction at matched token budgets (FAST scale sets the budget):")
    for row in result["budget_sweep"]:
        print(
            f"  scale {row['fast_scale']:>4}: {row['tokenizer']:<4} {row['tokens_per_chunk']:6.1f} tokens/chunk  "
            f"MAE {row['mae']:.4f}  max {row['max_err']:.3f}"
        )
    lat = result["batch1_latency_us"]
    print(
        f"speed-up vs reference style (same BPE): encode {result['encode_speedup_vs_reference']:.1f}x, "
        f"decode {result['decode_speedup_vs_reference']:.1f}x; vs released-processor config: encode "
        f"{result['encode_speedup_vs_released_config']:.1f}x, decode "
        f"{result['decode_speedup_vs_released_config']:.1f}x; batch-1 latency encode {lat['encode']:.0f} us "
        f"(ref {lat['reference_encode']:.0f}), decode {lat['decode']:.0f} us (ref {lat['reference_decode']:.0f})"
    )


def main(argv: list[str] | None = None) -> dict:
    """Run the benchmark (``--quick``: 300 chunks, fewer repeats, one sweep scale); emit and return the result."""
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 300 if args.quick else 1000
    reps, ref_reps = (3, 1) if args.quick else (7, 3)
    rng = np.random.default_rng(0)
    train = _chunks(rng, 2000)
    test = _chunks(rng, n)

    fast = wt.FASTTokenizer(scale=10, vocab_size=1024).fit(train)
    ours = _time_fast(fast, test, reps, ref_reps)
    t = ours["t"]
    rel = _time_released(train, test, ref_reps)
    latency = _batch1_latency(fast, test, ours["ids"], ours["ref_ids"])

    budget, mae = ours["budget"], ours["mae"]
    rows = [
        ["fast (wall, numpy)", n / t["enc"], n / t["dec"], budget, mae],
        ["fast (wall, tokenizers encode_batch)", n / t["tk_enc"], float("nan"), budget, mae],
        ["fast reference style, same BPE", n / t["ref_enc"], n / t["ref_dec"], budget, mae],
        ["fast released-processor config", n / rel["enc"], n / rel["dec"], rel["tokens"], rel["mae"]],
        *_other_rows(train, test, budget, reps),
    ]
    sweep = budget_sweep(train, test, (10.0,) if args.quick else (4.0, 10.0, 25.0))
    extra = {"clipped_chunks": ours["clipped_chunks"], "budget_sweep": sweep}
    result = _result(n, t, rel, latency, rows, extra)
    emit("tokenizer", result, rows, ["tokenizer", "enc chunks/s", "dec chunks/s", "tokens/chunk", "MAE"])
    _print_summary(result)
    return result


if __name__ == "__main__":
    main()
