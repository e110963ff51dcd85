"""Each loss term against an independent computation: explicit loops over rows / tokens / elements, and the
torch.nn modules the official scripts use, on small random tensors with padding and masking edge cases."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from compact_biomed.pretrain import losses

torch.set_num_threads(1)

BATCH, SEQ, HEADS, DIM, VOCAB = 3, 6, 2, 5, 7
LENGTHS = [6, 4, 2]  # second and third sequences padded


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


@pytest.fixture
def attention_mask():
    return (torch.arange(SEQ)[None, :] < torch.tensor(LENGTHS)[:, None]).long()


def attention_probs(gen, attention_mask):
    """Softmax attention as a BERT layer produces it: padding keys get ~0 probability."""
    scores = torch.randn(BATCH, HEADS, SEQ, SEQ, generator=gen)
    scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], torch.finfo(scores.dtype).min)
    return scores.softmax(-1)


def loop_softmax(row, temperature=1.0):
    exps = [math.exp(v / temperature) for v in row]
    return [e / sum(exps) for e in exps]


# --- masked_lm_loss -----------------------------------------------------------------------------------------------


def test_masked_lm_loss_matches_loop_and_hf_full_logits(gen):
    logits = torch.randn(4, VOCAB, generator=gen, dtype=torch.float64)
    targets = torch.tensor([0, 3, 6, 2])
    expected = sum(-math.log(loop_softmax(row)[t]) for row, t in zip(logits.tolist(), targets.tolist())) / 4
    assert losses.masked_lm_loss(logits, targets).item() == pytest.approx(expected, abs=1e-6)

    # same as BertForMaskedLM's loss on full logits with -100 elsewhere
    full = torch.randn(2, 5, VOCAB, generator=gen)
    labels = torch.full((2, 5), -100)
    labels[0, 1], labels[1, 3], labels[1, 4] = 2, 5, 0
    hf = nn.CrossEntropyLoss()(full.view(-1, VOCAB), labels.view(-1))
    keep = labels != -100
    assert torch.allclose(losses.masked_lm_loss(full[keep], labels[keep]), hf, atol=1e-6)


# --- soft_target_kl (DistilBioBERT L_ce, CompactBioBERT L_out) ------------------------------------------------


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_soft_target_kl_matches_loop(gen, temperature):
    s = torch.randn(4, VOCAB, generator=gen, dtype=torch.float64)
    t = torch.randn(4, VOCAB, generator=gen, dtype=torch.float64)
    total = 0.0
    for s_row, t_row in zip(s.tolist(), t.tolist()):
        p_s, p_t = loop_softmax(s_row, temperature), loop_softmax(t_row, temperature)
        total += sum(pt * (math.log(pt) - math.log(ps)) for ps, pt in zip(p_s, p_t))
    expected = total / 4 * temperature**2
    assert losses.soft_target_kl(s, t, temperature).item() == pytest.approx(expected, abs=1e-6)
    official = (
        nn.KLDivLoss(reduction="batchmean")(F.log_softmax(s / temperature, -1), F.softmax(t / temperature, -1))
        * temperature**2
    )
    assert losses.soft_target_kl(s, t, temperature).item() == pytest.approx(official.item(), abs=1e-6)


def test_soft_target_kl_is_zero_for_identical_logits(gen):
    s = torch.randn(3, VOCAB, generator=gen)
    assert losses.soft_target_kl(s, s.clone(), 2.0).item() == pytest.approx(0.0, abs=1e-6)


# --- soft_cross_entropy (TinyBioBERT L_pred) --------------------------------------------------------------------


def test_soft_cross_entropy_matches_loop_and_probability_target_ce(gen):
    s = torch.randn(5, VOCAB, generator=gen, dtype=torch.float64)
    t = torch.randn(5, VOCAB, generator=gen, dtype=torch.float64)
    expected = (
        sum(
            -sum(pt * math.log(ps) for ps, pt in zip(loop_softmax(sr), loop_softmax(tr)))
            for sr, tr in zip(s.tolist(), t.tolist())
        )
        / 5
    )
    assert losses.soft_cross_entropy(s, t).item() == pytest.approx(expected, abs=1e-6)
    official = nn.CrossEntropyLoss()(s, F.softmax(t, -1))  # spec §1.4: CE with probability targets
    assert losses.soft_cross_entropy(s, t).item() == pytest.approx(official.item(), abs=1e-6)


# --- hidden_cosine (L_cos, L_hid) ---------------------------------------------------------------------------------


def test_hidden_cosine_averages_over_non_padding_tokens(gen, attention_mask):
    hs = torch.randn(BATCH, SEQ, DIM, generator=gen, dtype=torch.float64)
    ht = torch.randn(BATCH, SEQ, DIM, generator=gen, dtype=torch.float64)
    terms = []
    for b in range(BATCH):
        for i in range(LENGTHS[b]):
            a, c = hs[b, i].tolist(), ht[b, i].tolist()
            cos = sum(x * y for x, y in zip(a, c)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in c))
            terms.append(1 - cos)
    expected = sum(terms) / len(terms)
    assert losses.hidden_cosine(hs, ht, attention_mask).item() == pytest.approx(expected, abs=1e-6)


def test_hidden_cosine_ignores_padding_values(gen, attention_mask):
    hs = torch.randn(BATCH, SEQ, DIM, generator=gen)
    ht = torch.randn(BATCH, SEQ, DIM, generator=gen)
    noisy = hs.clone()
    noisy[~attention_mask.bool()] = 1e3 * torch.randn(int((attention_mask == 0).sum()), DIM, generator=gen)
    assert torch.equal(losses.hidden_cosine(hs, ht, attention_mask), losses.hidden_cosine(noisy, ht, attention_mask))


# --- attention_kl (CompactBioBERT L_att) --------------------------------------------------------------------------


def test_attention_kl_matches_element_loop(gen, attention_mask):
    a_s = attention_probs(gen, attention_mask).double()
    a_t = attention_probs(gen, attention_mask).double()
    eps, total, count = 1e-12, 0.0, 0
    for b in range(BATCH):
        for h in range(HEADS):
            for q in range(LENGTHS[b]):  # non-padding query rows only
                for k in range(SEQ):  # every key column, padding included
                    t, s = a_t[b, h, q, k].item() + eps, a_s[b, h, q, k].item() + eps
                    total += t * (math.log(t) - math.log(s))
                    count += 1
    # "mean" over elements: divided by rows x heads x seq, not by rows (spec §1.3)
    assert count == sum(LENGTHS) * HEADS * SEQ
    assert losses.attention_kl(a_s, a_t, attention_mask).item() == pytest.approx(total / count, rel=1e-9)


def test_attention_kl_equals_official_kldiv_mean(gen, attention_mask):
    a_s = attention_probs(gen, attention_mask)
    a_t = attention_probs(gen, attention_mask)
    keep = attention_mask.bool()[:, None, :, None].expand_as(a_s)
    s_sel, t_sel = torch.masked_select(a_s, keep), torch.masked_select(a_t, keep)
    with pytest.warns(UserWarning):  # torch warns about the "mean" reduction the official code uses
        official = nn.KLDivLoss(reduction="mean")(torch.log(s_sel + 1e-12), t_sel + 1e-12)
    assert losses.attention_kl(a_s, a_t, attention_mask).item() == pytest.approx(official.item(), abs=1e-7)


# --- MSE terms (TinyBioBERT L_att, L_rep) -------------------------------------------------------------------------


def test_attention_and_hidden_mse_include_padding(gen, attention_mask):
    a_s, a_t = attention_probs(gen, attention_mask), attention_probs(gen, attention_mask)
    flat_s, flat_t = a_s.flatten().tolist(), a_t.flatten().tolist()
    expected = sum((x - y) ** 2 for x, y in zip(flat_s, flat_t)) / len(flat_s)
    assert losses.attention_mse(a_s, a_t).item() == pytest.approx(expected, abs=1e-7)

    hs, ht = torch.randn(BATCH, SEQ, DIM, generator=gen), torch.randn(BATCH, SEQ, DIM, generator=gen)
    expected = sum((x - y) ** 2 for x, y in zip(hs.flatten().tolist(), ht.flatten().tolist())) / hs.numel()
    assert losses.hidden_mse(hs, ht).item() == pytest.approx(expected, abs=1e-6)
    changed = hs.clone()
    changed[2, -1] += 1.0  # a padding position still counts
    assert losses.hidden_mse(changed, ht).item() != pytest.approx(losses.hidden_mse(hs, ht).item(), abs=1e-6)


# --- edge cases -------------------------------------------------------------------------------------------------


def test_no_masked_position_gives_zero_with_gradient_not_nan():
    s = torch.randn(0, VOCAB, requires_grad=True)
    t = torch.randn(0, VOCAB)
    values = [
        losses.masked_lm_loss(s, torch.zeros(0, dtype=torch.long)),
        losses.soft_target_kl(s, t, 2.0),
        losses.soft_cross_entropy(s, t),
    ]
    for value in values:
        assert value.item() == 0.0 and value.requires_grad
        value.backward()
        assert torch.equal(s.grad, torch.zeros_like(s))


def test_all_padding_mask_gives_zero_not_nan(gen):
    hidden = torch.randn(2, 3, DIM, generator=gen, requires_grad=True)
    attn = torch.rand(2, HEADS, 3, 3, generator=gen, requires_grad=True)
    none = torch.zeros(2, 3, dtype=torch.long)
    assert losses.hidden_cosine(hidden, hidden.detach() + 1, none).item() == 0.0
    assert losses.attention_kl(attn, attn.detach(), none).item() == 0.0


def test_losses_are_float32_for_bfloat16_inputs(gen, attention_mask):
    s = torch.randn(3, VOCAB, generator=gen).bfloat16()
    t = torch.randn(3, VOCAB, generator=gen).bfloat16()
    assert losses.soft_target_kl(s, t, 2.0).dtype == torch.float32
    h = torch.randn(BATCH, SEQ, DIM, generator=gen).bfloat16()
    assert losses.hidden_cosine(h, h, attention_mask).dtype == torch.float32
