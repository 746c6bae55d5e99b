"""The logistic-regression probe against a plain torch.optim implementation of SentEval's classifier loop."""

from __future__ import annotations

import copy
from dataclasses import replace

import numpy as np
import pytest
import torch

from dalr_hf.evaluation.probe import (
    L2_GRID,
    PROBE_MODES,
    ProbeFit,
    cv_then_test,
    nested_cv,
    split_validation,
    train_probe_group,
    train_probes,
)


def _senteval_style_fit(x, y, x_dev, y_dev, l2, settings, n_classes):
    """SentEval's PyTorchClassifier/MLP(nhid=0) loop written with torch.optim, for comparison."""
    np.random.seed(settings.seed)
    torch.manual_seed(settings.seed)
    model = torch.nn.Sequential(torch.nn.Linear(x.shape[1], n_classes))
    loss_fn = torch.nn.CrossEntropyLoss()
    optimizer = (torch.optim.Adam if settings.optim == "adam" else torch.optim.RMSprop)(model.parameters())
    optimizer.param_groups[0]["weight_decay"] = l2
    nepoch, best, stop, no_gain, best_model = 0, -1.0, False, 0, None
    while not stop and nepoch <= settings.max_epoch:
        model.train()
        for _ in range(settings.epoch_size):
            permutation = np.random.permutation(len(x))
            for i in range(0, len(x), settings.batch_size):
                idx = torch.from_numpy(permutation[i : i + settings.batch_size])
                loss = loss_fn(model(x[idx]), y[idx])
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
        nepoch += settings.epoch_size
        with torch.no_grad():
            accuracy = (model(x_dev).argmax(1) == y_dev).sum().item() / len(y_dev)
        if accuracy > best:
            best, best_model = accuracy, copy.deepcopy(model)
        else:
            if no_gain >= settings.tenacity:
                stop = True
            no_gain += 1
    return best_model, best


def _toy(n: int, d: int = 16, c: int = 3, seed: int = 0, noise: float = 2.0):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(d, c, generator=g)
    x = torch.randn(n, d, generator=g)
    y = (x @ w + noise * torch.randn(n, c, generator=g)).argmax(1)
    return x, y


@pytest.mark.parametrize("mode", ["test", "fasttest"])
def test_batched_probes_equal_one_by_one_torch_optim_fits(mode):
    settings = replace(PROBE_MODES[mode], max_epoch=12)
    x, y = _toy(300)
    x_train, y_train, x_dev, y_dev = x[:220], y[:220], x[220:], y[220:]
    probes = train_probes(x_train, y_train, settings.l2_grid, 3, settings, x_dev, y_dev)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the reference loop is slow with intra-op threads on a busy machine
    try:
        references = [_senteval_style_fit(x_train, y_train, x_dev, y_dev, l2, settings, 3) for l2 in settings.l2_grid]
    finally:
        torch.set_num_threads(threads)
    for k, (reference, best) in enumerate(references):
        assert probes.dev_accuracy[k] == best
        torch.testing.assert_close(probes.weight[k], reference[0].weight.detach().t(), atol=2e-6, rtol=0)
        torch.testing.assert_close(probes.bias[k], reference[0].bias.detach(), atol=2e-6, rtol=0)


def test_grouped_fits_equal_separate_fits_including_uneven_minibatch_counts():
    settings = replace(PROBE_MODES["test"], max_epoch=16)
    x, y = _toy(700, d=12)
    # 600 and 577 rows make 10 minibatches of 64, 560 rows make 9: the group must update only the fits that have
    # a minibatch left; the third fit holds out 5 % of its rows (validation_split) like SentEval's final refits.
    fits = [
        ProbeFit(np.arange(600), np.arange(600, 700)),
        ProbeFit(np.arange(23, 600), np.arange(600, 700)),
        ProbeFit(np.arange(40, 600)),
    ]
    grouped = train_probe_group(x, y, fits, settings.l2_grid, 3, settings)
    for fit, probes in zip(fits, grouped):
        if fit.dev_idx is None:
            alone = train_probes(x[fit.train_idx], y[fit.train_idx], settings.l2_grid, 3, settings)
        else:
            alone = train_probes(
                x[fit.train_idx], y[fit.train_idx], settings.l2_grid, 3, settings, x[fit.dev_idx], y[fit.dev_idx]
            )
        np.testing.assert_array_equal(alone.dev_accuracy, probes.dev_accuracy)
        torch.testing.assert_close(alone.weight, probes.weight, atol=1e-6, rtol=0)


def test_probe_is_deterministic_and_leaves_global_state_alone():
    x, y = _toy(400)
    settings = replace(PROBE_MODES["fasttest"], max_epoch=10)
    torch.manual_seed(123)
    np.random.seed(123)
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()
    threads = torch.get_num_threads()
    first = nested_cv(x.numpy(), y.numpy(), 3, settings)
    second = nested_cv(x.numpy(), y.numpy(), 3, settings)
    assert (first.acc, first.devacc, first.l2reg) == (second.acc, second.devacc, second.l2reg)
    assert torch.equal(torch.get_rng_state(), torch_state)
    assert all(np.array_equal(a, b) for a, b in zip(np.random.get_state(), numpy_state))
    assert torch.get_num_threads() == threads


def test_senteval_settings():
    assert L2_GRID == (1e-5, 1e-4, 1e-3, 1e-2)  # 10**t for t in range(-5, -1)
    test, fast = PROBE_MODES["test"], PROBE_MODES["fasttest"]
    assert (test.kfold, test.optim, test.batch_size, test.tenacity, test.epoch_size) == (10, "adam", 64, 5, 4)
    assert (fast.kfold, fast.optim, fast.batch_size, fast.tenacity, fast.epoch_size) == (5, "rmsprop", 128, 3, 2)
    assert test.seed == fast.seed == 1111 and test.max_epoch == 200
    with pytest.raises(ValueError, match="optim"):
        replace(test, optim="sgd")


def test_validation_protocols_on_separable_data():
    settings = replace(PROBE_MODES["fasttest"], max_epoch=20)
    x, y = _toy(600, noise=0.1, c=2)
    cv = nested_cv(x.numpy(), y.numpy(), 2, settings)
    assert cv.acc > 90 and cv.devacc > 90 and len(cv.l2reg) == settings.kfold
    outcome = cv_then_test((x[:400], y[:400].numpy()), (x[400:], y[400:].numpy()), 2, settings)
    assert outcome.acc > 90 and outcome.predictions.shape == (200,)
    assert outcome.acc == pytest.approx(100 * np.mean(outcome.predictions == y[400:].numpy()), abs=0.005)
    split = split_validation(
        (x[:300], y[:300].numpy()), (x[300:400], y[300:400].numpy()), (x[400:], y[400:].numpy()), 2, settings
    )
    assert split.acc > 90 and split.l2reg[0] in settings.l2_grid
