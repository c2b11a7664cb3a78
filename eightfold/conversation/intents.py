"""Intent matching against a catalogue, intent discovery by clustering, and clustering scores.

Matching: each intent of a catalogue has a few example utterances; a turn gets the intent whose
closest example is most similar (cosine of sentence embeddings), or ``other`` below a threshold.
Discovery: k-means on the embeddings (``n_init=10``), each cluster named by its most distinctive
words (class-based TF-IDF). Scores: accuracy after Hungarian matching of clusters to gold labels,
normalised mutual information and adjusted Rand index, as in intent-induction work (DSTC11
track 2).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np

from eightfold.conversation.encoder import Encoder

logger = logging.getLogger(__name__)

__all__ = [
    "IntentCatalogue",
    "IntentClusters",
    "clustering_scores",
    "discover_intents",
    "hungarian_accuracy",
    "load_catalogue",
]


@dataclass(kw_only=True)
class IntentCatalogue:
    """Intent label to example utterances."""

    intents: dict[str, list[str]]

    def __post_init__(self) -> None:
        if not isinstance(self.intents, Mapping) or not self.intents:
            raise ValueError(
                "intents: expected a non-empty mapping of intent label to example utterances"
            )
        for label, examples in self.intents.items():
            if not isinstance(label, str) or not label:
                raise ValueError(f"intent label {label!r}: expected a non-empty string")
            if (
                not isinstance(examples, list)
                or not examples
                or not all(isinstance(e, str) and e.strip() for e in examples)
            ):
                raise ValueError(
                    f"intent {label!r}: expected a non-empty list of example strings, got "
                    f"{examples!r}"
                )

    @property
    def labels(self) -> list[str]:
        return list(self.intents)


def load_catalogue(
    path: str | os.PathLike[str] | Mapping[str, list[str]] | None = None,
) -> IntentCatalogue:
    """Load a catalogue: a JSON file ``{"intents": {label: [examples]}}`` (or just the mapping),
    a mapping, or ``None`` for the default customer-service catalogue shipped with eightfold."""
    if path is None:
        text = (
            resources.files("eightfold.conversation")
            .joinpath("data/intents.json")
            .read_text(encoding="utf-8")
        )
        data = json.loads(text)
    elif isinstance(path, Mapping):
        data = dict(path)
    else:
        file = Path(path)
        if not file.is_file():
            raise FileNotFoundError(f"intent catalogue {str(file)!r} does not exist")
        try:
            data = json.loads(file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"intent catalogue {str(file)!r} is not valid JSON: {exc}") from None
    if isinstance(data, Mapping) and "intents" in data:
        data = data["intents"]
    return IntentCatalogue(intents={str(k): list(v) for k, v in dict(data).items()})


class IntentMatcher:
    """Nearest-example intent matching with a fixed encoder (examples encoded once)."""

    def __init__(self, catalogue: IntentCatalogue, encoder: Encoder, threshold: float) -> None:
        self.catalogue = catalogue
        self.encoder = encoder
        self.threshold = threshold
        self._labels: list[str] = []
        examples: list[str] = []
        for label, items in catalogue.intents.items():
            self._labels += [label] * len(items)
            examples += items
        self._examples = encoder.encode(examples)  # (n_examples, dim)

    def match(self, embeddings: np.ndarray) -> list[tuple[str, float]]:
        """Best intent and its cosine for each row of ``embeddings`` ``(n, dim)``."""
        if embeddings.shape[0] == 0:
            return []
        sims = embeddings @ self._examples.T  # (n, n_examples)
        best = sims.argmax(axis=1)
        out = []
        for row, column in enumerate(best):
            score = float(sims[row, column])
            label = self._labels[column] if score >= self.threshold else "other"
            out.append((label, round(score, 4)))
        return out


@dataclass(kw_only=True)
class IntentClusters:
    """Result of :func:`discover_intents`.

    ``labels`` has one cluster id per input text; ``names[c]`` is a short name for cluster ``c``
    made of its most distinctive words; ``sizes[c]`` counts its members.
    """

    labels: np.ndarray
    names: list[str]
    sizes: list[int]
    embeddings: np.ndarray


def _cluster_names(texts: Sequence[str], labels: np.ndarray, k: int, top: int = 3) -> list[str]:
    from sklearn.feature_extraction.text import CountVectorizer

    docs = [
        " ".join(t for t, c in zip(texts, labels, strict=True) if c == cluster)
        for cluster in range(k)
    ]
    try:
        vectorizer = CountVectorizer(stop_words="english", lowercase=True, min_df=1)
        counts = vectorizer.fit_transform(docs).toarray().astype(float)  # (k, vocab)
    except ValueError:  # only stop words
        return [f"cluster_{c}" for c in range(k)]
    vocab = np.array(vectorizer.get_feature_names_out())
    # Class-based TF-IDF: term frequency within a cluster times how rare the term is across
    # clusters, so words every cluster uses ("please", "coffee") do not name any of them.
    tf = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1.0)
    idf = np.log(1.0 + counts.sum() / np.maximum(counts.sum(axis=0), 1.0))
    scores = tf * idf
    names = []
    for cluster in range(k):
        best = [vocab[i] for i in np.argsort(-scores[cluster])[:top] if scores[cluster, i] > 0]
        names.append("_".join(best) if best else f"cluster_{cluster}")
    return names


def discover_intents(
    texts: Sequence[str],
    n_clusters: int,
    *,
    encoder: Encoder,
    seed: int = 0,
    n_init: int = 10,
    embeddings: np.ndarray | None = None,
) -> IntentClusters:
    """Cluster ``texts`` into ``n_clusters`` intents with k-means on sentence embeddings.

    Parameters
    ----------
    texts
        Utterances (usually the customer's first request of each conversation).
    n_clusters
        Number of intents to find; at most ``len(texts)``.
    encoder
        Sentence encoder (ignored when ``embeddings`` is given).
    embeddings
        Precomputed ``(len(texts), dim)`` unit-length embeddings.
    """
    from sklearn.cluster import KMeans

    if not isinstance(n_clusters, int) or n_clusters < 1:
        raise ValueError(f"n_clusters={n_clusters!r}; expected a positive integer")
    if len(texts) < n_clusters:
        raise ValueError(
            f"n_clusters={n_clusters} but only {len(texts)} texts; pass at most {len(texts)}"
        )
    x = encoder.encode(list(texts)) if embeddings is None else np.asarray(embeddings)
    if x.shape[0] != len(texts):
        raise ValueError(f"embeddings has {x.shape[0]} rows for {len(texts)} texts")
    km = KMeans(n_clusters=n_clusters, n_init=n_init, random_state=seed)
    labels = km.fit_predict(x)
    return IntentClusters(
        labels=labels,
        names=_cluster_names(texts, labels, n_clusters),
        sizes=[int((labels == c).sum()) for c in range(n_clusters)],
        embeddings=x,
    )


def hungarian_accuracy(predicted: Sequence[int] | np.ndarray, gold: Sequence[object]) -> float:
    """Accuracy after the one-to-one cluster-to-label mapping that maximises agreement."""
    from scipy.optimize import linear_sum_assignment

    pred = np.asarray(predicted)
    if len(pred) != len(gold):
        raise ValueError(f"predicted has {len(pred)} items, gold {len(gold)}")
    if len(pred) == 0:
        raise ValueError("predicted and gold are empty")
    _, gold_ids = np.unique(np.asarray(gold, dtype=object).astype(str), return_inverse=True)
    _, pred_ids = np.unique(pred, return_inverse=True)
    table = np.zeros((pred_ids.max() + 1, gold_ids.max() + 1), dtype=np.int64)
    np.add.at(table, (pred_ids, gold_ids), 1)
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(pred))


def clustering_scores(
    predicted: Sequence[int] | np.ndarray, gold: Sequence[object]
) -> dict[str, float]:
    """``{"acc", "nmi", "ari"}`` of a clustering against gold labels."""
    from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

    gold_str = [str(g) for g in gold]
    return {
        "acc": hungarian_accuracy(predicted, gold_str),
        "nmi": float(normalized_mutual_info_score(gold_str, list(predicted))),
        "ari": float(adjusted_rand_score(gold_str, list(predicted))),
    }
