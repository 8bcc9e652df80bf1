"""Single-process tests of the training losses: hand computations, known values, gradients, registry."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from clipforge.losses import (
    LOSSES,
    ClipLoss,
    CloobLoss,
    DistillLoss,
    SigLipLoss,
    build_loss,
    gather_features,
    hopfield_retrieve,
    info_loob,
    resolve_world,
    splice_features,
)


def _feats(b: int, d: int, seed: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return F.normalize(torch.randn(b, d, generator=g, dtype=dtype), dim=-1)


def _pair(b: int = 5, d: int = 8, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    return _feats(b, d, 0, dtype), _feats(b, d, 1, dtype)


# ---------------------------------------------------------------------------------------------------------------- CLIP


def _clip_by_hand(img: torch.Tensor, txt: torch.Tensor, scale: float) -> float:
    """Symmetric InfoNCE with explicit loops over Python floats."""
    b = img.shape[0]
    sim = [[scale * float(img[i] @ txt[j]) for j in range(b)] for i in range(b)]
    i2t = sum(-sim[i][i] + math.log(sum(math.exp(sim[i][j]) for j in range(b))) for i in range(b)) / b
    t2i = sum(-sim[j][j] + math.log(sum(math.exp(sim[i][j]) for i in range(b))) for j in range(b)) / b
    return 0.5 * (i2t + t2i)


def test_clip_matches_hand_computation_on_hand_built_matrix() -> None:
    img = F.normalize(torch.tensor([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]], dtype=torch.float64), dim=-1)
    txt = F.normalize(torch.tensor([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.2]], dtype=torch.float64), dim=-1)
    loss, logs = ClipLoss()(img, txt, 3.0)
    assert loss.item() == pytest.approx(_clip_by_hand(img, txt, 3.0), abs=1e-12)
    # and against F.cross_entropy on the explicit logit matrix
    logits = 3.0 * img @ txt.T
    labels = torch.arange(3)
    ref = 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))
    torch.testing.assert_close(loss, ref)
    assert set(logs) == {"loss", "i2t_acc", "t2i_acc", "logit_scale"}
    assert logs["logit_scale"].item() == 3.0


def test_clip_random_batch_matches_loops() -> None:
    img, txt = _pair(6, 8, torch.float64)
    assert ClipLoss()(img, txt, 7.5)[0].item() == pytest.approx(_clip_by_hand(img, txt, 7.5), abs=1e-10)


def test_clip_known_values() -> None:
    eye = torch.eye(4)
    loss, logs = ClipLoss()(eye, eye, torch.tensor(100.0))
    assert loss.item() < 1e-6
    assert logs["i2t_acc"].item() == 1.0 and logs["t2i_acc"].item() == 1.0
    img, txt = _pair(8, 16)
    assert ClipLoss()(img, txt, 1e-6)[0].item() == pytest.approx(math.log(8), abs=1e-4)


def test_clip_symmetric_and_bias_invariant() -> None:
    img, txt = _pair(5, 8, torch.float64)
    loss = ClipLoss()(img, txt, 4.0)[0]
    torch.testing.assert_close(ClipLoss()(txt, img, 4.0)[0], loss)
    torch.testing.assert_close(ClipLoss()(img, txt, 4.0, torch.tensor(-3.0))[0], loss)


def test_clip_gradcheck() -> None:
    g = torch.Generator().manual_seed(3)
    img = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    txt = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    log_scale = torch.tensor(1.2, dtype=torch.float64, requires_grad=True)
    fn = lambda a, b, s: ClipLoss()(F.normalize(a, dim=-1), F.normalize(b, dim=-1), s.exp())[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (img, txt, log_scale))


def test_clip_logs_do_not_carry_graph() -> None:
    img, txt = _pair()
    img.requires_grad_(True)
    _, logs = ClipLoss()(img, txt, torch.tensor(10.0, requires_grad=True))
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and not v.requires_grad for v in logs.values())


# -------------------------------------------------------------------------------------------------------------- SigLIP


def test_siglip_matches_double_loop() -> None:
    img, txt = _pair(5, 8, torch.float64)
    scale, bias = 7.0, -2.5
    total = torch.zeros((), dtype=torch.float64)
    for i in range(5):
        for j in range(5):
            label = 1.0 if i == j else -1.0
            total = total + F.logsigmoid(label * (scale * img[i] @ txt[j] + bias))
    loss, logs = SigLipLoss()(img, txt, scale, torch.tensor(bias, dtype=torch.float64))
    torch.testing.assert_close(loss, -total / 5)
    assert logs["logit_bias"].item() == bias and logs["logit_scale"].item() == scale


def test_siglip_bias_none_is_zero_bias() -> None:
    img, txt = _pair()
    torch.testing.assert_close(SigLipLoss()(img, txt, 5.0)[0], SigLipLoss()(img, txt, 5.0, 0.0)[0])


def test_siglip_init_loss_matches_analytic_expectation() -> None:
    """At s=10, b=-10 the loss of random unit features is E[sp(10-10c)] + (B-1)·E[sp(10c-10)], sp = softplus."""
    b, d = 128, 512
    img, txt = _feats(b, d, 10), _feats(b, d, 11)
    loss = SigLipLoss()(img, txt, torch.tensor(math.log(10)).exp(), torch.tensor(-10.0))[0].item()
    # cosine of two independent uniform unit vectors in R^d has density ∝ (1 - c²)^((d-3)/2)
    c = torch.linspace(-1, 1, 200_001, dtype=torch.float64)[1:-1]
    w = torch.exp((d - 3) / 2 * torch.log1p(-(c**2)))
    w = w / w.sum()
    expected = (w * F.softplus(10 - 10 * c)).sum() + (b - 1) * (w * F.softplus(10 * c - 10)).sum()
    assert expected.item() == pytest.approx(10 + (b - 1) * math.log1p(math.exp(-10)), abs=0.01)
    # the positive term's batch mean has std 10/sqrt(b·d) ≈ 0.04
    assert loss == pytest.approx(expected.item(), abs=0.15)


def test_siglip_gradcheck() -> None:
    g = torch.Generator().manual_seed(4)
    img = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    txt = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    log_scale = torch.tensor(math.log(10), dtype=torch.float64, requires_grad=True)
    bias = torch.tensor(-2.0, dtype=torch.float64, requires_grad=True)
    fn = lambda a, t, s, c: SigLipLoss()(F.normalize(a, dim=-1), F.normalize(t, dim=-1), s.exp(), c)[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (img, txt, log_scale, bias))


def test_siglip_rejects_unknown_exchange() -> None:
    with pytest.raises(ValueError, match="exchange"):
        SigLipLoss(exchange="broadcast")


# --------------------------------------------------------------------------------------------------------------- CLOOB


def test_hopfield_retrieval_is_unit_norm_and_matches_formula() -> None:
    stored, queries = _feats(6, 8, 5, torch.float64), _feats(4, 8, 6, torch.float64)
    out = hopfield_retrieve(stored, queries, 8.0)
    assert out.shape == (4, 8)
    torch.testing.assert_close(out.norm(dim=-1), torch.ones(4, dtype=torch.float64))
    for i in range(4):
        weights = torch.softmax(8.0 * stored @ queries[i], dim=0)
        mixed = (weights[:, None] * stored).sum(0)
        torch.testing.assert_close(out[i], mixed / mixed.norm())


def _loob_by_hand(a: torch.Tensor, c: torch.Tensor, inv_tau: float, offset: int = 0) -> float:
    total = 0.0
    for i in range(a.shape[0]):
        p = i + offset
        neg = math.log(sum(math.exp(inv_tau * float(a[i] @ c[j])) for j in range(c.shape[0]) if j != p))
        total += -inv_tau * float(a[i] @ c[p]) + neg
    return total / a.shape[0] / inv_tau


def test_info_loob_excludes_positive() -> None:
    a, c = _feats(4, 6, 7, torch.float64), _feats(4, 6, 8, torch.float64)
    assert info_loob(a, c, 5.0).item() == pytest.approx(_loob_by_hand(a, c, 5.0), abs=1e-12)
    # rows anchored against a wider candidate set, positives on an offset diagonal (local_loss layout)
    wide = _feats(8, 6, 9, torch.float64)
    assert info_loob(a, wide, 5.0, 4).item() == pytest.approx(_loob_by_hand(a, wide, 5.0, 4), abs=1e-12)
    # InfoNCE keeps the positive in its denominator, so it is strictly larger
    nce = F.cross_entropy(5.0 * a @ c.T, torch.arange(4)).item() / 5.0
    assert nce > info_loob(a, c, 5.0).item() + 1e-3


def test_cloob_wiring_matches_definition() -> None:
    img, txt = _pair(5, 8, torch.float64)
    beta, inv_tau = 8.0, 30.0
    u_x, u_y = hopfield_retrieve(img, img, beta), hopfield_retrieve(txt, img, beta)
    v_x, v_y = hopfield_retrieve(img, txt, beta), hopfield_retrieve(txt, txt, beta)
    expected = _loob_by_hand(u_x, v_x, inv_tau) + _loob_by_hand(v_y, u_y, inv_tau)
    loss, logs = CloobLoss()(img, txt)  # logit_scale=None -> fixed inv_tau = 30
    assert loss.item() == pytest.approx(expected, abs=1e-10)
    assert logs["logit_scale"].item() == 30.0
    torch.testing.assert_close(CloobLoss()(img, txt, torch.tensor(30.0, dtype=torch.float64))[0], loss)


def test_cloob_aligned_beats_random() -> None:
    img, txt = _pair(8, 16)
    aligned = F.normalize(img + 0.05 * txt, dim=-1)
    assert CloobLoss()(img, aligned)[0] < CloobLoss()(img, txt)[0] - 0.1


def test_cloob_gradcheck() -> None:
    g = torch.Generator().manual_seed(5)
    img = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    txt = torch.randn(3, 4, dtype=torch.float64, generator=g, requires_grad=True)
    log_scale = torch.tensor(math.log(5.0), dtype=torch.float64, requires_grad=True)
    loss_fn = CloobLoss(hopfield_scale=2.0)
    fn = lambda a, t, s: loss_fn(F.normalize(a, dim=-1), F.normalize(t, dim=-1), s.exp())[0]  # noqa: E731
    assert torch.autograd.gradcheck(fn, (img, txt, log_scale))


# ------------------------------------------------------------------------------------------------------------- Distill


def test_distill_matches_soft_cross_entropy_and_is_stationary_at_teacher() -> None:
    s_img, s_txt = _pair(4, 8, torch.float64)
    t_img, t_txt = _feats(4, 8, 20, torch.float64), _feats(4, 8, 21, torch.float64)
    loss, logs = DistillLoss()(s_img, s_txt, t_img, t_txt, 10.0, 20.0)
    s_logits, t_logits = 10.0 * s_img @ s_txt.T, 20.0 * t_img @ t_txt.T
    i2t = -(t_logits.softmax(1) * s_logits.log_softmax(1)).sum(1).mean()
    t2i = -(t_logits.T.softmax(1) * s_logits.T.log_softmax(1)).sum(1).mean()
    torch.testing.assert_close(loss, 0.5 * (i2t + t2i))
    torch.testing.assert_close(logs["clip_loss"], ClipLoss()(s_img, s_txt, 10.0)[0])

    # student == teacher: soft-CE is at its minimum (the teacher entropy), so the student gradient vanishes
    student = s_img.clone().requires_grad_(True)
    teacher_scale = torch.tensor(10.0, dtype=torch.float64, requires_grad=True)
    loss, _ = DistillLoss()(student, s_txt, s_img, s_txt, 10.0, teacher_scale)
    loss.backward()
    torch.testing.assert_close(student.grad, torch.zeros_like(student))
    assert teacher_scale.grad is None  # the teacher is a constant


def test_distill_alpha_mixes_in_clip_loss() -> None:
    s_img, s_txt = _pair(4, 8, torch.float64)
    t_img, t_txt = _feats(4, 8, 20, torch.float64), _feats(4, 8, 21, torch.float64)
    clip = ClipLoss()(s_img, s_txt, 10.0)[0]
    pure = DistillLoss()(s_img, s_txt, t_img, t_txt, 10.0, 20.0)[0]
    torch.testing.assert_close(DistillLoss(alpha=0.0)(s_img, s_txt, t_img, t_txt, 10.0, 20.0)[0], clip)
    mixed = DistillLoss(alpha=0.25)(s_img, s_txt, t_img, t_txt, 10.0, 20.0)[0]
    torch.testing.assert_close(mixed, 0.25 * pure + 0.75 * clip)
    with pytest.raises(ValueError, match="alpha"):
        DistillLoss(alpha=1.5)


# ------------------------------------------------------------------------------------------------ registry and helpers


def test_build_loss_names_and_error() -> None:
    assert LOSSES.list() == ["clip", "siglip", "cloob", "distill"]
    expected = {"clip": ClipLoss, "siglip": SigLipLoss, "cloob": CloobLoss, "distill": DistillLoss}
    for name in LOSSES:
        assert type(build_loss(name)) is expected[name]
    assert build_loss("CLIP", local_loss=True).local_loss is True
    assert build_loss("cloob", inv_tau=14.3).inv_tau == 14.3
    with pytest.raises(ValueError, match="clip, siglip, cloob, distill"):
        build_loss("infonce")


def test_single_process_world() -> None:
    a, b = _pair()
    assert resolve_world() == (0, 1)
    out = gather_features(a, b)
    assert out[0] is a and out[1] is b
    with pytest.raises(RuntimeError, match="not initialised"):
        resolve_world(world_size=2)
    with pytest.raises(ValueError, match="rank"):
        resolve_world(rank=1, world_size=1)


@pytest.mark.parametrize("name", ["clip", "siglip", "cloob"])
def test_cached_feature_accumulation_equals_full_batch_gradient(name: str) -> None:
    """Trainer recipe: cache all micro-batch features, recompute one slice with grad at a time, sum gradients."""
    torch.manual_seed(0)
    x_img, x_txt = torch.randn(6, 5, dtype=torch.float64), torch.randn(6, 3, dtype=torch.float64)
    w_img = torch.randn(5, 4, dtype=torch.float64, requires_grad=True)
    w_txt = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    loss_fn = build_loss(name)

    def encode(xi: torch.Tensor, xt: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return F.normalize(xi @ w_img, dim=-1), F.normalize(xt @ w_txt, dim=-1)

    full = torch.autograd.grad(loss_fn(*encode(x_img, x_txt), 5.0, -1.0)[0], (w_img, w_txt))
    with torch.no_grad():
        cached_img, cached_txt = encode(x_img, x_txt)
    acc = [torch.zeros_like(w_img), torch.zeros_like(w_txt)]
    for start in (0, 2, 4):  # three micro-batches of 2
        fi, ft = encode(x_img[start : start + 2], x_txt[start : start + 2])
        img, txt = splice_features(cached_img, fi, start), splice_features(cached_txt, ft, start)
        grads = torch.autograd.grad(loss_fn(img, txt, 5.0, -1.0)[0], (w_img, w_txt))
        acc = [a + g for a, g in zip(acc, grads)]
    for a, f in zip(acc, full):
        torch.testing.assert_close(a, f)
    with pytest.raises(ValueError, match="outside"):
        splice_features(cached_img, fi, 5)
