"""Token pooling: fewer vectors per document with little loss in late-interaction retrieval.

Clavié, Chaffin and Adams, "Reducing the Footprint of Multi-Vector Retrieval with Minimal
Performance Impact via Token Pooling", arXiv:2409.14683. The token vectors of one document are
clustered and every cluster is replaced by the mean of its members. Pooling is an index-time,
document-only step: queries are never pooled.

Three methods are implemented:

``"hierarchical"``
    Ward agglomerative clustering cut at ``k = max(m // pool_factor, 1)`` clusters, the paper's
    method. The input handed to Ward is explicit (``ward_input``) because the reference codes
    disagree:

    * ``"condensed_cosine"`` (default): true pairwise cosine distances ``1 - x_i·x_j``, as in
      PyLate since March 2026 and Sentence-Transformers. For unit vectors this is half the
      squared Euclidean distance, so it agrees closely with textbook Ward and is the fastest.
    * ``"square_rows"``: the full square ``1 - cos`` matrix passed to SciPy, which then treats
      each *row of distances* as an observation (Euclidean between rows). This is what the
      paper-era code did (Stanford ColBERT, PyLate before March 2026); use it to reproduce indexes
      built with that code.
    * ``"vectors"``: Ward on the token vectors themselves (textbook Ward, no reference uses it).

``"kmeans"``
    k-means with the same ``k``, k-means++ seeding from ``seed`` and at most ``kmeans_iterations``
    Lloyd steps (a paper baseline).

``"sequential"``
    The mean of consecutive windows of ``pool_factor`` tokens (``ceil(m / pool_factor)``
    vectors; a paper baseline).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, NamedTuple

import numpy as np
import torch

__all__ = [
    "METHODS",
    "WARD_INPUTS",
    "PooledEmbeddings",
    "PoolingConfig",
    "pool_embeddings",
    "pool_embeddings_sweep",
    "ward_linkage",
]

Method = Literal["hierarchical", "kmeans", "sequential"]
WardInput = Literal["condensed_cosine", "square_rows", "vectors"]
METHODS: tuple[str, ...] = ("hierarchical", "kmeans", "sequential")
WARD_INPUTS: tuple[str, ...] = ("condensed_cosine", "square_rows", "vectors")


class PooledEmbeddings(NamedTuple):
    """The pooled vectors of one document and where every input token went.

    Attributes
    ----------
    vectors
        ``(rows, dim)``, same dtype as the input.
    row_of_token
        ``(n_tokens,)`` int64: for every input token, the index of the output row that holds it
        (a protected token points to its own copied row).
    """

    vectors: torch.Tensor
    row_of_token: torch.Tensor


@dataclass(kw_only=True, frozen=True)
class PoolingConfig:
    """Settings of :func:`pool_embeddings` (stored in an index manifest).

    Parameters
    ----------
    pool_factor
        Average number of tokens merged into one vector; 1 disables pooling.
    method
        ``"hierarchical"`` (Ward, default), ``"kmeans"`` or ``"sequential"``.
    ward_input
        What Ward clusters: ``"condensed_cosine"`` (default), ``"square_rows"`` (paper-era code)
        or ``"vectors"``. Used only by ``method="hierarchical"``.
    protected_tokens
        Leading rows kept verbatim (default 1: the ``[CLS]`` vector, as PyLate does).
    protected_position
        Where protected rows go in the output: ``"first"`` (PyLate today) or ``"last"``
        (Stanford ColBERT and PyLate before March 2026).
    k_counts_protected
        Count protected rows when computing ``k`` (Stanford ColBERT: ``k = max(n // p, 1)``)
        instead of ``k = max(m // p, 1)`` with ``m = n - protected_tokens``.
    renormalize
        L2-normalise every pooled row. Off by default, like the code behind the paper: a plain
        mean never scores higher than its best member under MaxSim.
    seed, kmeans_iterations
        k-means seeding and iteration cap.
    """

    pool_factor: int = 2
    method: Method = "hierarchical"
    ward_input: WardInput = "condensed_cosine"
    protected_tokens: int = 1
    protected_position: Literal["first", "last"] = "first"
    k_counts_protected: bool = False
    renormalize: bool = False
    seed: int = 0
    kmeans_iterations: int = 20

    def __post_init__(self) -> None:
        _check_int("pool_factor", self.pool_factor, minimum=1)
        if self.method not in METHODS:
            raise ValueError(
                f"method={self.method!r} is not a pooling method; expected one of {METHODS}"
            )
        if self.ward_input not in WARD_INPUTS:
            raise ValueError(
                f"ward_input={self.ward_input!r} is not supported; expected one of {WARD_INPUTS}"
            )
        _check_int("protected_tokens", self.protected_tokens, minimum=0)
        if self.protected_position not in ("first", "last"):
            raise ValueError(
                f"protected_position={self.protected_position!r}; expected 'first' or 'last'"
            )
        _check_int("kmeans_iterations", self.kmeans_iterations, minimum=1)
        _check_int("seed", self.seed, minimum=0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PoolingConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown pooling settings {unknown}; known settings: {sorted(known)}")
        return cls(**data)


def _check_int(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"{name} must be an int, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name}={value}; expected an integer >= {minimum}")


def _as_matrix(x: Any) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(x)
    if not isinstance(x, torch.Tensor):
        raise TypeError(
            f"x must be a torch.Tensor or numpy array of shape (n_tokens, dim), got "
            f"{type(x).__name__}"
        )
    if x.dim() != 2:
        raise ValueError(
            f"x must have shape (n_tokens, dim), got shape {tuple(x.shape)}; pool one document "
            "at a time (use pool_embeddings on each document of a batch)"
        )
    if not x.is_floating_point():
        raise TypeError(f"x must be a floating-point tensor, got dtype {x.dtype}")
    return x


def ward_linkage(x: torch.Tensor, ward_input: WardInput = "condensed_cosine") -> np.ndarray:
    """The Ward linkage matrix of the rows of ``x`` (the dendrogram does not depend on ``k``).

    Parameters
    ----------
    x
        ``(m, dim)`` unit-norm token vectors, ``m >= 2``.
    ward_input
        See :class:`PoolingConfig`.

    Returns
    -------
    numpy.ndarray
        ``(m - 1, 4)`` float64, SciPy's linkage format.
    """
    from scipy.cluster.hierarchy import linkage

    if x.shape[0] < 2:
        raise ValueError(f"Ward needs at least 2 rows, got {x.shape[0]}")
    if ward_input == "vectors":
        return linkage(x.detach().to(torch.float64).cpu().numpy(), method="ward")
    # Like the reference code, the cosine matrix is computed in float32: the clustering of near
    # ties depends on this rounding.
    y = x.detach().to(torch.float32).cpu()
    distances = 1.0 - torch.mm(y, y.t()).numpy()
    if ward_input == "square_rows":
        with warnings.catch_warnings():
            # SciPy rightly warns that a square matrix looks like distances; reading it as
            # observations is exactly the paper-era behaviour this mode reproduces.
            warnings.simplefilter("ignore")
            return linkage(distances, metric="euclidean", method="ward")
    if ward_input != "condensed_cosine":
        raise ValueError(f"ward_input={ward_input!r}; expected one of {WARD_INPUTS}")
    rows, cols = np.triu_indices(distances.shape[0], k=1)
    # float32 rounding can make the distance of two identical unit vectors about -1e-7, which
    # gives a negative merge height that SciPy's fcluster rejects; a distance is never negative.
    condensed = np.maximum(distances[rows, cols], 0.0)
    return linkage(condensed, method="ward")


def _cut(z: np.ndarray, k: int) -> np.ndarray:
    """Cluster labels ``0..c-1`` (``c <= k``) in SciPy's label order, empty labels dropped."""
    from scipy.cluster.hierarchy import fcluster

    labels = fcluster(z, t=k, criterion="maxclust")
    # maxclust can return fewer than k labels (tied merge heights); renumber densely keeping
    # SciPy's order, so no empty cluster ever becomes a row.
    _, dense = np.unique(labels, return_inverse=True)
    return dense.astype(np.int64)


def _kmeans_labels(x: torch.Tensor, k: int, *, seed: int, iterations: int) -> np.ndarray:
    data = x.detach().to(torch.float32).cpu()
    n = data.shape[0]
    gen = torch.Generator().manual_seed(seed)

    # k-means++ seeding: each next centre is drawn with probability proportional to the squared
    # distance to the nearest centre chosen so far.
    centres = [int(torch.randint(n, (1,), generator=gen))]
    nearest = ((data - data[centres[0]]) ** 2).sum(1)
    for _ in range(1, k):
        total = float(nearest.sum())
        if total <= 0.0:  # fewer distinct points than k
            break
        pick = int(torch.multinomial(nearest / total, 1, generator=gen))
        centres.append(pick)
        nearest = torch.minimum(nearest, ((data - data[pick]) ** 2).sum(1))
    centroids = data[centres].clone()

    labels = torch.zeros(n, dtype=torch.long)
    for step in range(iterations):
        # Squared Euclidean distance without the per-point constant |x|^2.
        new = ((centroids**2).sum(1)[None, :] - 2 * data @ centroids.t()).argmin(1)
        if step > 0 and torch.equal(new, labels):
            break
        labels = new
        sums = torch.zeros_like(centroids).index_add_(0, labels, data)
        sizes = torch.bincount(labels, minlength=centroids.shape[0])
        filled = sizes > 0
        centroids[filled] = sums[filled] / sizes[filled, None].to(data.dtype)

    # Output clusters in reading order of their first token; empty clusters disappear here.
    _, first = np.unique(labels.numpy(), return_index=True)
    order = np.argsort(first)
    remap = np.empty(int(labels.max()) + 1, dtype=np.int64)
    remap[np.unique(labels.numpy())[order]] = np.arange(order.size)
    return remap[labels.numpy()]


def _means(x: torch.Tensor, labels: np.ndarray, renormalize: bool) -> torch.Tensor:
    index = torch.from_numpy(labels)
    count = int(labels.max()) + 1
    sums = torch.zeros(count, x.shape[1], dtype=torch.float64)
    sums.index_add_(0, index, x.detach().to(torch.float64).cpu())
    sizes = torch.bincount(index, minlength=count).to(torch.float64)
    pooled = sums / sizes[:, None]
    if renormalize:
        pooled = torch.nn.functional.normalize(pooled, dim=1)
    return pooled.to(dtype=x.dtype, device=x.device)


def _assemble(
    x: torch.Tensor, protected: int, labels: np.ndarray, pooled: torch.Tensor, position: str
) -> PooledEmbeddings:
    head = x[:protected]
    rows = pooled.shape[0]
    if position == "first":
        vectors = torch.cat([head, pooled], 0)
        row_of_token = np.concatenate([np.arange(protected), labels + protected])
    else:
        vectors = torch.cat([pooled, head], 0)
        row_of_token = np.concatenate([np.arange(protected) + rows, labels])
    return PooledEmbeddings(vectors, torch.from_numpy(row_of_token.astype(np.int64)))


def _identity(x: torch.Tensor) -> PooledEmbeddings:
    return PooledEmbeddings(x.clone(), torch.arange(x.shape[0], dtype=torch.long))


def _num_clusters(config: PoolingConfig, n: int, m: int) -> int:
    base = n if config.k_counts_protected else m
    return max(base // config.pool_factor, 1)


def _pool_with_labels(
    x: torch.Tensor, labels: np.ndarray, config: PoolingConfig, protected: int
) -> PooledEmbeddings:
    pooled = _means(x[protected:], labels, config.renormalize)
    return _assemble(x, protected, labels, pooled, config.protected_position)


def pool_embeddings(
    x: torch.Tensor | np.ndarray,
    pool_factor: int = 2,
    method: Method = "hierarchical",
    *,
    config: PoolingConfig | None = None,
    **settings: Any,
) -> PooledEmbeddings:
    """Pool the token vectors of one document.

    Parameters
    ----------
    x
        ``(n_tokens, dim)`` token vectors of one document, L2-normalised rows.
    pool_factor
        Average number of tokens per output vector. ``1`` returns ``x`` unchanged (values,
        order and dtype). Hierarchical and k-means pooling keep
        ``protected + max(m // pool_factor, 1)`` rows (fewer when tokens tie), sequential
        pooling ``protected + ceil(m / pool_factor)``, where ``m = n_tokens - protected``.
    method
        ``"hierarchical"`` (default), ``"kmeans"`` or ``"sequential"``.
    config
        A full :class:`PoolingConfig`; when given, ``pool_factor``, ``method`` and ``settings``
        must not be.
    **settings
        Other :class:`PoolingConfig` fields: ``ward_input``, ``protected_tokens``,
        ``protected_position``, ``k_counts_protected``, ``renormalize``, ``seed``,
        ``kmeans_iterations``.

    Returns
    -------
    PooledEmbeddings
        ``vectors`` ``(rows, dim)`` and ``row_of_token`` ``(n_tokens,)``.

    Notes
    -----
    When ``k >= m`` (for example a document of one or two tokens) no clustering runs and the
    rows come back unchanged; the paper-era implementations raised in that case.

    Examples
    --------
    >>> x = torch.nn.functional.normalize(torch.randn(10, 8), dim=1)
    >>> out = pool_embeddings(x, pool_factor=2)
    >>> out.vectors.shape, out.row_of_token.shape
    (torch.Size([5, 8]), torch.Size([10]))
    """
    if config is None:
        config = PoolingConfig(pool_factor=pool_factor, method=method, **settings)
    elif settings or pool_factor != 2 or method != "hierarchical":
        raise ValueError(
            "pass either config=PoolingConfig(...) or pool_factor/method/settings, not both"
        )
    return pool_embeddings_sweep(x, [config.pool_factor], config=config)[config.pool_factor]


def pool_embeddings_sweep(
    x: torch.Tensor | np.ndarray,
    pool_factors: Iterable[int],
    *,
    config: PoolingConfig | None = None,
    timings: dict[int, float] | None = None,
    **settings: Any,
) -> dict[int, PooledEmbeddings]:
    """Pool one document at several pool factors, computing the Ward dendrogram only once.

    Parameters
    ----------
    x
        ``(n_tokens, dim)`` token vectors.
    pool_factors
        The factors to cut at; ``config.pool_factor`` is ignored.
    config, settings
        As in :func:`pool_embeddings` (``method`` may be one of ``settings``).
    timings
        When given, ``timings[p]`` is increased by the seconds pooling at factor ``p`` alone
        would take (the shared Ward dendrogram is counted for every factor).

    Returns
    -------
    dict[int, PooledEmbeddings]
        One result per pool factor.
    """
    x = _as_matrix(x)
    factors: Sequence[int] = list(pool_factors)
    if not factors:
        raise ValueError("pool_factors is empty; pass at least one pool factor such as [2]")
    for p in factors:
        _check_int("pool_factor", p, minimum=1)
    if config is None:
        config = PoolingConfig(pool_factor=factors[0], **settings)
    elif settings:
        raise ValueError("pass either config=PoolingConfig(...) or settings, not both")

    n = x.shape[0]
    protected = min(config.protected_tokens, n)
    m = n - protected
    results: dict[int, PooledEmbeddings] = {}
    z: np.ndarray | None = None
    linkage_seconds = 0.0
    for p in factors:
        start = time.perf_counter()
        cfg = PoolingConfig(**{**config.to_dict(), "pool_factor": p})
        k = _num_clusters(cfg, n, m)
        if p == 1 or k >= m:
            results[p] = _identity(x)
        else:
            if cfg.method == "sequential":
                labels = np.arange(m, dtype=np.int64) // p
            elif cfg.method == "kmeans":
                labels = _kmeans_labels(
                    x[protected:], k, seed=cfg.seed, iterations=cfg.kmeans_iterations
                )
            else:
                if z is None:
                    z = ward_linkage(x[protected:], cfg.ward_input)
                    linkage_seconds = time.perf_counter() - start
                    start = time.perf_counter()
                labels = _cut(z, k)
            results[p] = _pool_with_labels(x, labels, cfg, protected)
        if timings is not None:
            shared = linkage_seconds if z is not None else 0.0
            timings[p] = timings.get(p, 0.0) + time.perf_counter() - start + shared
    return results


def expected_rows(n_tokens: int, config: PoolingConfig) -> int:
    """The number of rows :func:`pool_embeddings` returns when no tokens tie."""
    protected = min(config.protected_tokens, n_tokens)
    m = n_tokens - protected
    k = _num_clusters(config, n_tokens, m)
    if config.pool_factor == 1 or k >= m:
        return n_tokens
    if config.method == "sequential":
        return protected + math.ceil(m / config.pool_factor)
    return protected + k
