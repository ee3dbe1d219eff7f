"""The analytic FLOP counts of benchmarks/flops.py against torch's FlopCounterMode and by hand.

FlopCounterMode counts every matmul the real models execute, forward and backward; the analytic
counts must match it exactly, for both consensus layouts, with and without the island regulariser.
"""

import json
import sys
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import BertForMaskedLM

from glomtext import GlomTextConfig, GlomTextForMaskedLM

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))  # as when running the scripts there
from flops import bert_config_like, bert_train_flops, consensus_pairs, glom_train_flops, masked_count  # noqa: E402

VOCAB = 100
FRACTION = 0.15


def tiny_glom(**kw) -> GlomTextConfig:
    base = dict(vocab_size=VOCAB, hidden_size=16, num_levels=3, num_iterations=2, max_position_embeddings=64,
                reach_window=1, reach_sparse_keys=2)  # offsets per level: 2, 8, 12 (see test_modeling's blocked geometry)
    return GlomTextConfig(**{**base, **kw})


def mlm_inputs(batch_size: int, seq_len: int, seed: int = 0) -> dict:
    """Random ids with exactly masked_count(...) labelled positions, as the benchmark builds them."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, VOCAB, (batch_size, seq_len), generator=g)
    labels = torch.full_like(ids, -100)
    chosen = torch.randperm(ids.numel(), generator=g)[: masked_count(batch_size, seq_len, FRACTION)]
    labels.view(-1)[chosen] = ids.view(-1)[chosen]
    return dict(input_ids=ids, labels=labels)


def counted(model: torch.nn.Module, inputs: dict) -> tuple[int, int]:
    """(forward, backward) matmul FLOPs of one training step, as FlopCounterMode sees them."""
    model.train()
    with FlopCounterMode(display=False) as fc:
        loss = model(**inputs).loss
    forward = fc.get_total_flops()
    with FlopCounterMode(display=False) as fc:
        loss.backward()
    return forward, fc.get_total_flops()


@pytest.mark.parametrize("seq_len,dense", [(16, True), (40, False)])  # the model's dense choice; the blocked layout, forced
@pytest.mark.parametrize("overrides", [
    {},
    {"island_loss_weight": 0.0},
    {"top_down_position": "island"},
    {"mlp_layers": 2, "mlp_ratio": 1.5, "position_features": 8},
])
def test_glom_count_equals_flop_counter(seq_len, dense, overrides):
    torch.manual_seed(0)
    cfg = tiny_glom(**overrides)
    sparse = None if dense else True
    # blocked, 40 columns: near band 40 x 12 keys at every level; far band (stride 8, blocks of 2,
    # 40 padded to 48) 48 x 6 at levels 1 and 2
    assert consensus_pairs(cfg, seq_len, sparse_attention=sparse) == (dense, [16 * 16] * 3 if dense else [480, 768, 768])
    forward, backward = counted(GlomTextForMaskedLM(cfg), {**mlm_inputs(2, seq_len), "sparse_attention": sparse})
    f = glom_train_flops(cfg, 2, seq_len, FRACTION, sparse_attention=sparse)
    assert (f.total_forward, f.total - f.total_forward) == (forward, backward)


def test_glom_count_with_full_reach_and_forced_sparse_layout():
    torch.manual_seed(0)
    full = tiny_glom(attention_reach="full")
    assert consensus_pairs(full, 40) == (True, [40 * 40] * 3)
    assert glom_train_flops(full, 2, 40, FRACTION).total == sum(counted(GlomTextForMaskedLM(full), mlm_inputs(2, 40)))
    local = tiny_glom()
    model = GlomTextForMaskedLM(local)
    inputs = {**mlm_inputs(2, 16), "sparse_attention": True}
    assert glom_train_flops(local, 2, 16, FRACTION, sparse_attention=True).total == sum(counted(model, inputs))


def test_bert_count_equals_flop_counter():
    torch.manual_seed(0)
    cfg = bert_config_like(tiny_glom())
    model = BertForMaskedLM._from_config(cfg, attn_implementation="eager")  # sdpa is not visible to FlopCounterMode on CPU
    forward, backward = counted(model, mlm_inputs(2, 16))
    f = bert_train_flops(cfg, 2, 16)
    assert (f.total_forward, f.total - f.total_forward) == (forward, backward)


def test_glom_count_by_hand():
    # L=2, D=4, H=8, P=2, T=1, full reach, B=1, N=3, V=10, no island loss; M = max(1, round(0.45)) = 1
    cfg = GlomTextConfig(vocab_size=10, hidden_size=4, num_levels=2, num_iterations=1, mlp_ratio=2.0, position_features=2,
                         attention_reach="full", island_loss_weight=0.0, max_position_embeddings=8)
    f = glom_train_flops(cfg, 1, 3, FRACTION)
    assert f.forward == {
        "bottom_up": 2 * 2 * 3 * (4 * 8 + 8 * 4),  # 768: 2 levels, 3 columns, 4 -> 8 -> 4
        "top_down": 2 * 1 * 3 * (6 * 8 + 8 * 4),  # 480: 1 level, input 4 + 2 position features
        "consensus": 2 * 2 * (2 * 3 * 3 * 4),  # 288: scores and weighted sum, 2 levels, 3 x 3 keys
        "mlm_head": 2 * 1 * (4 * 4 + 4 * 10),  # 112: 1 masked position
    }
    assert f.total == 3 * 1648


def test_bert_count_by_hand():
    cfg = bert_config_like(GlomTextConfig(vocab_size=10, hidden_size=4, num_iterations=1, max_position_embeddings=8),
                           num_attention_heads=2, intermediate_ratio=2)
    f = bert_train_flops(cfg, 1, 2)
    assert f.forward == {
        "projections": 2 * 2 * 4 * 4 * 4,  # 256: Q, K, V, output on 2 positions
        "feed_forward": 2 * 2 * 2 * 4 * 8,  # 256
        "attention": 2 * 2 * 2 * 2 * 4,  # 64: scores + weighted sum, 2 x 2 pairs, width 4 over all heads
        "mlm_head": 2 * 2 * (4 * 4 + 4 * 10),  # 224: every position
    }
    assert f.total == 3 * 800


def test_layout_follows_the_model_choice_for_the_base_preset():
    cfg = GlomTextConfig(hidden_size=256, num_levels=5, num_iterations=10, max_position_embeddings=2048)
    assert consensus_pairs(cfg, 384) == (True, [384 * 384] * 5)  # dense up to DENSE_UP_TO columns
    # blocked: near band in blocks of b = 32 (the top level's local radius), 385 padded to 416, 96 keys;
    # levels 2-4 add a far band of stride 16, 32, 64 in blocks of 8 (385 padded to 512), 24 keys
    near = 416 * 96
    assert consensus_pairs(cfg, 385) == (False, [near, near] + [near + 512 * 24] * 3)
    with pytest.raises(ValueError, match="bounded reach"):
        consensus_pairs(GlomTextConfig(attention_reach="full"), 64, sparse_attention=True)


def test_masked_count():
    assert masked_count(32, 64, 0.15) == 307  # round(307.2)
    assert masked_count(1, 3, 0.15) == 1  # never zero
    with pytest.raises(ValueError, match="mask_fraction"):
        masked_count(2, 8, 0.0)


def test_glom_refuses_backbone_configs():
    cfg = tiny_glom()
    cfg.backbone_config = {"model_type": "bert"}
    with pytest.raises(ValueError, match="backbone"):
        glom_train_flops(cfg, 1, 4, FRACTION)


@pytest.mark.slow
def test_bench_train_quick_utilisation_runs(tmp_path):
    import bench_train

    out = tmp_path / "bench.json"
    threads = torch.get_num_threads()
    try:
        assert bench_train.main(["--quick", "--threads", "1", "--sections", "utilisation", "--json", str(out)]) == 0
    finally:
        torch.set_num_threads(threads)  # --threads is process-wide: leave other tests as they were
    result = json.loads(out.read_text())["utilisation"]
    glom, bert = result["glom"], result["bert"]
    assert glom["step_s"] > 0 and bert["step_s"] > 0
    assert result["ratios"]["glom/bert"]["utilisation_ratio"] == pytest.approx(glom["utilisation"] / bert["utilisation"])
    # the FLOPs behind the utilisation are the analytic ones for the quick batch (2 x 32)
    assert glom["step_gflop"] * 1e9 == pytest.approx(glom_train_flops(bench_train.glom_config(), 2, 32, FRACTION).total)
