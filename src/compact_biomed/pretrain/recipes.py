"""What is trained: the four pre-training recipes, their layer mappings, student construction and objective.

Recipes (paper spec §1; the official scripts are the source of every detail):
- distilbiobert:  6-layer BERT from teacher layers 0,2,..,10; 2*MLM + 5*KL(T=2) + 1*cosine(last hidden)   (§1.2)
- compactbiobert: 6-layer BERT from teacher layers 1,3,..,11; 1*MLM + 3*(att KL + hidden cosine) + 5*KL(T=1) (§1.3)
- tinybiobert:    random 4L-312D BERT; att MSE + hidden MSE via a shared fit_dense + soft CE, no hard MLM  (§1.4)
- continual_mlm:  plain MLM from a start model (BioDistilBERT, BioTinyBERT, BioMobileBERT)            (§1.5)

Layer mappings are derived from the two depths, so the same code serves 12->6 (paper) and tiny demo teachers.
Every MLM head is applied to the masked positions only: every logit-based term uses only those rows, so this is
exact and saves the (batch x seq x vocab) logits, by far the largest tensors of a step (spec §7).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn
from transformers import AutoModelForMaskedLM, DistilBertForMaskedLM, PreTrainedModel

from .. import IGNORE_INDEX
from ..config import ConfigError
from . import losses

# ---------------------------------------------------------------------------------------------------------------
# Registry
# ---------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Recipe:
    name: str
    kind: str  # "distillation" (needs teacher_dir) or "continual" (needs start_dir)
    student_init: str  # "teacher_layers", "random" or "start_model"
    init_position: str | None  # teacher_layers only: copy the "first" or the "last" layer of each teacher block
    attention_maps: bool  # needs attention probabilities, hence eager attention
    loss_weights: dict[str, float]
    temperature: float
    default_student: dict = field(default_factory=dict)
    summary: str = ""


TINYBERT_4L_312D = {"num_hidden_layers": 4, "hidden_size": 312, "num_attention_heads": 12, "intermediate_size": 1200}

RECIPES: dict[str, Recipe] = {
    r.name: r
    for r in (
        Recipe(
            "distilbiobert",
            "distillation",
            "teacher_layers",
            "first",
            attention_maps=False,  # distil-biobert
            loss_weights={"mlm": 2.0, "ce": 5.0, "cos": 1.0},
            temperature=2.0,
            summary="DistilBERT-style distillation: student initialised from every other teacher layer "
            "(the first of each block), hard MLM + soft-target KL on masked positions + cosine on the "
            "last hidden layer.",
        ),
        Recipe(
            "compactbiobert",
            "distillation",
            "teacher_layers",
            "last",
            attention_maps=True,  # compact-biobert
            loss_weights={"mlm": 1.0, "att": 3.0, "hid": 3.0, "out": 5.0},
            temperature=1.0,
            summary="DistilBERT-style initialisation (the last layer of each teacher block) plus TinyBERT-style "
            "layer-to-layer distillation: hard MLM + attention KL + hidden cosine + output KL.",
        ),
        Recipe(
            "tinybiobert",
            "distillation",
            "random",
            None,
            attention_maps=True,  # tiny-biobert
            loss_weights={"att": 1.0, "rep": 1.0, "pred": 1.0},
            temperature=1.0,
            default_student=TINYBERT_4L_312D,
            summary="TinyBERT-style transformer-layer distillation into a randomly initialised student: "
            "attention MSE + hidden-state MSE through a shared projection + soft cross-entropy on "
            "masked positions; no hard MLM term.",
        ),
        # bio-distilbert-cased, bio-distilbert-uncased, bio-tinybert, bio-mobilebert
        Recipe(
            "continual_mlm",
            "continual",
            "start_model",
            None,
            attention_maps=False,
            loss_weights={"mlm": 1.0},
            temperature=1.0,
            summary="Continual masked-language-model pre-training of an existing compact model.",
        ),
    )
}


def get_recipe(name: str) -> Recipe:
    if name not in RECIPES:
        raise ConfigError(f"unknown pre-training recipe {name!r}; known recipes: {', '.join(sorted(RECIPES))}")
    return RECIPES[name]


# ---------------------------------------------------------------------------------------------------------------
# Layer mappings, derived from the depths (paper: 12 -> 6 and 12 -> 4). An impossible one is a ConfigError: the
# depths come from the config (teacher, student); the caller names the key.
# ---------------------------------------------------------------------------------------------------------------


def layer_step(n_teacher: int, n_student: int) -> int:
    """Teacher layers per student layer; the teacher must split into equal blocks, one per student layer."""
    if n_student < 1 or n_teacher < 1:
        raise ConfigError(f"impossible layer mapping: teacher depth {n_teacher}, student depth {n_student}")
    if n_student > n_teacher:
        raise ConfigError(
            f"impossible layer mapping: student depth {n_student} is deeper than teacher depth {n_teacher}"
        )
    if n_teacher % n_student:
        raise ConfigError(
            f"impossible layer mapping: teacher depth {n_teacher} is not a multiple of student depth {n_student}"
        )
    return n_teacher // n_student


def student_init_layers(n_teacher: int, n_student: int, offset: int) -> list[int]:
    """0-based teacher layer copied into each student layer: k*step + offset.

    offset 0 gives DistilBioBERT's 0,2,..,10 and offset step-1 CompactBioBERT's 1,3,..,11 for 12 -> 6 (spec §1.2-3).
    """
    step = layer_step(n_teacher, n_student)
    if not 0 <= offset < step:
        raise ValueError(f"layer offset {offset} outside a block of {step} teacher layers")
    return [k * step + offset for k in range(n_student)]


def init_offset(recipe: Recipe, n_teacher: int, n_student: int) -> int:
    step = layer_step(n_teacher, n_student)
    return 0 if recipe.init_position == "first" else step - 1


def attention_pairs(n_teacher: int, n_student: int) -> list[tuple[int, int]]:
    """(student layer, teacher layer), 0-based, for attention distillation: each student layer learns the last
    layer of its teacher block, (i+1)*step - 1 (spec §1.3: 1,3,..,11; §1.4: 2,5,8,11)."""
    step = layer_step(n_teacher, n_student)
    return [(i, (i + 1) * step - 1) for i in range(n_student)]


def hidden_pairs(n_teacher: int, n_student: int, include_embeddings: bool) -> list[tuple[int, int]]:
    """(student, teacher) indices into `hidden_states` (0 = embedding output, i = output of layer i):
    student i <-> teacher i*step. TinyBioBERT includes the embeddings pair (spec §1.4), CompactBioBERT does not
    (spec §1.3)."""
    step = layer_step(n_teacher, n_student)
    first = 0 if include_embeddings else 1
    return [(i, i * step) for i in range(first, n_student + 1)]


@dataclass(frozen=True)
class LayerLayout:
    attention: list[tuple[int, int]] = field(default_factory=list)
    hidden: list[tuple[int, int]] = field(default_factory=list)


def layer_layout(recipe: Recipe, n_teacher: int, n_student: int) -> LayerLayout:
    if recipe.name == "compactbiobert":
        return LayerLayout(attention_pairs(n_teacher, n_student), hidden_pairs(n_teacher, n_student, False))
    if recipe.name == "tinybiobert":
        return LayerLayout(attention_pairs(n_teacher, n_student), hidden_pairs(n_teacher, n_student, True))
    if recipe.kind == "distillation":
        layer_step(n_teacher, n_student)  # validate even when only the last layer is compared
    return LayerLayout()


# ---------------------------------------------------------------------------------------------------------------
# Models: teacher, students
# ---------------------------------------------------------------------------------------------------------------


def attention_implementation(recipe: Recipe) -> str:
    """Attention maps exist only with eager attention; the other recipes use the faster SDPA kernels."""
    return "eager" if recipe.attention_maps else "sdpa"


def load_teacher(teacher_dir: str, recipe: Recipe) -> PreTrainedModel:
    """The frozen teacher: no parameter trains. Whether its dropout is on is decided by `PretrainingObjective`."""
    teacher = AutoModelForMaskedLM.from_pretrained(teacher_dir, attn_implementation=attention_implementation(recipe))
    teacher.requires_grad_(False)
    return teacher


def load_start_model(start_dir: str, recipe: Recipe) -> PreTrainedModel:
    """The continual-MLM start model, any `AutoModelForMaskedLM` (distilbert, bert, mobilebert...)."""
    try:
        return AutoModelForMaskedLM.from_pretrained(start_dir, attn_implementation=attention_implementation(recipe))
    except ValueError:  # an architecture without SDPA support: let transformers pick
        return AutoModelForMaskedLM.from_pretrained(start_dir)


def student_config(recipe: Recipe, teacher_config, overrides: dict | None):
    """The student's config: the teacher's, with the recipe's default shape and then `overrides` applied
    (a ConfigError when they do not fit the recipe or the teacher)."""
    if teacher_config.model_type != "bert":
        raise ConfigError(f"recipe {recipe.name!r} needs a BERT teacher, got model_type {teacher_config.model_type!r}")
    shape = {}
    if recipe.student_init == "teacher_layers":  # spec §1.2: half the teacher's depth unless configured
        shape["num_hidden_layers"] = teacher_config.num_hidden_layers // 2
    shape.update(recipe.default_student)
    shape.update(overrides or {})
    if recipe.student_init == "teacher_layers":
        changed = sorted(
            k for k, v in shape.items() if k != "num_hidden_layers" and getattr(teacher_config, k, None) != v
        )
        if changed:
            raise ConfigError(
                f"recipe {recipe.name!r} copies teacher layers, so only num_hidden_layers may differ "
                f"from the teacher; got overrides for {', '.join(changed)}"
            )
    config = copy.deepcopy(teacher_config)
    for key, value in shape.items():
        setattr(config, key, value)
    config.vocab_size = teacher_config.vocab_size  # spec §1.4: the student keeps the teacher's vocabulary
    if recipe.attention_maps and config.num_attention_heads != teacher_config.num_attention_heads:
        raise ConfigError(
            f"recipe {recipe.name!r} compares attention maps head by head: the student needs the "
            f"teacher's {teacher_config.num_attention_heads} heads, got {config.num_attention_heads}"
        )
    if config.hidden_size % config.num_attention_heads:
        raise ConfigError(
            f"student hidden_size {config.hidden_size} is not a multiple of "
            f"num_attention_heads {config.num_attention_heads}"
        )
    return config


def copy_teacher_layers(student: PreTrainedModel, teacher: PreTrainedModel, teacher_layers: list[int]) -> None:
    """Copy the embeddings and the chosen encoder layers. The MLM head is NOT copied: the official scripts save a
    bare BertModel and reload it as a masked LM, so the head transform and bias start fresh and the decoder is tied
    to the copied word embeddings (spec §1.2 step 4, §8.4)."""
    student_base, teacher_base = student.base_model, teacher.base_model
    student_base.embeddings.load_state_dict(teacher_base.embeddings.state_dict())
    for student_layer, teacher_layer in enumerate(teacher_layers):
        student_base.encoder.layer[student_layer].load_state_dict(
            teacher_base.encoder.layer[teacher_layer].state_dict()
        )


def build_student(recipe: Recipe, teacher: PreTrainedModel, overrides: dict | None = None) -> PreTrainedModel:
    """A fresh student for a distillation recipe. Seed the global RNG first: fresh weights are random."""
    config = student_config(recipe, teacher.config, overrides)
    student = AutoModelForMaskedLM.from_config(config, attn_implementation=attention_implementation(recipe))
    if recipe.student_init == "teacher_layers":
        n_teacher, n_student = teacher.config.num_hidden_layers, config.num_hidden_layers
        offset = init_offset(recipe, n_teacher, n_student)
        copy_teacher_layers(student, teacher, student_init_layers(n_teacher, n_student, offset))
    return student


# ---------------------------------------------------------------------------------------------------------------
# Forward passes with the MLM head on masked rows only
# ---------------------------------------------------------------------------------------------------------------


def masked_positions(labels: torch.Tensor) -> torch.Tensor:
    """(batch, seq) bool: the positions the collator masked. Row order of `hidden[mask]` is row-major."""
    return labels != IGNORE_INDEX


def mlm_head(model: PreTrainedModel) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """The MLM head of `model` as a function of hidden rows (n, hidden) -> logits (n, vocab); None if unknown."""
    if isinstance(model, DistilBertForMaskedLM):
        return lambda rows: model.vocab_projector(model.vocab_layer_norm(model.activation(model.vocab_transform(rows))))
    for name in ("cls", "lm_head"):  # BERT, MobileBERT / RoBERTa-like
        if isinstance(getattr(model, name, None), nn.Module):
            return getattr(model, name)
    return None


@dataclass
class EncoderPass:
    """What one model's forward pass produced."""

    masked_logits: torch.Tensor  # (n_masked, vocab)
    last_hidden: torch.Tensor  # (batch, seq, hidden)
    hidden_states: tuple[torch.Tensor, ...] | None = None  # embeddings output + every layer output
    attentions: tuple[torch.Tensor, ...] | None = None  # per layer (batch, heads, seq, seq), post-softmax


def encode(
    model: PreTrainedModel,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    masked: torch.Tensor,  # the masked positions: (batch, seq) bool, or flat indices (losses.rows_at)
    hidden_states: bool = False,
    attentions: bool = False,
    position_ids: torch.Tensor | None = None,
) -> EncoderPass:
    """Run the encoder, then the MLM head on the masked positions only (exactly the full head's rows there)."""
    head = mlm_head(model)
    if head is None:  # unknown architecture: full logits, then select (slower, same numbers)
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            position_ids=position_ids,
            output_hidden_states=True,
            output_attentions=attentions,
        )
        return EncoderPass(
            losses.rows_at(out.logits, masked),
            out.hidden_states[-1],
            out.hidden_states if hidden_states else None,
            out.attentions,
        )
    out = model.base_model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        position_ids=position_ids,
        output_hidden_states=hidden_states,
        output_attentions=attentions,
    )
    last = out.last_hidden_state
    return EncoderPass(head(losses.rows_at(last, masked)), last, out.hidden_states, out.attentions)


# Architectures whose output at a position depends only on the positions it attends to and on its position id, so
# that citations can share a row. Not MobileBERT: its trigram input shows each token its neighbours' embeddings,
# across a citation's end. Not RoBERTa-like models: their position ids start after the padding id.
PACKABLE_MODEL_TYPES = ("bert", "distilbert")


def packs_rows(recipe: Recipe, model_types: list[str]) -> bool:
    """Whether the train setting `packing` applies to `recipe` on models of `model_types`: its terms read the
    last hidden layer at real positions and the logits at masked ones only (CompactBioBERT's and TinyBioBERT's
    layer and attention terms average over padding too, spec §1.3-1.4), and every model keeps citations apart."""
    layers_read = needs_hidden_states(recipe) or recipe.attention_maps
    return not layers_read and all(model_type in PACKABLE_MODEL_TYPES for model_type in model_types)


def segment_mask(segments: torch.Tensor, model: PreTrainedModel) -> torch.Tensor:
    """The (rows, 1, seq, seq) attention mask of a packed batch (data.pack_rows): each position attends to the
    positions of its own citation (`segments`: 1, 2, .. per row; padding, 0, to padding), as in a padded batch
    each citation attends to its own row. Boolean (True: attend) for SDPA, additive for eager attention."""
    same = segments[:, None, :, None] == segments[:, None, None, :]
    kind = model.config._attn_implementation
    if kind == "sdpa":
        return same
    if kind != "eager":  # flash and flex attention take no such mask
        raise ValueError(f"packing needs SDPA or eager attention, not {kind!r}")
    return torch.zeros(same.shape, device=same.device).masked_fill(~same, torch.finfo(torch.float32).min)


# ---------------------------------------------------------------------------------------------------------------
# Loss terms per recipe (unweighted; the recipe's loss_weights combine them)
# ---------------------------------------------------------------------------------------------------------------


@dataclass
class Batch:
    tokens: torch.Tensor  # the real positions: the (batch, seq) attention mask or flat indices (losses.rows_at)
    masked: torch.Tensor  # the masked positions: (batch, seq) bool or flat indices
    targets: torch.Tensor  # (n_masked,) original token ids at masked positions


def continual_terms(s: EncoderPass, t, batch: Batch, layout: LayerLayout, fit_dense) -> dict[str, torch.Tensor]:
    return {"mlm": losses.masked_lm_loss(s.masked_logits, batch.targets)}


def distilbiobert_terms(
    s: EncoderPass, t: EncoderPass, batch: Batch, layout: LayerLayout, fit_dense
) -> dict[str, torch.Tensor]:
    return {
        "mlm": losses.masked_lm_loss(s.masked_logits, batch.targets),
        "ce": losses.soft_target_kl(s.masked_logits, t.masked_logits, RECIPES["distilbiobert"].temperature),
        "cos": losses.hidden_cosine(s.last_hidden, t.last_hidden, batch.tokens),
    }


def compactbiobert_terms(
    s: EncoderPass, t: EncoderPass, batch: Batch, layout: LayerLayout, fit_dense
) -> dict[str, torch.Tensor]:
    return {
        "mlm": losses.masked_lm_loss(s.masked_logits, batch.targets),
        "att": sum(losses.attention_kl(s.attentions[i], t.attentions[j], batch.tokens) for i, j in layout.attention),
        "hid": sum(
            losses.hidden_cosine(s.hidden_states[i], t.hidden_states[j], batch.tokens) for i, j in layout.hidden
        ),
        "out": losses.soft_target_kl(s.masked_logits, t.masked_logits, RECIPES["compactbiobert"].temperature),
    }


def tinybiobert_terms(
    s: EncoderPass, t: EncoderPass, batch: Batch, layout: LayerLayout, fit_dense
) -> dict[str, torch.Tensor]:
    return {
        "att": sum(losses.attention_mse(s.attentions[i], t.attentions[j]) for i, j in layout.attention),
        "rep": sum(losses.hidden_mse(fit_dense(s.hidden_states[i]), t.hidden_states[j]) for i, j in layout.hidden),
        "pred": losses.soft_cross_entropy(s.masked_logits, t.masked_logits, RECIPES["tinybiobert"].temperature),
    }


TERMS = {
    "distilbiobert": distilbiobert_terms,
    "compactbiobert": compactbiobert_terms,
    "tinybiobert": tinybiobert_terms,
    "continual_mlm": continual_terms,
}


def needs_hidden_states(recipe: Recipe) -> bool:
    return recipe.name in ("compactbiobert", "tinybiobert")


# ---------------------------------------------------------------------------------------------------------------
# The module the Trainer optimises
# ---------------------------------------------------------------------------------------------------------------


class PretrainingObjective(nn.Module):
    """Student (+ frozen teacher, + TinyBERT's fit_dense) returning the recipe's weighted loss and its terms.

    `teacher_dropout=True` reproduces the official scripts: the teacher is a submodule of the wrapper the Trainer
    puts in train mode every step, so its dropout is ON while distilling (spec §1.2, §8.1). False keeps the teacher
    in eval mode, as the original DistilBERT does. The teacher never receives gradients either way.
    """

    def __init__(
        self,
        recipe: Recipe,
        student: PreTrainedModel,
        teacher: PreTrainedModel | None = None,
        teacher_dropout: bool = True,
    ):
        super().__init__()
        if (teacher is None) != (recipe.kind == "continual"):
            raise ValueError(f"recipe {recipe.name!r} {'needs' if teacher is None else 'takes no'} teacher")
        self.recipe = recipe
        self.student = student
        self.teacher = teacher
        self.teacher_dropout = teacher_dropout
        n_student = student.config.num_hidden_layers
        n_teacher = teacher.config.num_hidden_layers if teacher is not None else n_student
        self.layout = layer_layout(recipe, n_teacher, n_student)
        # spec §1.4: one Linear(student_hidden -> teacher_hidden) shared by every layer, dropped at export
        self.fit_dense = (
            nn.Linear(student.config.hidden_size, teacher.config.hidden_size) if recipe.name == "tinybiobert" else None
        )
        if teacher is not None:
            teacher.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.teacher is not None:
            self.teacher.train(mode and self.teacher_dropout)
        return self

    def model_types(self) -> list[str]:
        return [m.config.model_type for m in (self.student, self.teacher) if m is not None]

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        labels: torch.Tensor,
        position_ids: torch.Tensor | None = None,
        segments: torch.Tensor | None = None,
        masked_index: torch.Tensor | None = None,
        token_index: torch.Tensor | None = None,
    ) -> dict:
        """`segments` and `position_ids` (the train setting `packing`, where packs_rows): several citations to a
        row (data.pack_rows), each attending to itself only; `attention_mask` then marks the real positions.
        `masked_index`, `token_index`: the flat indices of the masked and of the real positions, as the collator
        gives them, so that no selection waits for the GPU; without them, the masks select."""
        masked = masked_positions(labels) if masked_index is None else masked_index
        tokens = attention_mask if token_index is None else token_index
        batch = Batch(tokens, masked, losses.rows_at(labels, masked))
        layers = needs_hidden_states(self.recipe)
        maps = self.recipe.attention_maps
        if segments is not None and not packs_rows(self.recipe, self.model_types()):
            raise ValueError(f"recipe {self.recipe.name!r} with these models cannot pack citations into rows")

        def run(model):
            mask = attention_mask if segments is None else segment_mask(segments, model)
            return encode(model, input_ids, mask, masked, layers, maps, position_ids)

        student_pass = run(self.student)
        teacher_pass = None
        if self.teacher is not None:
            with torch.no_grad():
                teacher_pass = run(self.teacher)
        terms = TERMS[self.recipe.name](student_pass, teacher_pass, batch, self.layout, self.fit_dense)
        loss = sum(self.recipe.loss_weights[name] * value for name, value in terms.items())
        return {"loss": loss, "terms": terms}
