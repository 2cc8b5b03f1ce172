"""Exact batched BPE encoding and decoding in numpy, bit-identical to ``tokenizers``' BPE model.

``tokenizers`` encodes one word at a time with a priority queue: it repeatedly merges the adjacent pair of
lowest merge rank, leftmost first on ties, and queues the pairs each merge creates.  We reach the same ids
for a whole batch at once, with a few dozen numpy passes instead of a heap per word:

1. **Rank order.**  When every merge ranks above the merges that produce its two inputs (true of tables that
   ``BpeTrainer`` learns; checked in :meth:`BatchBPE.from_merges`), the ranks one word applies never
   decrease, so applying merges to the whole batch in rank order gives the queue's result.
2. **Groups.**  Ranks are cut into consecutive groups in which no merge consumes a token produced by a merge
   of the same group.  Inside a group no merge can create another candidate pair, so the queue reduces to a
   greedy matching on a path by (rank, position), resolved in parallel rounds: a pair merges when it beats
   its live neighbours; a run of one self-pair ``(a, a)`` merges at even offsets (leftmost first).
3. **Doubling chain.**  Tables fitted on FAST strings start with ``(z,z)->z2, (z2,z2)->z4, ...`` for the
   zero coefficient; applied first, such a chain has a closed form per run of ``z`` (⌊n/2ᵏ⌋ copies of the top
   token, then the binary remainder, largest first), which removes most symbols before the first pass.

The equivalence is also property-tested against ``tokenizers`` on randomly trained tables.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["BatchBPE", "SymbolTable"]

_NONE = np.iinfo(np.int32).max
_DENSE_TABLE_BYTES = 32 * 2**20  # pair -> rank as a dense int32 table up to here (vocab ~2,900), else sorted


def _offset_in_run(starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For a mask of run starts, each element's offset inside its run and the index of its run's start."""
    ar = np.arange(starts.size, dtype=np.int32)
    first = np.where(starts, ar, 0)
    np.maximum.accumulate(first, out=first)
    return ar - first, first


def _even_offsets_in_runs(pos: np.ndarray) -> np.ndarray:
    """For sorted pair positions of one self-pair ``(a, a)``, the pairs merged leftmost-first in each run."""
    start = np.ones(pos.size, dtype=bool)
    np.not_equal(pos[1:], pos[:-1] + 1, out=start[1:])
    even: np.ndarray = (_offset_in_run(start)[0] & 1) == 0
    return even


def _greedy_matching(pos: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Which candidate pairs merge when pairs are taken in (rank, position) order, each token used once.

    ``pos`` are sorted pair positions (pair k joins tokens pos[k] and pos[k]+1), ``rank`` their merge ranks.
    A pair that shares no token with another candidate always merges; the others go through
    :func:`_matching_rounds`.
    """
    adj = pos[1:] == pos[:-1] + 1
    chained = np.zeros(pos.size, dtype=bool)
    chained[1:] = adj
    chained[:-1] |= adj
    merged = ~chained
    sub = np.flatnonzero(chained)
    if sub.size:
        merged[sub] = _matching_rounds(pos.take(sub), rank.take(sub))
    return merged


def _matching_rounds(pos: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The matching of :func:`_greedy_matching` in parallel rounds.  The lowest live pair always wins a
    round, so the loop ends; in practice after two or three rounds."""
    merged = np.zeros(pos.size, dtype=bool)
    idx: np.ndarray | None = None  # candidates still live, as indices into the original arrays
    while pos.size:
        n = pos.size
        adj = pos[1:] == pos[:-1] + 1  # pairs k and k+1 share a token
        r0, r1 = rank[:-1], rank[1:]
        beats_left = np.ones(n, dtype=bool)
        beats_left[1:] = ~adj | (r1 < r0)  # ties go to the left pair
        beats_right = np.ones(n, dtype=bool)
        beats_right[:-1] = ~adj | (r0 < r1)
        same_left = np.zeros(n, dtype=bool)
        same_left[1:] = adj & (r1 == r0)  # runs of one self-pair (a, a)
        offset, first = _offset_in_run(~same_left)
        last = np.ones(n, dtype=bool)
        last[:-1] = ~same_left[1:]
        win = beats_left.take(first) & ((offset & 1) == 0) & (~last | beats_right)
        if idx is None:
            merged |= win
        else:
            merged[idx[win]] = True
        live = ~win
        live[1:] &= ~(win[:-1] & adj)  # right neighbour of a winner lost its left token
        live[:-1] &= ~(win[1:] & adj)  # left neighbour lost its right token
        live_at = np.flatnonzero(live)
        pos, rank = pos.take(live_at), rank.take(live_at)
        idx = live_at if idx is None else idx.take(live_at)
    return merged


class SymbolTable:
    """Token id -> the values of the alphabet symbols it spells, kept sparse: a batch decodes by scattering
    a few values into a zero matrix.  Symbols whose value is 0 are not stored.

    Slot ``p`` of token ``t`` is its p-th symbol of nonzero value: its offset inside the token
    (``offset[p][t]``) and its value (``value[p][t]``).  Slot 0 of a token without one points at its own
    first symbol with value 0, so slot 0 can be written for every token without a selection.
    """

    def __init__(self, spellings: Sequence[Sequence[int]], values: np.ndarray, readable: np.ndarray) -> None:
        values = np.asarray(values, dtype=np.float64)
        self.readable = np.asarray(readable, dtype=bool)  # False: the id spells nothing in the alphabet
        self.length = np.array([len(s) for s in spellings], dtype=np.int64)
        nz = [[(j, values[v]) for j, v in enumerate(s) if values[v] != 0] for s in spellings]
        self.count = np.array([len(x) for x in nz], dtype=np.int64)
        slots = max(1, int(self.count.max(initial=0)))
        self.offset = np.zeros((slots, len(nz)), dtype=np.int64)
        self.value = np.zeros((slots, len(nz)))
        for t, entries in enumerate(nz):
            for p, (j, v) in enumerate(entries):
                self.offset[p, t], self.value[p, t] = j, v

    def spell(self, ids: np.ndarray, lengths: np.ndarray, width: int) -> tuple[np.ndarray, np.ndarray]:
        """Values [B, width] spelled by B concatenated id sequences (``lengths`` ids each), and whether each
        spelled exactly ``width`` symbols from known ids.  A short sequence leaves zeros at the end, a long
        one is cut; unknown ids are skipped: what is spelled stays where it belongs."""
        b = lengths.size
        out = np.zeros((b, width))
        valid = np.ones(b, dtype=bool)
        if ids.size and (ids.min() < 0 or ids.max() >= self.length.size or not self.readable[ids].all()):
            known = (ids >= 0) & (ids < self.length.size)
            known[known] = self.readable[ids[known]]
            seq = np.repeat(np.arange(b), lengths)
            valid[seq[~known]] = False
            ids = ids[known]
            lengths = np.bincount(seq[known], minlength=b)
        seq_end = np.cumsum(lengths)
        cum = np.zeros(ids.size + 1, dtype=np.int64)  # symbols before token i, over the whole batch
        np.cumsum(self.length.take(ids), out=cum[1:])
        seq_base = cum.take(seq_end - lengths)
        spelled = cum.take(seq_end) - seq_base
        valid &= spelled == width
        # linear index in ``out`` of every token's first symbol
        start = np.repeat(np.arange(b, dtype=np.int64) * width - seq_base, lengths)
        start += cum[:-1]
        row_end = (np.repeat(np.arange(b), lengths) + 1) * width if (spelled > width).any() else None
        flat_out = out.reshape(-1)
        count = self.count.take(ids)
        for p in range(self.offset.shape[0]):
            sel = None if p == 0 else np.flatnonzero(count > p)
            if sel is not None and not sel.size:
                break
            t_ids = ids if sel is None else ids.take(sel)
            at = (start if sel is None else start.take(sel)) + self.offset[p].take(t_ids)
            val = self.value[p].take(t_ids)
            if row_end is not None:  # long sequences: drop what falls past the end of their own row
                keep = at < (row_end if sel is None else row_end.take(sel))
                at, val = at[keep], val[keep]
            flat_out[at] = val
        return out, valid


class BatchBPE:
    """Applies a BPE merge table to a batch of symbol sequences; identical to ``tokenizers``' BPE.

    Build it with :meth:`from_merges`, which returns ``None`` for tables where rank order is not exact
    (then use ``tokenizers`` itself).  :meth:`encode` takes the ids of single-symbol tokens [B, L] (one word
    per row) and returns one int64 id array per row.
    """

    def __init__(self, merges: np.ndarray, vocab_size: int, groups: list[tuple[int, int]], chain: list[int]):
        self.merges = merges  # [M, 3] (left, right, new) in rank order
        self.vocab_size = vocab_size
        self.groups = groups
        self.chain = chain
        self.sentinel = vocab_size
        self._width = w = vocab_size + 1
        self._new = np.ascontiguousarray(merges[:, 2])
        keys = merges[:, 0].astype(np.int64) * w + merges[:, 1]
        self._dense = w * w * 4 <= _DENSE_TABLE_BYTES
        if self._dense:
            self._rank = np.full(w * w, _NONE, dtype=np.int32)
            self._rank[keys[::-1]] = np.arange(len(merges), dtype=np.int32)[::-1]
        else:
            order = np.argsort(keys, kind="stable")
            self._keys, self._key_rank = keys[order], order.astype(np.int32)
        k = len(chain) - 1
        if k > 0:
            # remainder r < 2**k -> its tokens, largest first, at table[r * k : r * k + count[r]]
            table = np.zeros((1 << k) * k, dtype=np.int32)
            count = np.zeros(1 << k, dtype=np.int32)
            for rem in range(1 << k):
                toks = [chain[j] for j in range(k - 1, -1, -1) if rem >> j & 1]
                table[rem * k : rem * k + len(toks)] = toks
                count[rem] = len(toks)
            self._rem_table, self._rem_count = table, count

    # --- construction --------------------------------------------------------------------------------------
    @classmethod
    def from_merges(cls, merges: Sequence[tuple[int, int, int]], vocab_size: int) -> BatchBPE | None:
        """``merges`` are (left id, right id, new id) in rank order.  ``None`` if rank order is not exact."""
        arr = np.asarray(merges, dtype=np.int64).reshape(-1, 3)
        if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
            raise ValueError(f"merge table refers to ids outside [0, {vocab_size})")
        # every input must be produced (by its last producer) before it is consumed
        last_made = np.full(vocab_size, -1, dtype=np.int64)
        np.maximum.at(last_made, arr[:, 2], np.arange(len(arr)))
        ranks = np.arange(len(arr))
        if (last_made[arr[:, 0]] >= ranks).any() or (last_made[arr[:, 1]] >= ranks).any():
            return None
        if len({(a, b) for a, b, _ in arr.tolist()}) != len(arr):
            return None  # a pair listed twice: the queue's tie rules are not ours to guess
        # leading doubling chain (z,z)->z2, (z2,z2)->z4, ... applied in closed form
        chain: list[int] = []
        if len(arr) and arr[0, 0] == arr[0, 1]:
            chain = [int(arr[0, 0])]
            for a, b, c in arr.tolist():
                if not a == b == chain[-1] or c in chain:
                    break
                chain.append(c)
            while (1 << (len(chain) - 1)) > 2**20:  # keep the remainder table small
                chain.pop()
        if len(chain) < 2:
            chain = []  # no chain: every rank goes through the groups
        start = max(len(chain) - 1, 0)
        groups: list[tuple[int, int]] = []
        lo, made = start, set[int]()
        for r in range(start, len(arr)):
            a, b, c = arr[r].tolist()
            if a in made or b in made:
                groups.append((lo, r))
                lo, made = r, set()
            made.add(c)
        if lo < len(arr):
            groups.append((lo, len(arr)))
        return cls(arr.astype(np.int32), vocab_size, groups, chain)

    # --- encoding ------------------------------------------------------------------------------------------
    def _pair_rank(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        if self._dense:
            keys = left * self._width  # int32 suffices: the dense table has fewer than 2**31 entries
            keys += right
            return self._rank.take(keys)
        keys = left.astype(np.int64) * self._width + right
        i = np.searchsorted(self._keys, keys)
        i = np.minimum(i, self._keys.size - 1)
        return np.where(self._keys[i] == keys, self._key_rank[i], _NONE)

    def _collapse_chain(self, s: np.ndarray) -> np.ndarray:
        """Apply the leading doubling chain to every run of its base symbol, in closed form."""
        k = len(self.chain) - 1
        is_z = np.zeros(s.size + 2, dtype=bool)
        np.equal(s, self.chain[0], out=is_z[1:-1])
        edges = np.flatnonzero(is_z[1:] != is_z[:-1])
        starts, n = edges[0::2], edges[1::2] - edges[0::2]
        top, rem = n >> k, n & ((1 << k) - 1)
        # run i is written as cnt[i] tokens from its first slot on: top copies of the top token, then the rest
        cnt = top + self._rem_count.take(rem)
        run = np.repeat(np.arange(n.size, dtype=np.int32), cnt)
        t = np.arange(run.size, dtype=np.int64)
        t -= (np.cumsum(cnt) - cnt).take(run)
        tail = t - top.take(run)
        val = self._rem_table.take(rem.take(run) * k + np.maximum(tail, 0))
        val[tail < 0] = self.chain[k]
        at = starts.take(run) + t
        s[at] = val
        keep = is_z[1:-1]
        np.logical_not(keep, out=keep)
        keep[at] = True
        return np.compress(keep, s)

    def buffer(self, batch: int, length: int) -> np.ndarray:
        """An int32 [batch, length + 1] array whose last column is the separator; fill ``[:, :length]`` with
        symbol ids and pass it to :meth:`encode_buffer` (saves one copy over :meth:`encode`)."""
        buf = np.empty((batch, length + 1), dtype=np.int32)
        buf[:, length] = self.sentinel
        return buf

    def encode(self, symbols: np.ndarray) -> list[np.ndarray]:
        """Symbol ids [B, L] -> one int64 token-id array per sequence."""
        buf = self.buffer(*symbols.shape)
        buf[:, :-1] = symbols
        return self.encode_buffer(buf)

    def encode_buffer(self, buf: np.ndarray) -> list[np.ndarray]:
        """Encode a filled :meth:`buffer` (it is consumed)."""
        s = buf.reshape(-1)
        if self.chain:
            s = self._collapse_chain(s)
        merges = self.merges
        for lo, hi in self.groups:
            if hi - lo == 1:
                a, c, new = merges[lo]
                pos = np.flatnonzero((s[:-1] == a) & (s[1:] == c))
                if not pos.size:
                    continue
                at = np.compress(_even_offsets_in_runs(pos), pos) if a == c else pos
                s[at] = new
            else:
                rank = self._pair_rank(s[:-1], s[1:])
                pos = np.flatnonzero(rank < hi)  # no pair ranked below ``lo`` is left (rank order)
                if not pos.size:
                    continue
                r = rank.take(pos)
                won = _greedy_matching(pos, r)
                at = np.compress(won, pos)
                s[at] = self._new.take(np.compress(won, r))
            keep = np.ones(s.size, dtype=bool)
            keep[at + 1] = False
            s = np.compress(keep, s)
        ends = np.flatnonzero(s == self.sentinel).tolist()
        ids = s.astype(np.int64)
        return [ids[a:e] for a, e in zip([0, *(e + 1 for e in ends[:-1])], ends)]
