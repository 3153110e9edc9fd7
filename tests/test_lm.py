"""The methods on a causal language model's logits (per-token targets), with a tiny randomly
initialised Llama (no download): the loss equals the model's own, banks hold the supervised tokens
only, distillation starts on schedule, resume is exact, faults are refused in one line, and no
dense target over the vocabulary is built."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import lstsd.sparse
from lstsd.methods import Method, create_method
from lstsd.tokens import TokenBank

transformers = pytest.importorskip("transformers")

V, N, T = 64, 6, 10
PER_TOKEN = ["lstsd", "lstsd_wo_long", "lstsd_wo_short", "ps_kd", "temporal_ensembling"]


def tiny_llama(seed: int = 0) -> Any:
    torch.manual_seed(seed)
    config = transformers.LlamaConfig(vocab_size=V, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                                      num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=32)
    return transformers.LlamaForCausalLM(config)


def data() -> tuple[torch.Tensor, torch.Tensor]:
    """N examples of T tokens: a prompt of 3 (no loss), an answer, padding (no loss) after it."""
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, V, (N, T), generator=g)
    labels = ids.clone()
    labels[:, :3] = -100
    for i, end in enumerate([10, 8, 6, 9, 7, 10]):
        labels[i, end:] = -100
    return ids, labels


def build(name: str, **settings: Any) -> Method:
    per_token = {"per_token": True} if name in PER_TOKEN else {}
    extra = {"generation_epochs": 1} if name.startswith("lstsd") else {}
    method = create_method(name, num_samples=N, num_classes=V, **per_token, **extra, **settings)
    method.setup(torch.nn.Linear(1, 1), epochs=4, steps_per_epoch=2)
    return method


def run(method: Method, model: Any, epochs: range, *, opt: Any = None) -> list[torch.Tensor]:
    ids, labels = data()
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.5)
    losses = []
    for epoch in epochs:
        method.start_epoch(epoch)
        for idx in (torch.tensor([4, 0, 2]), torch.tensor([1, 5, 3])):
            out = model(input_ids=ids[idx])
            loss = method.loss(out.logits, labels[idx], idx)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.detach())
        method.end_epoch(model)
    return losses


@pytest.mark.parametrize("name", ["vanilla", *PER_TOKEN])
def test_the_loss_before_any_teacher_equals_the_model_s_own_causal_lm_loss(name: str):
    model = tiny_llama()
    ids, labels = data()
    method = build(name)
    method.start_epoch(0)
    out = model(input_ids=ids, labels=labels)
    assert torch.allclose(method.loss(out.logits, labels, torch.arange(N)), out.loss, rtol=1e-6)
    # Under gradient accumulation the Trainer passes the tokens of the whole accumulated batch.
    items = torch.tensor(int((labels[:, 1:] != -100).sum()) + 11)
    out = model(input_ids=ids, labels=labels, num_items_in_batch=items)
    method = build(name)
    method.start_epoch(0)
    assert torch.allclose(method.loss(out.logits, labels, torch.arange(N), num_items_in_batch=items), out.loss,
                          rtol=1e-6)


def test_banks_hold_the_softened_prediction_of_every_supervised_token_and_nothing_else():
    model = tiny_llama()
    ids, labels = data()
    method = build("lstsd", bank_topk=4, bank_dtype="float32")
    method.start_epoch(0)
    out = model(input_ids=ids, labels=labels)
    method.loss(out.logits, labels, torch.arange(N))
    bank = method.short_term_bank
    assert isinstance(bank, TokenBank)
    supervised = (labels[:, 1:] != -100).sum(dim=1)
    assert bank.counts.tolist() == supervised.tolist() and bank.filled == int(supervised.sum())
    # Example 1's answer: positions 2..6 predict labels 3..7; their top-4 at T = 2.
    probs = torch.softmax(out.logits[1, 2:7].detach() / 2.0, dim=1)
    keys = (torch.full((5,), 1) << 20) | torch.arange(5)
    targets, recorded = bank.read(keys)
    assert recorded.all()
    assert torch.allclose(targets.probs, probs.topk(4, dim=1).values, atol=1e-6)
    assert torch.equal(targets.ids, probs.topk(4, dim=1).indices)


@pytest.mark.parametrize("name", PER_TOKEN)
def test_distillation_starts_in_the_second_mini_generation(name: str):
    method = build(name)
    run(method, tiny_llama(), range(2))
    parts = method.loss_components()
    distilled = [k for k, w in method.loss_weights().items() if k != "ce" and w > 0]
    assert distilled and all(float(parts[k]) > 0 for k in distilled), parts
    total = sum(w * float(parts[k]) for k, w in method.loss_weights().items())
    assert total == pytest.approx(float(parts["total"]), rel=1e-5)
    diagnostics = method.teacher_diagnostics()
    assert diagnostics and all(v == 100.0 for k, v in diagnostics.items() if k.endswith("_coverage"))


@pytest.mark.parametrize("settings", [{}, {"bank_topk": 4}])
@pytest.mark.parametrize("name", ["lstsd", "ps_kd", "temporal_ensembling"])
def test_resume_from_the_method_s_state_dict_is_exact(name: str, settings: dict[str, Any]):
    if name == "temporal_ensembling" and settings:   # its ensemble is top-k only: another k instead
        settings = {"bank_topk": 3}
    elif not settings and name != "temporal_ensembling":   # the default per-token format: sampled
        settings = {"bank_samples": 6}
    ref_model, ref = tiny_llama(), build(name, **settings)
    full = run(ref, ref_model, range(4))

    model, method = tiny_llama(), build(name, **settings)
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    first = run(method, model, range(2), opt=opt)
    saved = {"model": model.state_dict(), "method": method.state_dict()}
    model, method = tiny_llama(seed=9), build(name, **settings)
    model.load_state_dict(saved["model"])
    method.load_state_dict(saved["method"])
    rest = run(method, model, range(2, 4), opt=torch.optim.SGD(model.parameters(), lr=0.5))
    assert torch.equal(torch.stack(first + rest), torch.stack(full))
    for key, value in ref.state_dict().items():
        if isinstance(value, torch.Tensor):
            assert torch.equal(method.state_dict()[key], value), key


def test_no_dense_target_over_the_vocabulary_is_built(monkeypatch: pytest.MonkeyPatch):
    # Every densifying path of the library raises here; the per-token methods never take one.
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a dense n × V target was built")
    monkeypatch.setattr(lstsd.sparse.SparseTargets, "to_dense", refuse)
    monkeypatch.setattr("lstsd.methods.ps_kd.pskd_targets", refuse)
    monkeypatch.setattr("lstsd.methods.ps_kd.soft_cross_entropy", refuse)
    monkeypatch.setattr("lstsd.losses.distillation_kl", refuse)
    monkeypatch.setattr("lstsd.sparse.distillation_kl", refuse)
    for name in PER_TOKEN:
        run(build(name), tiny_llama(), range(2))


def test_faults_are_refused_in_one_line():
    model = tiny_llama()
    ids, labels = data()
    logits = model(input_ids=ids).logits
    plain = create_method("lstsd", num_samples=N, num_classes=V)
    plain.start_epoch(0)
    with pytest.raises(ValueError, match="takes B × C logits: build it with per_token=True"):
        plain.loss(logits, labels, torch.arange(N))
    teacher = create_method("mean_teacher", num_samples=N, num_classes=V)
    teacher.setup(model)
    teacher.start_epoch(0)
    with pytest.raises(ValueError, match="no per-token form"):
        teacher.loss(logits, labels, torch.arange(N), model=model, inputs=ids)
    method = build("lstsd")
    method.start_epoch(0)
    with pytest.raises(ValueError, match="built with per_token=True"):
        method.loss(logits[:, 0], labels[:, 0], torch.arange(N))
    with pytest.raises(ValueError, match="num_classes=64: pass the model's vocabulary size"):
        method.loss(logits[..., :32], labels, torch.arange(N))
    with pytest.raises(ValueError, match="labels must be an integer B × T tensor"):
        method.loss(logits, labels[:, :5], torch.arange(N))
    with pytest.raises(ValueError, match="outside \\[0, 64\\) and not -100"):
        method.loss(logits, torch.full_like(labels, 70), torch.arange(N))
    with pytest.raises(ValueError, match="per_token=True records each token's target"):
        create_method("lstsd", num_samples=N, num_classes=V, per_token=True, record_targets="after_update_eval")
    with pytest.raises(ValueError, match="per-token banks take bank_format"):
        create_method("lstsd", num_samples=N, num_classes=V, per_token=True, bank_format="dense")
    method.loss(logits, labels, torch.arange(N))
    changed = labels.clone()
    changed[0, 5] = -100                                     # example 0 loses a supervised token
    with pytest.raises(ValueError, match="example 0 has 6 supervised tokens but had 7"):
        method.loss(logits, changed, torch.arange(N))


def test_a_batch_without_supervised_tokens_gives_a_zero_loss_and_writes_nothing():
    model = tiny_llama()
    ids, _ = data()
    method = build("lstsd")
    method.start_epoch(0)
    loss = method.loss(model(input_ids=ids).logits, torch.full((N, T), -100), torch.arange(N))
    assert float(loss.detach()) == 0.0 and method.short_term_bank.filled == 0
    loss.backward()


def test_per_token_temporal_ensembling_with_k_equal_to_v_is_the_dense_bias_corrected_ensemble():
    # With k = V nothing is truncated: the per-token ẑ must equal Laine & Aila's Z / (1 − α^t) of the
    # per-sample method run on the same rows, one "sample" per supervised token.
    vocab, labels = 12, data()[1]
    labels_ = torch.where(labels == -100, labels, labels % vocab)          # answers in a 12-token vocabulary
    mask = labels_[:, 1:] != -100
    per_token = create_method("temporal_ensembling", num_samples=N, num_classes=vocab, per_token=True,
                              bank_topk=vocab, temperature=2.0)
    dense = create_method("temporal_ensembling", num_samples=int(mask.sum()), num_classes=vocab, temperature=2.0)
    table = torch.randn(3, N, T, vocab, generator=torch.Generator().manual_seed(5))
    flat = torch.full((N, T), -1)
    flat[:, :-1][mask] = torch.arange(int(mask.sum()))                      # each token's dense index
    for epoch in range(3):
        per_token.start_epoch(epoch)
        dense.start_epoch(epoch)
        for idx in (torch.tensor([4, 0, 2]), torch.tensor([1, 5, 3])):
            per_token.loss(table[epoch, idx], labels_[idx], idx)
            rows = flat[idx] >= 0
            dense.loss(table[epoch, idx][rows], labels_[idx][:, 1:][rows[:, :-1]], flat[idx][rows])
        per_token.end_epoch()
        dense.end_epoch()
    from lstsd.tokens import supervised_positions, token_keys
    positions, _ = supervised_positions(labels_)
    keys = token_keys(torch.arange(N), positions)
    mine, _ = per_token.ensemble.read(keys)
    theirs, _ = dense.targets(flat[positions])
    assert torch.allclose(mine.to_dense(), theirs, atol=1e-5)
    assert per_token.counts.tolist() == [3] * N


@pytest.mark.parametrize("bank_format,size", [("sampled", "bank_samples"), ("topk", "bank_topk")])
def test_default_bank_sizes_fit_a_vocabulary_smaller_than_them_and_given_ones_are_checked(bank_format, size):
    small = create_method("lstsd", num_samples=2, num_classes=5, per_token=True, bank_format=bank_format)
    assert small.hparams()[size] == 5 and small.short_term_bank.k == 5       # 16 draws / top-8 > 5 tokens
    large = create_method("lstsd", num_samples=2, num_classes=100, per_token=True, bank_format=bank_format)
    assert large.hparams()[size] == (16 if bank_format == "sampled" else 8)
    with pytest.raises(ValueError, match=f"{size} must be an int in \\[1, vocabulary size 5\\], got 6"):
        create_method("lstsd", num_samples=2, num_classes=5, per_token=True, bank_format=bank_format, **{size: 6})
