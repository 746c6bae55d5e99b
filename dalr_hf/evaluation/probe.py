"""Logistic-regression probe of SentEval's transfer protocol (``usepytorch=True``, ``nhid=0``), re-implemented.

What is reproduced (facts of SentEval's ``tools/classifier.py`` and ``tools/validation.py``):

* model: one linear layer ``d → n_classes``, initialised like ``torch.nn.Linear`` right after
  ``torch.manual_seed(seed)``; loss: mean cross-entropy; optimiser: Adam (lr 1e-3) in ``test`` mode or RMSprop
  (lr 1e-2, α 0.99) in ``fasttest`` mode, with the L2 regularisation as the optimiser's ``weight_decay`` on weight
  and bias;
* training: rounds of ``epoch_size`` epochs (a fresh ``numpy`` permutation per epoch, minibatches of
  ``batch_size``), then dev accuracy; the best-dev weights are kept; training stops at the ``tenacity + 1``-th round
  without improvement (the counter is never reset) or once ``nepoch > max_epoch`` (200);
* randomness: every classifier re-seeds numpy and torch with the task seed (1111), so every fit is deterministic;
  with ``validation_split`` the first permutation of that generator picks the held-out 5 %;
* model selection: L2 grid ``[1e-5, 1e-4, 1e-3, 1e-2]`` (``10**t for t in range(-5, -1)``); scores are rounded
  to two decimals before ``argmax`` (ties go to the smaller penalty).

Because each SentEval classifier re-seeds its generators, the fits for the different L2 values of one fold see the
same initial weights and the same minibatch order, and the fits of different folds are independent. They are
therefore trained side by side — all folds of a cross-validation and all L2 values in one batched
``(n_folds, d, n_l2 * n_classes)`` tensor, each fold with its own seeded generator, minibatches and step count, each
(fold, L2) probe with its own early stopping — with hand-written gradients and optimiser updates (the arithmetic of
``torch.optim.Adam``/``RMSprop``). The results are those of fitting the probes one by one, in a fraction of the time.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch
from sklearn.model_selection import StratifiedKFold

logger = logging.getLogger(__name__)

SENTEVAL_SEED = 1111
L2_GRID: tuple[float, ...] = tuple(10.0**t for t in range(-5, -1))


@dataclass(frozen=True)
class ProbeSettings:
    """Classifier settings of one SentEval mode."""

    kfold: int
    optim: str
    batch_size: int
    tenacity: int
    epoch_size: int
    max_epoch: int = 200
    l2_grid: tuple[float, ...] = L2_GRID
    seed: int = SENTEVAL_SEED
    validation_split: float = 0.05

    def __post_init__(self) -> None:
        if self.optim not in ("adam", "rmsprop"):
            raise ValueError(f"optim must be 'adam' or 'rmsprop', got {self.optim!r}")
        if self.kfold < 2 or self.batch_size < 1 or self.epoch_size < 1 or self.tenacity < 0:
            raise ValueError(f"invalid probe settings: {self}")
        if not self.l2_grid:
            raise ValueError("l2_grid must not be empty")


PROBE_MODES: dict[str, ProbeSettings] = {
    # SimCSE's evaluation.py: --mode test (the numbers to report)
    "test": ProbeSettings(kfold=10, optim="adam", batch_size=64, tenacity=5, epoch_size=4),
    # --mode dev / fasttest
    "fasttest": ProbeSettings(kfold=5, optim="rmsprop", batch_size=128, tenacity=3, epoch_size=2),
}


def probe_settings(mode: str | ProbeSettings, seed: int | None = None) -> ProbeSettings:
    settings = mode if isinstance(mode, ProbeSettings) else PROBE_MODES.get(mode)
    if settings is None:
        raise ValueError(f"unknown transfer mode {mode!r}; expected one of {sorted(PROBE_MODES)}")
    return settings if seed is None else replace(settings, seed=seed)


@dataclass
class LinearProbes:
    """``n`` trained logistic-regression probes (best-dev weights) and their best dev accuracy in [0, 1]."""

    weight: torch.Tensor  # (n, d, c)
    bias: torch.Tensor  # (n, c)
    dev_accuracy: np.ndarray  # (n,)

    def predict(self, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
        """Class predictions, shape (n, len(x)); ties resolve to the lowest class index."""
        preds = []
        for start in range(0, len(x), chunk):
            logits = torch.matmul(x[start : start + chunk], self.weight) + self.bias[:, None, :]
            preds.append(logits.argmax(dim=-1))
        return torch.cat(preds, dim=1)

    def accuracy(self, x: torch.Tensor, y: torch.Tensor) -> np.ndarray:
        return (self.predict(x) == y[None, :]).sum(dim=1).numpy() / len(y)


def _initial_linear(d: int, c: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    # Same draws as SentEval's ``torch.manual_seed(seed); nn.Linear(d, c)``, without touching the global RNG state.
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        layer = torch.nn.Linear(d, c)
    return layer.weight.detach().t().contiguous(), layer.bias.detach().clone()


@contextlib.contextmanager
def _one_thread() -> Iterator[None]:
    """Run the probe's tiny tensor ops on one thread: with intra-op threads, synchronisation costs more than the
    arithmetic (about 15x slower per step on a busy 2-core machine with torch 2.14)."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class ProbeFit:
    """One fit of a group: rows of the shared feature matrix to train on, and to early-stop on.

    ``dev_idx=None`` holds out ``settings.validation_split`` of ``train_idx`` instead, chosen by the first
    permutation of the fit's seeded generator (SentEval's ``validation_split``).
    """

    train_idx: np.ndarray
    dev_idx: np.ndarray | None = None


def train_probes(
    x_train: torch.Tensor,
    y_train: torch.Tensor,
    l2regs: Sequence[float],
    n_classes: int,
    settings: ProbeSettings,
    x_dev: torch.Tensor | None = None,
    y_dev: torch.Tensor | None = None,
) -> LinearProbes:
    """Train one probe per L2 value (same init, same minibatches) with early stopping on dev accuracy.

    Without ``x_dev``, ``settings.validation_split`` of the training examples is held out as dev set.
    """
    n = len(x_train)
    if x_dev is None or y_dev is None:
        return train_probe_group(x_train, y_train, [ProbeFit(np.arange(n))], l2regs, n_classes, settings)[0]
    x = torch.cat([torch.as_tensor(x_train, dtype=torch.float32), torch.as_tensor(x_dev, dtype=torch.float32)])
    y = torch.cat([torch.as_tensor(y_train), torch.as_tensor(y_dev)])
    fit = ProbeFit(np.arange(n), np.arange(n, n + len(x_dev)))
    return train_probe_group(x, y, [fit], l2regs, n_classes, settings)[0]


@_one_thread()
def train_probe_group(
    x: torch.Tensor,
    y: torch.Tensor,
    fits: Sequence[ProbeFit],
    l2regs: Sequence[float],
    n_classes: int,
    settings: ProbeSettings,
) -> list[LinearProbes]:
    """Train ``len(fits) × len(l2regs)`` independent probes at once; one :class:`LinearProbes` per fit.

    Every fit behaves as a separate SentEval classifier: its own ``RandomState(seed)`` (so its own permutations),
    its own number of minibatches per epoch and Adam step count; every (fit, L2) probe stops on its own.
    """
    x = torch.as_tensor(x, dtype=torch.float32)
    y = torch.as_tensor(y, dtype=torch.long)
    d = x.shape[1]
    r, c = len(l2regs), n_classes
    rc = r * c
    bs = settings.batch_size
    # Bias as an extra input column of ones: one parameter tensor per fit, (d + 1, r * c); column block k holds
    # the probe of l2regs[k]. SentEval's weight decay covers weight and bias alike, so the decay is uniform per row.
    xa = torch.cat([x, torch.ones(len(x), 1)], dim=1)
    targets = torch.nn.functional.one_hot(y, c).to(torch.float32)
    decay = torch.tensor(list(l2regs), dtype=torch.float32).repeat_interleave(c)

    rngs = [np.random.RandomState(settings.seed) for _ in fits]
    train_rows: list[np.ndarray] = []
    dev_sets: list[tuple[torch.Tensor, torch.Tensor]] = []
    for fit, rng in zip(fits, rngs):
        rows = np.asarray(fit.train_idx, dtype=np.int64)
        if fit.dev_idx is None:
            permutation = rng.permutation(len(rows))
            n_dev = int(settings.validation_split * len(rows))
            if n_dev == 0:
                raise ValueError(f"validation_split={settings.validation_split} of {len(rows)} examples is empty")
            dev_rows, rows = rows[permutation[:n_dev]], rows[permutation[n_dev:]]
        else:
            dev_rows = np.asarray(fit.dev_idx, dtype=np.int64)
        if len(rows) == 0 or len(dev_rows) == 0:
            raise ValueError("a probe fit needs at least one training and one dev example")
        train_rows.append(rows)
        dev_sets.append((xa[torch.from_numpy(dev_rows)], y[torch.from_numpy(dev_rows)]))

    w0, b0 = _initial_linear(d, c, settings.seed)
    init = torch.cat([w0, b0[None, :]]).repeat(1, r)  # (d + 1, r * c)
    n_fits = len(fits)
    params = init.expand(n_fits, d + 1, rc).contiguous()
    state1, state2 = torch.zeros_like(params), torch.zeros_like(params)
    steps = np.zeros(n_fits, dtype=np.int64)
    best = params.clone()
    best_acc = np.full((n_fits, r), -1.0)
    stopped = np.zeros((n_fits, r), dtype=bool)
    no_gain = np.zeros((n_fits, r), dtype=np.int64)
    live = np.arange(n_fits)  # fits still training; finished ones are dropped from the batch
    results: dict[int, LinearProbes] = {}

    nepoch = 0
    while len(live) and nepoch <= settings.max_epoch:
        sizes = np.array([len(train_rows[f]) for f in live])
        width = int(-(-sizes.max() // bs)) * bs
        for _ in range(settings.epoch_size):
            index = np.zeros((len(live), width), dtype=np.int64)
            for i, f in enumerate(live):
                rows = train_rows[f]
                index[i, : len(rows)] = rows[rngs[f].permutation(len(rows))]
            index_t = torch.from_numpy(index)
            for start in range(0, width, bs):
                counts = np.clip(sizes - start, 0, bs)
                active = counts > 0
                rows_b = index_t[:, start : start + bs]
                xb = xa[rows_b]  # (fits, b, d + 1)
                b = xb.shape[1]
                probs = torch.softmax(torch.bmm(xb, params).view(len(live), b, r, c), dim=-1)
                probs -= targets[rows_b][:, :, None, :]
                if (counts == b).all():
                    probs /= b  # mean cross-entropy
                else:  # short or absent last minibatch of some fits: padding rows weigh 0
                    weights = (torch.arange(b)[None, :] < torch.from_numpy(counts)[:, None]).to(torch.float32)
                    probs *= (weights / torch.from_numpy(np.maximum(counts, 1)).to(torch.float32)[:, None])[
                        :, :, None, None
                    ]
                grad = torch.baddbmm(params * decay, xb.transpose(1, 2), probs.view(len(live), b, rc))
                if active.all():
                    steps[live] += 1
                    _step(settings.optim, params, grad, state1, state2, steps[live])
                else:  # fits without a minibatch left in this epoch are not updated
                    sel = torch.from_numpy(np.flatnonzero(active))
                    steps[live[active]] += 1
                    parts = [params[sel], state1[sel], state2[sel]]
                    _step(settings.optim, parts[0], grad[sel], parts[1], parts[2], steps[live[active]])
                    params[sel], state1[sel], state2[sel] = parts
        nepoch += settings.epoch_size
        accuracy = np.stack([_accuracy(params[i], *dev_sets[f], r, c) for i, f in enumerate(live)])
        running = ~stopped[live]
        improved = running & (accuracy > best_acc[live])
        if improved.any():
            columns = torch.from_numpy(np.repeat(improved, c, axis=1))
            best[live] = torch.where(columns[:, None, :], params, best[live])
            best_acc[live] = np.where(improved, accuracy, best_acc[live])
        flat = running & ~improved
        stopped[live] |= flat & (no_gain[live] >= settings.tenacity)
        no_gain[live] += flat
        finished = stopped[live].all(axis=1)
        if finished.any():
            keep = torch.from_numpy(np.flatnonzero(~finished))
            for f in live[finished]:
                results[int(f)] = _probes(best[f], best_acc[f], d, r, c)
            params, state1, state2 = params[keep], state1[keep], state2[keep]
            live = live[~finished]
    for f in live:  # reached max_epoch
        results[int(f)] = _probes(best[f], best_acc[f], d, r, c)
    return [results[f] for f in range(n_fits)]


def _probes(param: torch.Tensor, accuracy: np.ndarray, d: int, r: int, c: int) -> LinearProbes:
    weight = param[:d].reshape(d, r, c).permute(1, 0, 2).contiguous()
    bias = param[d].reshape(r, c).clone()
    return LinearProbes(weight, bias, accuracy.copy())


def _step(
    optim: str, param: torch.Tensor, grad: torch.Tensor, state1: torch.Tensor, state2: torch.Tensor, steps: np.ndarray
) -> None:
    if optim == "adam":
        _adam(param, grad, state1, state2, steps)
    else:
        _rmsprop(param, grad, state2)


def _accuracy(param: torch.Tensor, x: torch.Tensor, y: torch.Tensor, r: int, c: int) -> np.ndarray:
    correct = torch.zeros(r, dtype=torch.long)
    for start in range(0, len(x), 8192):
        logits = (x[start : start + 8192] @ param).view(-1, r, c)
        correct += (logits.argmax(dim=-1) == y[start : start + 8192, None]).sum(dim=0)
    return correct.numpy() / len(y)


def _adam(param: torch.Tensor, grad: torch.Tensor, m: torch.Tensor, v: torch.Tensor, steps: np.ndarray) -> None:
    # torch.optim.Adam (lr 1e-3, betas (0.9, 0.999), eps 1e-8; L2 already folded into ``grad``), same order of
    # operations. ``steps`` holds each fit's step count; they only differ after an epoch with uneven minibatches.
    beta1, beta2, lr, eps = 0.9, 0.999, 1e-3, 1e-8
    m.lerp_(grad, 1 - beta1)
    v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    if (steps == steps[0]).all():
        step = int(steps[0])
        denom = (v.sqrt() / (1 - beta2**step) ** 0.5).add_(eps)
        param.addcdiv_(m, denom, value=-lr / (1 - beta1**step))
        return
    t = torch.from_numpy(steps.astype(np.float64))[:, None, None]
    step_size = (lr / (1 - beta1**t)).to(param.dtype)
    correction2_sqrt = ((1 - beta2**t) ** 0.5).to(param.dtype)
    param.sub_((m / (v.sqrt() / correction2_sqrt + eps)).mul_(step_size))


def _rmsprop(param: torch.Tensor, grad: torch.Tensor, square_avg: torch.Tensor) -> None:
    # torch.optim.RMSprop defaults (lr 1e-2, alpha 0.99, eps 1e-8, no momentum, not centred).
    lr, alpha, eps = 1e-2, 0.99, 1e-8
    square_avg.mul_(alpha).addcmul_(grad, grad, value=1 - alpha)
    param.addcdiv_(grad, square_avg.sqrt().add_(eps), value=-lr)


def _pct(value: float) -> float:
    return round(100 * float(value), 2)


@dataclass
class ProbeOutcome:
    devacc: float
    acc: float
    l2reg: list[float]
    predictions: np.ndarray | None = None


# One split of a task: its features (a row per example) and labels.
Labelled = tuple[np.ndarray | torch.Tensor, np.ndarray]


def _as_tensors(x: np.ndarray | torch.Tensor, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.as_tensor(x, dtype=torch.float32), torch.as_tensor(y, dtype=torch.long)


def nested_cv(x: np.ndarray | torch.Tensor, y: np.ndarray, n_classes: int, settings: ProbeSettings) -> ProbeOutcome:
    """MR/CR/SUBJ/MPQA: outer k-fold for test accuracy, inner k-fold on each outer train part to pick L2.

    Per outer fold the L2 value with the best mean inner-CV accuracy (rounded to two decimals) is refit on the
    whole outer train part (5 % held out for early stopping) and scored on the outer test fold; ``acc`` and
    ``devacc`` are the means over outer folds, rounded as SentEval rounds them.
    """
    xt, yt = _as_tensors(x, y)
    labels = np.asarray(y)
    grid = settings.l2_grid
    outer = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=settings.seed)
    inner = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=settings.seed)
    dev_results: list[float] = []
    best_regs: list[int] = []
    outer_folds = list(outer.split(np.zeros(len(labels)), labels))
    for train_idx, _ in outer_folds:
        fits = [
            ProbeFit(train_idx[in_train], train_idx[in_test])
            for in_train, in_test in inner.split(np.zeros(len(train_idx)), labels[train_idx])
        ]
        probes = train_probe_group(xt, yt, fits, grid, n_classes, settings)
        scores = [_pct(np.mean([p.dev_accuracy[k] for p in probes])) for k in range(len(grid))]
        best = int(np.argmax(scores))
        best_regs.append(best)
        dev_results.append(scores[best])
    # Final probes of all outer folds in one group; each (fold, L2) probe is independent, so training the whole
    # grid and reading the chosen column gives exactly the single-L2 refit.
    finals = train_probe_group(xt, yt, [ProbeFit(tr) for tr, _ in outer_folds], grid, n_classes, settings)
    test_results = []
    for (_, test_idx), final, best in zip(outer_folds, finals, best_regs):
        test_results.append(_pct(final.accuracy(xt[test_idx], yt[test_idx])[best]))
    logger.debug("nested CV: per-fold l2 %s, test %s", [grid[b] for b in best_regs], test_results)
    return ProbeOutcome(
        round(float(np.mean(dev_results)), 2), round(float(np.mean(test_results)), 2), [grid[b] for b in best_regs]
    )


def cv_then_test(train: Labelled, test: Labelled, n_classes: int, settings: ProbeSettings) -> ProbeOutcome:
    """TREC/MRPC: k-fold CV on the training set picks L2; refit on all of it (5 % held out) and score the test set."""
    xt, yt = _as_tensors(*train)
    folds = StratifiedKFold(n_splits=settings.kfold, shuffle=True, random_state=settings.seed)
    fits = [ProbeFit(tr, te) for tr, te in folds.split(np.zeros(len(yt)), np.asarray(train[1]))]
    probes = train_probe_group(xt, yt, fits, settings.l2_grid, n_classes, settings)
    scores = [_pct(np.mean([p.dev_accuracy[k] for p in probes])) for k in range(len(settings.l2_grid))]
    best = int(np.argmax(scores))
    final = train_probe_group(xt, yt, [ProbeFit(np.arange(len(yt)))], [settings.l2_grid[best]], n_classes, settings)
    return _test_outcome(final[0], test, scores[best], settings.l2_grid[best])


def split_validation(
    train: Labelled, dev: Labelled, test: Labelled, n_classes: int, settings: ProbeSettings
) -> ProbeOutcome:
    """SST2: the fixed dev split picks L2 (early stopping on dev as well); the chosen probe scores the test split."""
    xt, yt = _as_tensors(*train)
    xd, yd = _as_tensors(*dev)
    probes = train_probes(xt, yt, settings.l2_grid, n_classes, settings, xd, yd)
    scores = [_pct(a) for a in probes.accuracy(xd, yd)]
    best = int(np.argmax(scores))
    # SentEval refits the chosen L2 with the same seed, which reproduces the same probe exactly.
    chosen = LinearProbes(probes.weight[best : best + 1], probes.bias[best : best + 1], probes.dev_accuracy[best:])
    return _test_outcome(chosen, test, scores[best], settings.l2_grid[best])


def _test_outcome(chosen: LinearProbes, test: Labelled, devacc: float, l2: float) -> ProbeOutcome:
    """The chosen probe (one L2 value) scored on the test split: test accuracy and predictions."""
    xs, ys = _as_tensors(*test)
    predictions = chosen.predict(xs)[0].numpy()
    return ProbeOutcome(devacc, _pct(np.mean(predictions == ys.numpy())), [l2], predictions)
