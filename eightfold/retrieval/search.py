"""MaxSim (late-interaction) scoring.

``score(Q, D) = sum_i max_j <q_i, d_j>``: every query token finds its best document vector
(Khattab and Zaharia, ColBERT, arXiv:2004.12832). Padding is excluded with ``-inf`` before the
maximum, never by multiplying with a mask (a padded zero would beat negative similarities).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

__all__ = ["maxsim", "maxsim_flat", "maxsim_padded"]


def maxsim_padded(
    queries: torch.Tensor,
    documents: torch.Tensor,
    document_mask: torch.Tensor,
    query_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """MaxSim between padded batches of queries and documents.

    Parameters
    ----------
    queries
        ``(n_queries, q_len, dim)``.
    documents
        ``(n_docs, d_len, dim)``.
    document_mask
        ``(n_docs, d_len)`` bool, true for real vectors.
    query_mask
        ``(n_queries, q_len)`` bool, true for real query tokens (default: all).

    Returns
    -------
    torch.Tensor
        ``(n_queries, n_docs)`` float32 scores.
    """
    if queries.dim() != 3 or documents.dim() != 3:
        raise ValueError(
            f"queries and documents must be 3-D (batch, tokens, dim), got shapes "
            f"{tuple(queries.shape)} and {tuple(documents.shape)}"
        )
    sims = torch.einsum("qid,njd->qnij", queries.float(), documents.float())
    sims = sims.masked_fill(~document_mask.bool()[None, :, None, :], float("-inf"))
    best = sims.amax(dim=-1)  # (n_queries, n_docs, q_len)
    if query_mask is not None:
        best = best.masked_fill(~query_mask.bool()[:, None, :], 0.0)
    return best.sum(-1)


def maxsim(query: torch.Tensor, documents: Sequence[torch.Tensor]) -> torch.Tensor:
    """MaxSim of one query against a list of documents of different lengths.

    Parameters
    ----------
    query
        ``(q_len, dim)``.
    documents
        Each ``(d_len_i, dim)`` with ``d_len_i >= 1``.

    Returns
    -------
    torch.Tensor
        ``(n_docs,)`` float32 scores.
    """
    if not documents:
        return torch.zeros(0)
    lengths = [int(d.shape[0]) for d in documents]
    if min(lengths) < 1:
        raise ValueError("every document needs at least one vector; got an empty document")
    flat = torch.cat([d.float() for d in documents]).numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return torch.from_numpy(maxsim_flat(query.float().numpy()[None], flat, offsets)[0])


def maxsim_flat(
    queries: np.ndarray | Sequence[np.ndarray], vectors: np.ndarray, offsets: np.ndarray
) -> np.ndarray:
    """MaxSim against documents stored back to back, as in an index.

    Parameters
    ----------
    queries
        ``(n_queries, q_len, dim)`` float32 (all queries the same length) or a list of
        ``(q_len_i, dim)`` arrays.
    vectors
        ``(n_vectors, dim)`` document vectors, document after document.
    offsets
        ``(n_docs + 1,)`` int64: document ``i`` owns ``vectors[offsets[i]:offsets[i + 1]]``;
        every document is non-empty.

    Returns
    -------
    numpy.ndarray
        ``(n_queries, n_docs)`` float32 scores.
    """
    qs = [np.asarray(q, dtype=np.float32) for q in queries]
    lengths = [q.shape[0] for q in qs]
    stacked = np.concatenate(qs, 0)  # (total query tokens, dim)
    n_docs = len(offsets) - 1
    out = np.zeros((len(qs), n_docs), dtype=np.float32)
    if n_docs == 0:
        return out
    # Score in blocks of whole documents so the (vectors x query tokens) matrix stays small.
    block = 1 << 16
    starts = offsets[:-1]
    doc = 0
    while doc < n_docs:
        first = offsets[doc]
        last_doc = int(np.searchsorted(offsets, first + block, side="right")) - 1
        last_doc = min(max(last_doc, doc + 1), n_docs)
        end = offsets[last_doc]
        chunk = np.asarray(vectors[first:end], dtype=np.float32)
        sims = chunk @ stacked.T  # (chunk vectors, total query tokens)
        best = np.maximum.reduceat(sims, starts[doc:last_doc] - first, axis=0)
        pos = 0
        for qi, n in enumerate(lengths):
            out[qi, doc:last_doc] = best[:, pos : pos + n].sum(1)
            pos += n
        doc = last_doc
    return out
