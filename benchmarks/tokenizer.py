"""Tokenizer benchmark: wall-tokenizer FAST vs a per-sample reference-style FAST, and FAST vs RVQ vs bins.

Batches of 1,000 chunks of 50x14 (smooth random walks in [-1, 1]). The reference-style baseline does what the
original processor does per chunk: scipy DCT of one chunk, ``chr()`` per coefficient, one BPE encode call,
and per-chunk decode. Run: ``python benchmarks/tokenizer.py [--quick]``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import scipy.fft

sys.path.insert(0, str(Path(__file__).parent))
from _common import emit, machine_info

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


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 300 if args.quick else 1000
    rng = np.random.default_rng(0)
    train = np.clip(rng.normal(size=(2000, 50, 14)).cumsum(1) * 0.03, -1, 1)
    test = np.clip(rng.normal(size=(n, 50, 14)).cumsum(1) * 0.03, -1, 1)

    fast = wt.FASTTokenizer(scale=10, vocab_size=1024).fit(train)
    t = time.perf_counter()
    ids = fast.encode(test)
    enc = time.perf_counter() - t
    t = time.perf_counter()
    dec_out = fast.decode(ids)
    dec = time.perf_counter() - t
    t = time.perf_counter()
    ref_ids = reference_encode(fast, test)
    ref_enc = time.perf_counter() - t
    t = time.perf_counter()
    reference_decode(fast, ref_ids, 50, 14)
    ref_dec = time.perf_counter() - t
    assert all(list(a) == b for a, b in zip(ids, ref_ids)), "batched and reference FAST disagree"

    budget = float(np.mean([len(i) for i in ids]))
    rows = [["fast (wall, batched)", n / enc, n / dec, budget, float(np.abs(dec_out.actions - test).mean())]]
    rows.append(["fast (reference style)", n / ref_enc, n / ref_dec, budget, rows[0][4]])
    levels = max(1, round(budget / 10))
    rvq = wt.RVQTokenizer(levels=levels, codebook_size=256, segments=10, iters=10).fit(train[:1000])
    stride = max(1, round(50 / max(1, budget / 14 - 1)))
    bins = wt.BinTokenizer(256, time_stride=stride).fit(train)
    for name, tok in (("rvq", rvq), ("bins", bins)):
        t = time.perf_counter()
        tids = tok.encode(test)
        e = time.perf_counter() - t
        t = time.perf_counter()
        out = tok.decode(tids)
        d = time.perf_counter() - t
        rows.append(
            [
                name,
                n / e,
                n / d,
                float(np.mean([len(i) for i in tids])),
                float(np.abs(out.actions - test).mean()),
            ]
        )

    result = {
        "chunks": n,
        "shape": [50, 14],
        "fast_encode_chunks_per_s": rows[0][1],
        "fast_decode_chunks_per_s": rows[0][2],
        "reference_encode_chunks_per_s": rows[1][1],
        "reference_decode_chunks_per_s": rows[1][2],
        "encode_speedup_vs_reference": rows[0][1] / rows[1][1],
        "decode_speedup_vs_reference": rows[0][2] / rows[1][2],
        "tokens_per_chunk": {r[0]: r[3] for r in rows},
        "mae": {r[0]: r[4] for r in rows},
        "machine": machine_info(),
    }
    emit("tokenizer", result, rows, ["tokenizer", "enc chunks/s", "dec chunks/s", "tokens/chunk", "MAE"])
    return result


if __name__ == "__main__":
    main()
