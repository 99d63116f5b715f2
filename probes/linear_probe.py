"""Linear probes on captured activations, with Hewitt & Liang (2019) control tasks.

scikit-learn trains the probe (``LogisticRegression`` or ``RidgeClassifier``); what is added
here is the plumbing around it: token activations captured from any hook at any layer (or
features derived from them, e.g. SAE activations, via ``feature_fn``), a held-out split by
prompt (test tokens come from unseen prompts), and the control task of Hewitt & Liang
("Designing and Interpreting Probes with Control Tasks"): every word *type* gets a label drawn
at random from the task's label distribution, fixed for all its occurrences, so a probe can
only solve it by memorising types. Selectivity = task accuracy - control accuracy (held out).

    df = probe_layers(loaded, prompts, label_fn, layers=[0, 1, 2])
    # layer, hook, stat (train_acc | test_acc | control_train_acc | control_test_acc |
    #                    selectivity | majority_acc | n_train | n_test), value
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import LogisticRegression, RidgeClassifier
from sklearn.model_selection import GroupShuffleSplit
from sklearn.preprocessing import StandardScaler

from probes.accumulators import real_rows
from probes.capture import stream
from probes.models import LoadedModel


@dataclass(frozen=True)
class LinearProbeConfig:
    """Settings of a linear probe."""

    kind: str = "logistic"  # "logistic" (LogisticRegression) | "ridge" (RidgeClassifier)
    strength: float = 1.0  # logistic: C (inverse L2 strength); ridge: alpha
    test_fraction: float = 0.25  # share of prompts held out
    control: bool = True  # also train on the Hewitt & Liang control task
    max_iter: int = 2000  # solver iterations (logistic)
    seed: int = 0  # split and control-label seed

    def __post_init__(self) -> None:
        if self.kind not in ("logistic", "ridge"):
            raise ValueError(f"kind must be 'logistic' or 'ridge', got {self.kind!r}")
        if not 0.0 < self.test_fraction < 1.0:
            raise ValueError(f"test_fraction must be in (0, 1), got {self.test_fraction}")
        if self.strength <= 0:
            raise ValueError(f"strength must be > 0, got {self.strength}")


class ProbeResult(NamedTuple):
    """Accuracies of one probe (fractions in [0, 1])."""

    train_acc: float
    test_acc: float
    control_train_acc: float  # NaN without control
    control_test_acc: float
    selectivity: float  # test_acc - control_test_acc
    majority_acc: float  # test accuracy of predicting the most frequent training label
    n_train: int
    n_test: int


def control_labels(labels: Sequence[Any], types: Sequence[Any], seed: int = 0) -> np.ndarray:
    """Hewitt & Liang control task: one random label per type, from the label distribution."""
    labels, types = np.asarray(labels), np.asarray(types)
    if len(labels) != len(types):
        raise ValueError(f"{len(labels)} labels but {len(types)} types")
    rng = np.random.default_rng(seed)
    values, counts = np.unique(labels, return_counts=True)
    uniq, inverse = np.unique(types, return_inverse=True)
    per_type = rng.choice(values, size=len(uniq), p=counts / counts.sum())
    return per_type[inverse]


def _classifier(config: LinearProbeConfig):
    if config.kind == "ridge":
        return RidgeClassifier(alpha=config.strength)
    return LogisticRegression(C=config.strength, max_iter=config.max_iter)


def _fit_score(x_tr, y_tr, x_te, y_te, config) -> tuple[float, float]:
    if len(np.unique(y_tr)) < 2:  # one class only: the probe is the constant predictor
        return float(np.mean(y_tr == y_tr[0])), float(np.mean(y_te == y_tr[0]))
    clf = _classifier(config).fit(x_tr, y_tr)
    return float(clf.score(x_tr, y_tr)), float(clf.score(x_te, y_te))


def fit_probe(x: np.ndarray, y: Sequence[Any], groups: Sequence[Any],
              types: Sequence[Any] | None = None,
              config: LinearProbeConfig = LinearProbeConfig()) -> ProbeResult:
    """Train/evaluate a probe on features ``x`` (n, d_probe), held out by ``groups`` (e.g. prompt).

    ``types`` (e.g. token strings) define the control task; without them it is skipped.
    """
    x, y, groups = np.asarray(x, dtype=np.float64), np.asarray(y), np.asarray(groups)
    if not (len(x) == len(y) == len(groups)) or x.ndim != 2:
        raise ValueError(f"need x (n, d), y (n,), groups (n,); got {x.shape}, {y.shape}, "
                         f"{groups.shape}")
    if len(np.unique(groups)) < 2:
        raise ValueError("need examples from at least 2 prompts (groups) for a held-out split")
    split = GroupShuffleSplit(n_splits=1, test_size=config.test_fraction,
                              random_state=config.seed)
    tr, te = next(split.split(x, y, groups))
    scaler = StandardScaler().fit(x[tr])
    x_tr, x_te = scaler.transform(x[tr]), scaler.transform(x[te])
    train_acc, test_acc = _fit_score(x_tr, y[tr], x_te, y[te], config)
    values, counts = np.unique(y[tr], return_counts=True)
    majority = float(np.mean(y[te] == values[np.argmax(counts)]))
    c_train = c_test = float("nan")
    if config.control and types is not None:
        yc = control_labels(y, types, config.seed)
        c_train, c_test = _fit_score(x_tr, yc[tr], x_te, yc[te], config)
    return ProbeResult(train_acc, test_acc, c_train, c_test, test_acc - c_test, majority,
                       len(tr), len(te))


class TokenRows:
    """Accumulator keeping real-token rows of one hook (CPU float32) with their prompt index.

    A probe needs the examples themselves, so this grows with the data (unlike the statistic
    accumulators); use it for probe-sized datasets.
    """

    def __init__(self):
        self.rows: list[torch.Tensor] = []
        self.prompt: list[np.ndarray] = []
        self.position: list[np.ndarray] = []

    def update(self, tensor: torch.Tensor, mask: torch.Tensor | None, **ctx: Any) -> None:
        m = (torch.ones(tensor.shape[:2], dtype=torch.bool, device=tensor.device)
             if mask is None else mask.bool())
        rows = real_rows(tensor, m)  # (n, ...)
        self.rows.append(rows.reshape(rows.shape[0], -1).float().cpu())  # (n, d_probe)
        b, pos = m.nonzero(as_tuple=True)
        idx = ctx.get("prompt_index")
        self.prompt.append((idx.cpu()[b.cpu()] if idx is not None else b.cpu()).numpy())
        self.position.append(pos.cpu().numpy())

    def result(self) -> pd.DataFrame:
        return pd.DataFrame({"prompt": np.concatenate(self.prompt),
                             "position": np.concatenate(self.position)})

    def matrix(self) -> torch.Tensor:
        return torch.cat(self.rows)  # (n, d_probe)


def probe_layers(
    loaded: LoadedModel,
    prompts: Sequence[str],
    label_fn: Callable[[list[str]], Sequence[Any]],
    layers: Sequence[int] | None = None,
    hook: str = "hook_resid_post",
    feature_fn: Callable[[int, torch.Tensor], torch.Tensor] | None = None,
    config: LinearProbeConfig = LinearProbeConfig(),
    batch_size: int = 16,
) -> pd.DataFrame:
    """Per-layer probe curve for a token-level task; returns the tidy ``linear_probe`` table.

    ``label_fn(str_tokens)`` gives one label per token of a prompt (None = skip that token);
    the token string is the word type of the control task. ``hook`` is a block hook name
    (``blocks.L.<hook>``, e.g. "hook_resid_post" or "attn.hook_z"); ``feature_fn(layer, x)``
    maps the captured rows (n, d_probe) to other probe features (e.g. an SAE's encode).
    """
    from probes.tokens import tokenize

    layers = list(range(loaded.cfg.n_layers)) if layers is None else list(layers)
    cols = {layer: TokenRows() for layer in layers}
    stream(loaded, prompts, {f"blocks.{layer}.{hook}": cols[layer] for layer in layers},
           batch_size=batch_size)
    str_tokens = tokenize(loaded, prompts).str_tokens
    labels = [list(label_fn(toks)) for toks in str_tokens]
    for i, (lab, toks) in enumerate(zip(labels, str_tokens)):
        if len(lab) != len(toks):
            raise ValueError(f"label_fn gave {len(lab)} labels for prompt {i} with "
                             f"{len(toks)} tokens")
    frames = []
    for layer in layers:
        meta = cols[layer].result()
        x = cols[layer].matrix()
        if feature_fn is not None:
            x = feature_fn(layer, x)
        y = np.array([labels[p][q] for p, q in zip(meta["prompt"], meta["position"])],
                     dtype=object)
        keep = np.array([v is not None for v in y])
        types = [str_tokens[p][q] for p, q in zip(meta["prompt"], meta["position"])]
        res = fit_probe(x.detach().cpu().numpy()[keep], y[keep].astype(str),
                        meta["prompt"].to_numpy()[keep], np.asarray(types)[keep], config)
        frames.append(pd.DataFrame({"layer": layer, "hook": f"blocks.{layer}.{hook}",
                                    "stat": list(ProbeResult._fields),
                                    "value": [float(v) for v in res]}))
    return pd.concat(frames, ignore_index=True)
