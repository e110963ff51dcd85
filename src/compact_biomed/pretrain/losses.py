"""The loss terms of the three distillation recipes and of plain MLM, each a small pure function on tensors.

Conventions shared by every function:
- logits arrive already restricted to the masked positions: shape (n_masked, vocab), student and teacher rows in the
  same order (see `recipes.masked_positions`);
- `tokens` are the real (non-padding) positions: the usual (batch, seq) 1 = token / 0 = padding mask, or the flat
  row-major indices of its ones, which the collator computes (data.selections): selecting by indices needs no host
  sync, selecting by a mask on a GPU does (its count sizes the result);
- a batch with nothing to average over (no masked position, no token) gives 0, still attached to the autograd graph
  so that every parameter receives a (zero) gradient, which DDP needs. Never NaN;
- everything is computed in at least float32, whatever the autocast dtype of the forward pass.

Reductions follow the official scripts exactly (paper spec §1.2-§1.4); the quirky ones say so where they happen.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

ATTENTION_EPS = 1e-12  # spec §1.3: the official attention KL adds 1e-12 to both distributions


def _upcast(tensor: torch.Tensor) -> torch.Tensor:
    """bf16/fp16 activations (autocast) -> float32; float32/float64 unchanged."""
    return tensor.float() if tensor.dtype in (torch.float16, torch.bfloat16) else tensor


def rows_at(tensor: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """(batch, seq, ...) -> (n, ...): the rows at `positions`, a (batch, seq) mask (bool or 0/1) or the 1-D flat
    row-major indices (int64) of its ones, in row-major order either way."""
    if positions.dim() == 2:
        return tensor[positions.bool()]
    if positions.dim() != 1 or positions.dtype != torch.long:
        raise ValueError(
            f"positions: a (batch, seq) mask or 1-D int64 indices, not {positions.dim()}-D {positions.dtype}"
        )
    seq = tensor.shape[1]
    return tensor[positions // seq, positions % seq]  # no copy of a non-contiguous tensor (attention maps)


def _zero_like_graph(tensor: torch.Tensor) -> torch.Tensor:
    """A zero that depends on `tensor`, for reductions over an empty selection."""
    return _upcast(tensor).sum() * 0.0


def masked_lm_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Hard-label MLM cross-entropy, mean over masked positions (as `BertForMaskedLM`'s own loss).

    logits: (n_masked, vocab); targets: (n_masked,) token ids.
    """
    if logits.shape[0] == 0:
        return _zero_like_graph(logits)
    return F.cross_entropy(_upcast(logits), targets)


def soft_target_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """DistilBERT's L_ce: T^2 * KL(softmax(t/T) || softmax(s/T)), "batchmean" = summed over the vocabulary and
    averaged over masked rows (spec §1.2; CompactBioBERT's L_out is the same with T = 1, spec §1.3)."""
    if student_logits.shape[0] == 0:
        return _zero_like_graph(student_logits)
    log_p_student = F.log_softmax(_upcast(student_logits) / temperature, dim=-1)
    p_teacher = F.softmax(_upcast(teacher_logits) / temperature, dim=-1)
    kl = F.kl_div(log_p_student, p_teacher, reduction="batchmean")
    return kl * temperature**2


def soft_cross_entropy(
    student_logits: torch.Tensor, teacher_logits: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    """TinyBERT's prediction-layer loss: mean over masked rows of -sum_v p_t(v) log p_s(v), both at temperature T,
    without the T^2 factor (spec §1.4)."""
    if student_logits.shape[0] == 0:
        return _zero_like_graph(student_logits)
    log_p_student = F.log_softmax(_upcast(student_logits) / temperature, dim=-1)
    p_teacher = F.softmax(_upcast(teacher_logits) / temperature, dim=-1)
    return -(p_teacher * log_p_student).sum(dim=-1).mean()


def hidden_cosine(student_hidden: torch.Tensor, teacher_hidden: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """Mean over non-padding tokens of 1 - cos(h_s, h_t): `CosineEmbeddingLoss` with target +1 on the real
    tokens (spec §1.2 L_cos, §1.3 L_hid). Hidden: (batch, seq, dim), same dim for both."""
    student_rows = _upcast(rows_at(student_hidden, tokens))
    teacher_rows = _upcast(rows_at(teacher_hidden, tokens))
    if student_rows.shape[0] == 0:
        return _zero_like_graph(student_hidden)
    target = student_rows.new_ones(student_rows.shape[0])
    return F.cosine_embedding_loss(student_rows, teacher_rows, target)


def attention_kl(
    student_attention: torch.Tensor,
    teacher_attention: torch.Tensor,
    tokens: torch.Tensor,
    eps: float = ATTENTION_EPS,
) -> torch.Tensor:
    """CompactBioBERT's attention loss for one layer pair (spec §1.3, a reproduced quirk).

    Attention probabilities (batch, heads, query, key); the query rows of padding tokens are dropped (every head,
    every key column kept); eps is added to both distributions; `KLDivLoss(reduction="mean")` then averages
    t * (log t - log s) over ALL remaining elements, i.e. the per-row KL is also divided by the key length.
    """
    # (batch, query, heads, key) so that the query rows are selected
    student_rows = _upcast(rows_at(student_attention.transpose(1, 2), tokens))
    teacher_rows = _upcast(rows_at(teacher_attention.transpose(1, 2), tokens))
    if student_rows.numel() == 0:
        return _zero_like_graph(student_attention)
    log_student = torch.log(student_rows + eps)
    target = teacher_rows + eps
    return (target * (torch.log(target) - log_student)).mean()


def attention_mse(student_attention: torch.Tensor, teacher_attention: torch.Tensor) -> torch.Tensor:
    """TinyBioBERT's attention loss for one layer pair: MSE on attention probabilities over every element,
    padding included (spec §1.4; original TinyBERT used raw scores instead)."""
    return F.mse_loss(_upcast(student_attention), _upcast(teacher_attention))


def hidden_mse(projected_student_hidden: torch.Tensor, teacher_hidden: torch.Tensor) -> torch.Tensor:
    """TinyBioBERT's representation loss for one layer pair: MSE between fit_dense(h_s) and h_t over every element,
    padding included (spec §1.4)."""
    return F.mse_loss(_upcast(projected_student_hidden), _upcast(teacher_hidden))
