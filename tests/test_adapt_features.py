"""Training-free and feature-level adapters: zero-shot, Tip-Adapter(-F), GDA, linear probe, CLIP-Adapter."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from test_adapt_common import CLASSNAMES, TEMPLATES, backbone, data, one_thread  # noqa: F401

from clipforge import adapt
from clipforge.adapt.gda import gda_fit
from clipforge.adapt.protocols import accuracy_of
from clipforge.zeroshot import ZeroShotClassifier

pytest.importorskip("sklearn")
_threads = pytest.fixture(scope="module", autouse=True)(one_thread)


def make(method: str, **hp):
    return adapt.create(method, backbone(), CLASSNAMES, TEMPLATES, **hp)


@torch.no_grad()
def loss(adapter, d) -> float:
    return float(F.cross_entropy(adapter.logits(d.features), d.labels))


def test_zeroshot_matches_the_zeroshot_classifier():
    train = data()
    zs = make("zeroshot")
    ref = ZeroShotClassifier.build(backbone().model, backbone().tokenizer, CLASSNAMES, TEMPLATES)
    torch.testing.assert_close(zs.logits(train.features), ref.logits(train.features), rtol=0, atol=1e-5)


def test_tip_adapter_with_alpha_zero_is_zero_shot_and_cache_is_built_from_views():
    train = data(views=3)
    tip = make("tip-adapter", alpha=0.0, search=False).fit(train)
    zs = make("zeroshot")
    torch.testing.assert_close(tip.logits(train.features), zs.logits(train.features), rtol=0, atol=0)
    # keys are the normalised means of the augmented views; values the one-hot labels
    torch.testing.assert_close(tip.keys, F.normalize(train.views.mean(0), dim=-1))
    torch.testing.assert_close(tip.values, F.one_hot(train.labels, 4).float())
    # a sharp cache retrieves each training key's own label: cache alone classifies the keys perfectly
    cache = tip.cache_logits(tip.keys, beta=1e6)
    assert accuracy_of(cache, train.labels) == 1.0
    assert tip.alpha == 0.0


def test_tip_adapter_search_picks_from_the_grid_and_does_not_hurt_validation():
    train, val = data(views=2), data("val", 3)
    tip = make("tip-adapter", alpha_steps=5, beta_steps=10).fit(train, val)
    betas = [0.1 + i * (7 - 0.1) / 10 for i in range(10)]
    assert any(abs(tip.beta - b) < 1e-9 for b in betas)
    zs_acc = accuracy_of(make("zeroshot").logits(val.features), val.labels)
    assert accuracy_of(tip.logits(val.features), val.labels) >= zs_acc


def test_tip_adapter_f_trains_the_keys():
    train, val = data(views=2), data("val", 3)
    tip = make("tip-adapter", search=False).fit(train)
    tipf = make("tip-adapter-f", search=False, epochs=15, lr=1e-2, batch_size=8).fit(train, val)
    assert not torch.allclose(tipf.keys, tip.keys)  # the learnable keys moved
    assert not tipf.keys.requires_grad
    assert loss(tipf, train) < loss(tip, train)


def test_gda_closed_form_matches_a_direct_gaussian_computation():
    torch.manual_seed(0)
    d, c, n = 6, 3, 40
    x = torch.randn(n, d, dtype=torch.float64)
    y = torch.arange(n) % c
    x = x + 2 * F.one_hot(y, d).double()  # class-dependent means
    W, b = gda_fit(x, y, c)
    # direct: means, pooled covariance with the shrinkage of the paper, Gaussian log-densities
    xn = x.numpy()
    mu = np.stack([xn[y.numpy() == k].mean(0) for k in range(c)])
    centred = xn - mu[y.numpy()]
    S = np.cov(centred.T)
    P = d * np.linalg.inv((n - 1) * S + np.trace(S) * np.eye(d))
    q = torch.randn(5, d, dtype=torch.float64).numpy()
    loglik = np.stack([-0.5 * np.einsum("nd,de,ne->n", q - mu[k], P, q - mu[k]) + np.log(1 / c) for k in range(c)], 1)
    ours = (torch.from_numpy(q).float() @ W.t() + b).numpy()
    # equal up to the class-independent term -½ qᵀPq
    np.testing.assert_allclose(ours - ours[:, :1], loglik - loglik[:, :1], rtol=1e-4, atol=1e-4)


def test_gda_adapter_adds_alpha_times_gda_to_zero_shot_and_chooses_alpha_on_val():
    train, val = data(views=2), data("val", 3)
    gda = make("gda").fit(train, val)
    assert gda.alpha in (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0)
    f = F.normalize(val.features, dim=-1)
    zs = make("zeroshot").logits(val.features)
    torch.testing.assert_close(gda.logits(val.features), zs + gda.alpha * (f @ gda.weight.t() + gda.bias))
    # fitted on all views as samples: the GDA head alone separates the training features
    assert accuracy_of(gda.gda_logits(F.normalize(train.features, dim=-1)), train.labels) >= 0.75


def test_linear_probe_equals_scikit_learn():
    from sklearn.linear_model import LogisticRegression

    train, val = data(per_class=5), data("val", 3)
    probe = make("linear-probe").fit(train, val)
    clf = LogisticRegression(C=probe.chosen_C, max_iter=1000, random_state=0).fit(
        train.features.numpy(), train.labels.numpy()
    )
    probs = probe.probabilities(val.features).numpy()
    np.testing.assert_allclose(probs, clf.predict_proba(val.features.numpy()), atol=1e-4)
    # two classes: scikit-learn's single row becomes a two-class softmax
    two = train.relabel({0: 0, 1: 1})
    p2 = adapt.create("linear-probe", backbone(), CLASSNAMES[:2], TEMPLATES, C=1.0).fit(two)
    clf2 = LogisticRegression(C=1.0, max_iter=1000, random_state=0).fit(two.features.numpy(), two.labels.numpy())
    np.testing.assert_allclose(
        p2.probabilities(two.features).numpy(), clf2.predict_proba(two.features.numpy()), atol=1e-4
    )


def test_clip_adapter_is_zero_shot_at_ratio_zero_and_learns_the_training_set():
    train = data(views=2)
    zs = make("zeroshot")
    idle = make("clip-adapter", ratio=0.0)
    torch.testing.assert_close(idle.logits(train.features), zs.logits(train.features))
    ad = make("clip-adapter", ratio=0.6, epochs=60, lr=0.05, batch_size=8).fit(train)
    residual = ad.adapt_features(train.features) - 0.4 * train.features
    assert residual.abs().max() > 0  # the bottleneck is in use
    assert loss(ad, train) < loss(zs, train)
