"""Recipe registry, layer mappings, student construction, masked-rows-only MLM heads and the objective module."""

from types import SimpleNamespace

import pytest
import torch
from conftest import load_benchmark
from transformers import (
    AutoModelForMaskedLM,
    BertConfig,
    BertForMaskedLM,
    DistilBertConfig,
    DistilBertForMaskedLM,
    MobileBertConfig,
    MobileBertForMaskedLM,
)

from compact_biomed.config import ConfigError
from compact_biomed.pretrain import data, recipes

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def teacher(tiny_bert_dir):
    return AutoModelForMaskedLM.from_pretrained(tiny_bert_dir, attn_implementation="eager")


def make_batch(vocab, batch=3, seq=10, seed=0, masked=True):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([seq, seq - 3, 4])[:batch]
    attention_mask = (torch.arange(seq)[None, :] < lengths[:, None]).long()
    input_ids = torch.randint(5, vocab, (batch, seq), generator=g) * attention_mask
    labels = torch.full_like(input_ids, -100)
    if masked:
        for b, positions in enumerate([[1, 4, 7], [2, 5], [1]][:batch]):
            labels[b, positions] = input_ids[b, positions]
    return input_ids, attention_mask, labels


# --- registry -----------------------------------------------------------------------------------------------------


def test_registry_has_the_four_recipes_with_the_papers_weights():
    assert set(recipes.RECIPES) == {"distilbiobert", "compactbiobert", "tinybiobert", "continual_mlm"}
    assert recipes.get_recipe("distilbiobert").loss_weights == {"mlm": 2.0, "ce": 5.0, "cos": 1.0}
    assert recipes.get_recipe("distilbiobert").temperature == 2.0
    assert recipes.get_recipe("compactbiobert").loss_weights == {"mlm": 1.0, "att": 3.0, "hid": 3.0, "out": 5.0}
    assert recipes.get_recipe("tinybiobert").loss_weights == {"att": 1.0, "rep": 1.0, "pred": 1.0}
    assert "mlm" not in recipes.get_recipe("tinybiobert").loss_weights  # spec §1.4: no hard MLM term


def test_unknown_recipe_raises_naming_it():
    with pytest.raises(ConfigError, match="unknown pre-training recipe 'distilbart'"):
        recipes.get_recipe("distilbart")


# --- layer mappings ---------------------------------------------------------------------------------------------


def test_paper_mappings():
    assert recipes.student_init_layers(12, 6, 0) == [0, 2, 4, 6, 8, 10]  # DistilBioBERT
    assert recipes.student_init_layers(12, 6, 1) == [1, 3, 5, 7, 9, 11]  # CompactBioBERT
    assert recipes.attention_pairs(12, 6) == [(0, 1), (1, 3), (2, 5), (3, 7), (4, 9), (5, 11)]
    assert recipes.hidden_pairs(12, 6, False) == [(1, 2), (2, 4), (3, 6), (4, 8), (5, 10), (6, 12)]
    assert recipes.attention_pairs(12, 4) == [(0, 2), (1, 5), (2, 8), (3, 11)]  # TinyBioBERT, 1-based 3,6,9,12
    assert recipes.hidden_pairs(12, 4, True) == [(0, 0), (1, 3), (2, 6), (3, 9), (4, 12)]


@pytest.mark.parametrize("n_teacher,n_student", [(12, 6), (12, 4), (12, 3), (6, 3), (6, 2), (4, 2), (4, 4)])
def test_mappings_for_depth_pairs(n_teacher, n_student):
    step = n_teacher // n_student
    first = recipes.student_init_layers(n_teacher, n_student, 0)
    last = recipes.student_init_layers(n_teacher, n_student, step - 1)
    assert first == list(range(0, n_teacher, step))
    assert last == list(range(step - 1, n_teacher, step))
    assert [t for _, t in recipes.attention_pairs(n_teacher, n_student)] == last
    assert recipes.hidden_pairs(n_teacher, n_student, True)[-1] == (n_student, n_teacher)  # last layers meet
    assert len(recipes.hidden_pairs(n_teacher, n_student, True)) == n_student + 1
    assert recipes.hidden_pairs(n_teacher, n_student, False) == recipes.hidden_pairs(n_teacher, n_student, True)[1:]


@pytest.mark.parametrize(
    "n_teacher,n_student,message",
    [
        (12, 5, "teacher depth 12 is not a multiple of student depth 5"),
        (6, 4, "teacher depth 6 is not a multiple of student depth 4"),
        (4, 6, "student depth 6 is deeper than teacher depth 4"),
        (12, 0, "impossible layer mapping"),
    ],
)
def test_impossible_mappings_raise(n_teacher, n_student, message):
    for derive in (
        lambda: recipes.attention_pairs(n_teacher, n_student),
        lambda: recipes.hidden_pairs(n_teacher, n_student, True),
        lambda: recipes.student_init_layers(n_teacher, n_student, 0),
    ):
        with pytest.raises(ConfigError, match=message):
            derive()


def test_offset_outside_block_raises():
    with pytest.raises(ValueError, match="offset 2 outside a block of 2"):
        recipes.student_init_layers(12, 6, 2)


# --- student construction ---------------------------------------------------------------------------------------


def assert_modules_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("recipe_name,expected_layers", [("distilbiobert", [0, 2]), ("compactbiobert", [1, 3])])
def test_student_copies_the_intended_teacher_layers(teacher, recipe_name, expected_layers):
    torch.manual_seed(0)
    student = recipes.build_student(recipes.get_recipe(recipe_name), teacher)
    assert student.config.num_hidden_layers == 2  # default: half the teacher's depth
    assert_modules_equal(student.bert.embeddings, teacher.bert.embeddings)
    for k, t in enumerate(expected_layers):
        assert_modules_equal(student.bert.encoder.layer[k], teacher.bert.encoder.layer[t])
    other = ({0, 1, 2, 3} - set(expected_layers)).pop()
    assert not torch.equal(
        student.bert.encoder.layer[0].attention.self.query.weight,
        teacher.bert.encoder.layer[other].attention.self.query.weight,
    )
    # fresh MLM head (spec §1.2 step 4): decoder tied to the copied embeddings, transform not copied, bias zero
    head = student.cls.predictions
    assert head.decoder.weight.data_ptr() == student.bert.embeddings.word_embeddings.weight.data_ptr()
    assert torch.equal(head.decoder.weight, teacher.bert.embeddings.word_embeddings.weight)
    assert not torch.equal(head.transform.dense.weight, teacher.cls.predictions.transform.dense.weight)
    assert torch.equal(head.bias, torch.zeros_like(head.bias))


def test_student_depth_override_and_shape_errors(teacher):
    distil = recipes.get_recipe("distilbiobert")
    assert recipes.build_student(distil, teacher, {"num_hidden_layers": 4}).config.num_hidden_layers == 4
    with pytest.raises(ConfigError, match="not a multiple"):
        recipes.build_student(distil, teacher, {"num_hidden_layers": 3})
    with pytest.raises(ConfigError, match="only num_hidden_layers may differ.*hidden_size"):
        recipes.build_student(distil, teacher, {"hidden_size": 64})


def test_tiny_student_is_random_with_teacher_vocab(teacher):
    tiny = recipes.get_recipe("tinybiobert")
    shape = {"num_hidden_layers": 2, "hidden_size": 24, "num_attention_heads": 4, "intermediate_size": 48}
    student = recipes.build_student(tiny, teacher, shape)
    for key, value in shape.items():
        assert getattr(student.config, key) == value
    assert student.config.vocab_size == teacher.config.vocab_size
    assert student.config._attn_implementation == "eager"
    with pytest.raises(ConfigError, match="teacher's 4 heads, got 12"):
        recipes.build_student(tiny, teacher, {**shape, "num_attention_heads": 12})
    default = recipes.student_config(tiny, BertConfig(vocab_size=99, num_attention_heads=12), None)
    assert (default.num_hidden_layers, default.hidden_size, default.intermediate_size) == (4, 312, 1200)


# --- masked-rows-only MLM heads ---------------------------------------------------------------------------------


def small_masked_lms():
    torch.manual_seed(0)
    return {
        "bert": BertForMaskedLM(
            BertConfig(
                vocab_size=60,
                hidden_size=32,
                num_hidden_layers=2,
                num_attention_heads=4,
                intermediate_size=64,
                max_position_embeddings=32,
            )
        ),
        "distilbert": DistilBertForMaskedLM(
            DistilBertConfig(vocab_size=60, dim=32, n_layers=2, n_heads=4, hidden_dim=64, max_position_embeddings=32)
        ),
        "mobilebert": MobileBertForMaskedLM(
            MobileBertConfig(
                vocab_size=60,
                hidden_size=32,
                embedding_size=16,
                true_hidden_size=16,
                intra_bottleneck_size=16,
                intermediate_size=32,
                num_hidden_layers=2,
                num_attention_heads=2,
                num_feedforward_networks=2,
                max_position_embeddings=32,
            )
        ),
    }


@pytest.mark.parametrize("arch", ["bert", "distilbert", "mobilebert"])
def test_masked_rows_head_equals_full_head_then_select(arch):
    model = small_masked_lms()[arch].eval()
    input_ids, attention_mask, labels = make_batch(60)
    masked = recipes.masked_positions(labels)
    with torch.no_grad():
        full = model(input_ids=input_ids, attention_mask=attention_mask).logits
        rows = recipes.encode(model, input_ids, attention_mask, masked)
    assert rows.masked_logits.shape == (int(masked.sum()), 60)
    assert torch.allclose(rows.masked_logits, full[masked], atol=1e-6)


# --- objective module -------------------------------------------------------------------------------------------


def objective_for(recipe_name, teacher, teacher_dropout=True):
    recipe = recipes.get_recipe(recipe_name)
    torch.manual_seed(0)
    if recipe.kind == "continual":
        return recipes.PretrainingObjective(recipe, recipes.build_student(recipes.get_recipe("distilbiobert"), teacher))
    t = AutoModelForMaskedLM.from_config(teacher.config, attn_implementation=recipes.attention_implementation(recipe))
    t.load_state_dict(teacher.state_dict())
    overrides = (
        {"num_hidden_layers": 2, "hidden_size": 24, "num_attention_heads": 4, "intermediate_size": 48}
        if recipe_name == "tinybiobert"
        else None
    )
    return recipes.PretrainingObjective(recipe, recipes.build_student(recipe, t, overrides), t, teacher_dropout)


@pytest.mark.parametrize("recipe_name", list(recipes.RECIPES))
def test_objective_matches_plain_official_style_computation(teacher, recipe_name):
    bench = load_benchmark("bench_distill")
    objective = objective_for(recipe_name, teacher).eval()
    reference = bench.eager_copy(objective).eval()
    batch = make_batch(teacher.config.vocab_size)
    with torch.no_grad():
        out = objective(*batch)
        ref_total, ref_terms = bench.reference_loss(reference, *batch)
    assert out["terms"].keys() == ref_terms.keys() == objective.recipe.loss_weights.keys()
    for name in ref_terms:
        assert out["terms"][name].item() == pytest.approx(ref_terms[name].item(), abs=1e-5), name
    assert out["loss"].item() == pytest.approx(ref_total.item(), abs=1e-5)
    expected = sum(objective.recipe.loss_weights[k] * v for k, v in out["terms"].items())
    assert out["loss"].item() == pytest.approx(expected.item(), abs=1e-6)


@pytest.mark.parametrize("recipe_name", list(recipes.RECIPES))
@pytest.mark.parametrize("masked", [True, False])
def test_selecting_by_the_collators_indices_equals_selecting_by_masks(teacher, recipe_name, masked):
    """The collator's flat indices (data.selections) select the rows the masks select: the same terms and
    gradients, to the bit, with dropout on (the same draws), and for a batch with no masked position."""
    objective = objective_for(recipe_name, teacher).train()
    input_ids, attention_mask, labels = make_batch(teacher.config.vocab_size, masked=masked)
    indices = data.selections({"labels": labels, "attention_mask": attention_mask})
    assert len(indices["masked_index"]) == (6 if masked else 0) and len(indices["token_index"]) == 10 + 7 + 4
    results = []
    for extra in ({}, indices):
        torch.manual_seed(1)
        objective.zero_grad()
        out = objective(input_ids, attention_mask, labels, **extra)
        out["loss"].backward()
        grads = {name: p.grad.clone() for name, p in objective.student.named_parameters() if p.grad is not None}
        results.append((out["terms"], grads))
    (mask_terms, mask_grads), (index_terms, index_grads) = results
    assert mask_terms.keys() == index_terms.keys()
    assert all(torch.equal(index_terms[name], value) for name, value in mask_terms.items())
    assert mask_grads.keys() == index_grads.keys()
    assert all(torch.equal(index_grads[name], grad) for name, grad in mask_grads.items())


@pytest.mark.parametrize("teacher_dropout", [True, False])
def test_teacher_is_frozen_and_dropout_switch(teacher, teacher_dropout):
    objective = objective_for("compactbiobert", teacher, teacher_dropout)
    objective.train()
    assert objective.student.training
    assert objective.teacher.training is teacher_dropout
    assert all(not m.training for m in objective.teacher.modules()) is (not teacher_dropout)
    objective.eval()
    assert not objective.teacher.training
    objective.train()
    out = objective(*make_batch(teacher.config.vocab_size))
    out["loss"].backward()
    assert all(p.grad is None and not p.requires_grad for p in objective.teacher.parameters())
    assert all(p.grad is not None for p in objective.student.parameters())


def test_fit_dense_only_for_tinybiobert(teacher):
    tiny = objective_for("tinybiobert", teacher)
    assert (tiny.fit_dense.in_features, tiny.fit_dense.out_features) == (24, 32)
    assert objective_for("distilbiobert", teacher).fit_dense is None


@pytest.mark.parametrize("recipe_name", list(recipes.RECIPES))
def test_batch_without_masked_positions_is_finite_and_trains(teacher, recipe_name):
    objective = objective_for(recipe_name, teacher).train()
    out = objective(*make_batch(teacher.config.vocab_size, masked=False))
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(p.grad is not None for p in objective.student.parameters())  # DDP needs every parameter used


def test_recipe_needs_matching_teacher_argument(teacher):
    with pytest.raises(ValueError, match="'distilbiobert' needs teacher"):
        recipes.PretrainingObjective(recipes.get_recipe("distilbiobert"), teacher)
    with pytest.raises(ValueError, match="'continual_mlm' takes no teacher"):
        recipes.PretrainingObjective(recipes.get_recipe("continual_mlm"), teacher, teacher)


# --- packing: several citations to a row, each attending to itself ------------------------------------------------


def packable_batch(vocab):
    """Citations of 6, 10, 3 and 4 tokens padded to 10: packed (first fit, longest first), the 10 fills a row, the
    6 and the 4 share one (the 4 from position 6: its masked position tells wrong position ids), the 3 has its own."""
    lengths = torch.tensor([6, 10, 3, 4])
    attention_mask = (torch.arange(10)[None, :] < lengths[:, None]).long()
    input_ids = torch.randint(5, vocab, (4, 10), generator=torch.Generator().manual_seed(0)) * attention_mask
    labels = torch.full_like(input_ids, -100)
    for row, positions in enumerate([[1, 4], [2, 5, 8], [1], [2]]):
        labels[row, positions] = input_ids[row, positions]
    return input_ids, attention_mask, labels


def packed(batch, row_multiple=1):
    input_ids, attention_mask, labels = batch
    rows = data.pack_rows({"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}, 0, row_multiple)
    return rows["input_ids"], rows["attention_mask"], rows["labels"], rows["position_ids"], rows["segments"]


def test_pack_rows_puts_each_citation_whole_into_the_first_row_with_room():
    batch = packable_batch(60)
    input_ids, attention_mask, labels, positions, segments = packed(batch)
    assert segments.tolist() == [[1] * 10, [1] * 6 + [2] * 4, [1] * 3 + [0] * 7]
    assert positions.tolist() == [list(range(10)), list(range(6)) + list(range(4)), [0, 1, 2] + [0] * 7]
    assert torch.equal(attention_mask, (segments > 0).long())
    for citation, (row, start) in zip(range(4), [(1, 0), (0, 0), (2, 0), (1, 6)]):
        length = int(batch[1][citation].sum())
        for packed_rows, unpacked in ((input_ids, batch[0]), (labels, batch[2])):
            assert torch.equal(packed_rows[row, start : start + length], unpacked[citation, :length])
    assert (labels[segments == 0] == -100).all() and (input_ids[segments == 0] == 0).all()
    rounded = packed(batch, row_multiple=4)  # 3 rows and one empty one
    assert all(torch.equal(r[:3], p) for r, p in zip(rounded, (input_ids, attention_mask, labels, positions, segments)))
    assert rounded[4][3].tolist() == [0] * 10 and rounded[2][3].tolist() == [-100] * 10 and not rounded[1][3].any()
    assert len(packed(batch, row_multiple=8)[0]) == 4  # never more rows than the padded batch's 4


def with_eager_attention(objective):
    for model in filter(None, (objective.student, objective.teacher)):
        model.set_attn_implementation("eager")
    return objective


@pytest.mark.parametrize(
    "recipe_name, arch, attention",
    [
        ("distilbiobert", None, "sdpa"),
        ("distilbiobert", None, "eager"),
        ("continual_mlm", "bert", "sdpa"),
        ("continual_mlm", "bert", "eager"),
        ("continual_mlm", "distilbert", "sdpa"),
    ],
)
def test_packed_rows_give_the_padded_batchs_terms_and_gradients(teacher, recipe_name, arch, attention):
    if arch is None:
        objective = objective_for(recipe_name, teacher).eval()  # eval: no dropout, so the layouts can be compared
    else:
        objective = recipes.PretrainingObjective(recipes.get_recipe(recipe_name), small_masked_lms()[arch]).eval()
    if attention == "eager":
        objective = with_eager_attention(objective)
    assert objective.student.config._attn_implementation == attention
    batch = packable_batch(objective.student.config.vocab_size)
    results = []
    for layout in (batch, packed(batch), packed(batch, row_multiple=4)):  # 3 rows, and 3 rows with an empty one
        objective.zero_grad()
        out = objective(*layout)
        out["loss"].backward()
        grads = {name: p.grad.clone() for name, p in objective.student.named_parameters() if p.grad is not None}
        results.append((out, grads))
    (padded, padded_grads), *packings = results
    for packed_out, packed_grads in packings:
        assert packed_out["terms"].keys() == padded["terms"].keys()
        for name, value in padded["terms"].items():
            assert packed_out["terms"][name].item() == pytest.approx(value.item(), rel=1e-5, abs=1e-6), name
        assert padded_grads.keys() == packed_grads.keys() and padded_grads
        for name, grad in padded_grads.items():
            torch.testing.assert_close(packed_grads[name], grad, rtol=1e-4, atol=1e-6, msg=name)


def test_packed_rows_without_their_segments_would_differ(teacher):
    """The test above can fail: the packed rows attending across their citations give other terms."""
    objective = objective_for("distilbiobert", teacher).eval()
    batch = packable_batch(teacher.config.vocab_size)
    input_ids, attention_mask, labels, positions, segments = packed(batch)
    with torch.no_grad():
        padded = objective(*batch)["terms"]["cos"]
        across = objective(input_ids, attention_mask, labels, positions, torch.where(segments > 0, 1, 0))["terms"]
    assert across["cos"].item() != pytest.approx(padded.item(), rel=1e-3)


@pytest.mark.parametrize(
    "recipe_name, arch", [("compactbiobert", None), ("tinybiobert", None), ("continual_mlm", "mobilebert")]
)
def test_packing_is_refused_where_citations_would_mix(teacher, recipe_name, arch):
    """CompactBioBERT's and TinyBioBERT's terms average every layer over padding too; MobileBERT's trigram input
    shows a citation's last token the next one's first."""
    if arch is None:
        objective = objective_for(recipe_name, teacher)
    else:
        objective = recipes.PretrainingObjective(recipes.get_recipe(recipe_name), small_masked_lms()[arch])
    model_types = [m.config.model_type for m in (objective.student, objective.teacher) if m is not None]
    assert not recipes.packs_rows(objective.recipe, model_types)
    with pytest.raises(ValueError, match="cannot pack citations into rows"):
        objective(*packed(packable_batch(objective.student.config.vocab_size)))


def test_segment_mask_is_refused_for_attention_that_takes_no_such_mask():
    segments = packed(packable_batch(60))[-1]
    flex = SimpleNamespace(config=SimpleNamespace(_attn_implementation="flex_attention"))
    with pytest.raises(ValueError, match="packing needs SDPA or eager attention, not 'flex_attention'"):
        recipes.segment_mask(segments, flex)
