"""Islands, trees and read-outs: planted level states (no model), then a tiny random GlomTextModel."""

from __future__ import annotations

import io
import itertools
import json
import math
import types

import numpy as np
import pytest
import torch
from nltk import Tree
from support import (
    PLANTED,
    SHUT_UP,
    groups_from_tree,
    plant,
    save_tiny_model,
    tiny_model,
)

from glomtext import GlomTextModel
from glomtext.islands import (
    Island,
    _unit_ids,
    _Window,
    adjacent_distances,
    calibrate_thresholds,
    distance_tree,
    extract_islands,
    find_islands,
    find_islands_batch,
    island_tree,
    load_model,
    word_links,
    word_states,
    word_trajectory,
    write_jsonl,
)
from glomtext.trees import to_ptb, tree_spans
from glomtext.words import pool_to_words


def members(islands: list[list[Island]]) -> list[list[tuple[int, ...]]]:
    return [[isl.members for isl in level] for level in islands]


# ------------------------------------------------------------------------------------------------
# find_islands on planted states



@pytest.mark.parametrize("method", ["average", "complete", "single"])
@pytest.mark.parametrize("nested", [False, True])
def test_planted_nested_and_discontinuous_islands_are_recovered_exactly(method, nested):
    x = plant(SHUT_UP, 6, noise=0.01)  # "He shut the noisy kids up": shut ... up at level 1
    islands = find_islands(x, method=method, nested=nested)
    assert members(islands) == [[tuple(g) for g in level] for level in SHUT_UP]
    shut_up = islands[1][1]
    assert shut_up == Island(1, (1, 5), shut_up.score) and not shut_up.contiguous
    assert islands[1][2].contiguous and islands[0][3].score == 1.0  # singletons score exactly 1
    assert all(isl.score > 0.99 for level in islands for isl in level)


def test_linkage_methods_differ_as_documented_on_hand_computed_cosines():
    # three words on a circle at angles 0, a, 2a: cos(0,1) = cos(1,2) = 0.97, cos(0,2) = 2 * 0.97**2 - 1
    a = math.acos(0.97)
    x = torch.tensor([[[math.cos(k * a), math.sin(k * a)]] for k in range(3)])  # (3, 1, 2)
    c02 = 2 * 0.97**2 - 1  # 0.8818
    avg = find_islands(x, method="average", threshold=0.9)[0]
    # first merge (0, 1) (ties go to the lowest indices), then {0,1}-{2} links at (0.97 + 0.8818) / 2
    assert [i.members for i in avg] == [(0, 1, 2)]
    assert avg[0].score == pytest.approx((0.97 + 0.97 + c02) / 3, abs=1e-6)
    complete = find_islands(x, method="complete", threshold=0.9)[0]  # min(0.97, 0.8818) < 0.9
    assert [i.members for i in complete] == [(0, 1), (2,)] and complete[0].score == pytest.approx(0.97, abs=1e-6)
    assert [i.members for i in find_islands(x, method="single", threshold=0.95)[0]] == [(0, 1, 2)]  # chaining
    assert [i.members for i in find_islands(x, method="average", threshold=0.95)[0]] == [(0, 1), (2,)]


def naive_agglomerate(sim: list[list[float]], threshold: float, method: str) -> list[list[int]]:
    """Textbook agglomerative clustering, one pair at a time, for cross-checking the vectorised one."""
    clusters = [[i] for i in range(len(sim))]
    link = {"average": lambda a, b: sum(sim[i][j] for i in a for j in b) / (len(a) * len(b)),
            "single": lambda a, b: max(sim[i][j] for i in a for j in b),
            "complete": lambda a, b: min(sim[i][j] for i in a for j in b)}[method]
    while len(clusters) > 1:
        best, a, b = max((link(clusters[a], clusters[b]), a, b) for a, b in itertools.combinations(range(len(clusters)), 2))
        if best < threshold:
            break
        clusters[a] = sorted(clusters[a] + clusters[b])
        del clusters[b]
    return sorted(clusters)


@pytest.mark.parametrize("method", ["average", "complete", "single"])
def test_vectorised_clustering_matches_the_textbook_algorithm(method):
    gen = torch.Generator().manual_seed(1)
    states = [torch.randn(w, 2, 3, generator=gen) for w in (7, 3, 9, 1, 5)]  # low dim: real clusters form
    batched = find_islands_batch(states, method=method, threshold=0.6)
    for x, islands in zip(states, batched):
        x = torch.nn.functional.normalize(x, dim=-1)
        for level, found in enumerate(islands):
            sim = (x[:, level] @ x[:, level].T).tolist()
            assert [list(i.members) for i in found] == naive_agglomerate(sim, 0.6, method)
            for isl in found:  # the score is the mean pairwise cosine of the members
                pairs = list(itertools.combinations(isl.members, 2))
                expected = sum(sim[i][j] for i, j in pairs) / len(pairs) if pairs else 1.0
                assert isl.score == pytest.approx(expected, abs=1e-5)
                if method == "average":
                    assert isl.score >= 0.6 - 1e-5  # the documented guarantee of average linkage


def test_nested_option_makes_each_island_a_union_of_islands_below():
    # level 0: {0,1} {2}; level 1 on its own would be {0} {1,2}
    x = plant([[[0, 1], [2]], [[0], [1, 2]]], 3)
    assert members(find_islands(x)) == [[(0, 1), (2,)], [(0,), (1, 2)]]
    nested = find_islands(x, nested=True)
    assert members(nested) == [[(0, 1), (2,)], [(0, 1), (2,)]]
    assert nested[1][0].score == 0.0  # kept together by nesting although they disagree at level 1


def test_per_level_thresholds_and_bad_arguments():
    x = plant([[[0, 1], [2]], [[0, 1, 2]]], 3, noise=0.05)  # within-group cosines a little below 1
    assert members(find_islands(x, threshold=[0.9, 1.5])) == [[(0, 1), (2,)], [(0,), (1,), (2,)]]
    with pytest.raises(ValueError, match="one value per level"):
        find_islands(x, threshold=[0.9])
    with pytest.raises(ValueError, match="method"):
        find_islands(x, method="ward")
    with pytest.raises(ValueError, match=r"\(W, L, D\)"):
        find_islands(torch.zeros(3, 4))


def test_empty_and_one_word_sentences_and_batch_padding():
    assert find_islands(torch.zeros(0, 3, 8)) == [[], [], []]
    assert find_islands(torch.ones(1, 2, 8)) == [[Island(0, (0,), 1.0)], [Island(1, (0,), 1.0)]]
    a, b = plant(SHUT_UP, 6, noise=0.01), plant(SHUT_UP, 6, noise=0.01)[:2]
    batched = find_islands_batch([a, b, torch.zeros(0, 4, 32)])
    assert batched[2] == [[], [], [], []]
    for together, alone in zip(batched, [find_islands(a), find_islands(b)]):  # padding b changes nothing
        assert members(together) == members(alone)
        scores = [[i.score for i in level] for level in together]
        assert scores == [[pytest.approx(i.score, abs=1e-6) for i in level] for level in alone]


def test_calibrated_thresholds_are_quantiles_of_pair_cosines():
    x = plant([[[0, 1], [2, 3]], [[0, 1, 2, 3]]], 4)  # level 0: 2 of 6 pairs agree; level 1: all
    assert calibrate_thresholds([x], quantile=0.5) == [0.0, 1.0]
    assert calibrate_thresholds([x, x[:1]], quantile=0.9) == pytest.approx([1.0, 1.0])
    with pytest.raises(ValueError):
        calibrate_thresholds([x[:1]])


# ------------------------------------------------------------------------------------------------
# trees



def test_island_tree_of_a_planted_hierarchy_is_the_planted_tree():
    words = PLANTED.leaves()
    x = plant(groups_from_tree(PLANTED), len(words), noise=0.01)
    islands = find_islands(x, nested=True)
    tree = island_tree(words, islands)
    assert tree == Tree.fromstring("(L3 (L0 the cat) (L2 sat (L1 on (L0 the mat))))")
    assert tree_spans(tree) == tree_spans(PLANTED)


def test_distance_tree_of_a_planted_binary_hierarchy_is_the_planted_tree():
    words = PLANTED.leaves()
    x = plant(groups_from_tree(PLANTED), len(words))
    # first shared level of each neighbour pair: 0, 3, 2, 1, 0 out of 4 levels
    assert adjacent_distances(x).tolist() == [0.0, 0.75, 0.5, 0.25, 0.0]
    assert adjacent_distances(x, readout="islands", nested=True).tolist() == [0.0, 3.0, 2.0, 1.0, 0.0]
    assert adjacent_distances(x, levels=[3]).tolist() == [0.0] * 5
    for options in ({}, {"readout": "islands", "nested": True}):
        assert tree_spans(distance_tree(words, x, **options)) == tree_spans(PLANTED)


@pytest.mark.parametrize("prior", ["constituent", "constituent_learned"])
def test_links_readout_splits_at_the_weakest_neighbour_link_worked_out_by_hand(prior):
    model, _ = tiny_model(consensus_prior=prior)
    with torch.no_grad():
        model.settling.log_beta.fill_(math.log(1000.0))  # each word picks the neighbour it agrees with
        if prior == "constituent_learned":  # query = key = the level state: the same links as "constituent"
            model.settling.link_query_key.weight.copy_(torch.eye(32).repeat(1, 2).expand(3, -1, -1))
            model.settling.link_query_key.bias.zero_()
    # a = b and c = d at every level (orthogonal vectors): a and b choose each other, so do c and d,
    # so links a-b and c-d are 1; b and c choose away from each other, so their link is ~0 (and stays so at every level)
    x = plant([[[0, 1], [2, 3]]] * 3, 4)
    links = word_links(model, x)
    assert adjacent_distances(x, readout="links", links=links).tolist() == pytest.approx([0, 1, 0], abs=1e-3)
    assert to_ptb(distance_tree(list("abcd"), x, readout="links", links=links)) == "(X (X a b) (X c d))"


def test_links_readout_needs_links_of_a_constituent_model_and_only_it_takes_them():
    x = plant([[[0, 1], [2, 3]]] * 3, 4)
    model, _ = tiny_model(consensus_prior="constituent")
    with pytest.raises(TypeError, match="need the words' neighbour links"):
        adjacent_distances(x, readout="links")
    with pytest.raises(TypeError, match="only they take them"):
        adjacent_distances(x, links=word_links(model, x))
    with pytest.raises(ValueError, match=r"links must have shape \(levels, words - 1\) = \(3, 3\)"):
        adjacent_distances(x, readout="links", links=torch.ones(3, 4))
    plain, _ = tiny_model()
    with pytest.raises(ValueError, match="constituent consensus_prior"):
        word_links(plain, x)


def test_links_top_down_is_tree_transformers_parse_worked_out_by_hand():
    """Pair 0 is split at levels 0-1 (links 0.0, 0.0 < 0.8), pair 2 at levels 0-2 (0.5 each), pairs 1 and 3 nowhere.
    The mean read-out splits at pair 0 first (1 - mean link 0.7 against 0.5); the top-down parse starts at the top
    level, where only pair 2 is split, and then splits 0 inside the left part: distances 2 + 1 - 0.0, 0 + 1 - 0.9,
    3 + 1 - 0.5, 0 + 1 - 0.95."""
    links = torch.tensor([[0.0, 0.9, 0.5, 0.95], [0.0, 0.95, 0.5, 0.97], [0.9, 0.99, 0.5, 0.99]])  # (L=3, W-1=4)
    x = torch.zeros(5, 3, 8)
    torch.testing.assert_close(adjacent_distances(x, readout="links", links=links), 1 - links.mean(0))
    top_down = adjacent_distances(x, readout="links_top_down", links=links)
    torch.testing.assert_close(top_down, torch.tensor([3.0, 0.1, 3.5, 0.05]))
    assert to_ptb(distance_tree(list("abcde"), x, readout="links", links=links)) == "(X a (X (X b c) (X d e)))"
    assert to_ptb(distance_tree(list("abcde"), x, readout="links_top_down", links=links)) == "(X (X a (X b c)) (X d e))"
    # levels 0-1 only: pairs 0 and 2 are both split at level 1; pair 0's link there is weaker
    torch.testing.assert_close(adjacent_distances(x, readout="links_top_down", links=links, levels=[0, 1]),
                               torch.tensor([3.0, 0.1, 2.5, 0.05]))


def test_links_average_merges_by_the_mean_prior_worked_out_by_hand():
    """Prior averaged over the two levels: C_ab = (0 + .9) / 2 = .45, C_bc = .7, C_cd = .5, C_ac = (0 + .81) / 2 = .405,
    C_bd = (.25 + .45) / 2 = .35. b-c merge first; then a|bc has mean (.45 + .405) / 2 = .4275 against bc|d's
    (.35 + .5) / 2 = .425, so a joins first, unlike the links read-out, which splits a off first (1 - mean link .55)."""
    links = torch.tensor([[0.0, 0.5, 0.5], [0.9, 0.9, 0.5]])  # (L=2, W-1=3)
    x = torch.zeros(4, 2, 8)
    torch.testing.assert_close(adjacent_distances(x, readout="links_average", links=links), torch.tensor([2.0, 1.0, 3.0]))
    assert to_ptb(distance_tree(list("abcd"), x, readout="links_average", links=links)) == "(X (X a (X b c)) d)"
    assert to_ptb(distance_tree(list("abcd"), x, readout="links", links=links)) == "(X a (X (X b c) d))"
    # level 1 alone: a-b and b-c tie at .9, and b-c, nearer the middle, merges first; then a|bc, (.9 + .81) / 2 = .855,
    # beats bc|d, (.45 + .5) / 2 = .475
    torch.testing.assert_close(adjacent_distances(x, readout="links_average", links=links, levels=[1]), torch.tensor([2.0, 1.0, 3.0]))


@pytest.mark.parametrize("prior", ["constituent_front_end", "dependency"])
def test_front_end_links_of_words_are_the_links_at_their_boundary_pieces(prior):
    """Front-end links depend on the pieces only: the link of two words is the link between
    the last piece of the first and the first piece of the second, whatever the states."""
    model, tokenizer = tiny_model(consensus_prior=prior)
    words = ["he", "shutting", "the", "noisy", "kids", "upward"]  # shut ##t ##i ##n ##g, up ##w ##a ##r ##d
    enc = tokenizer(words, is_split_into_words=True, return_tensors="pt")
    word_ids = enc.word_ids(0)
    assert len(word_ids) > len(words) + 2  # some word has several pieces
    ok = torch.ones_like(enc["input_ids"], dtype=torch.bool)
    with torch.no_grad():
        piece = model.settling.front_end_links(model.front_end(enc["input_ids"], ok.long()), ok)[:, 0]  # (L, N-1)
    boundary = [max(i for i, w in enumerate(word_ids) if w == k) for k in range(len(words) - 1)]
    x = torch.randn(6, 3, 32)
    links = word_links(model, x, tokenizer, words)
    torch.testing.assert_close(links, piece[:, boundary])
    torch.testing.assert_close(word_links(model, torch.randn(6, 3, 32), tokenizer, words), links)  # states play no part
    with pytest.raises(TypeError, match="pass tokenizer= and words="):
        word_links(model, x)
    for n in (0, 1):  # no pair of words: no links, and no tree to split
        one = word_links(model, torch.randn(n, 3, 32), tokenizer, words[:n])
        assert one.shape == (3, 0) and adjacent_distances(torch.randn(n, 3, 32), readout="links", links=one).numel() == 0
    with pytest.raises(ValueError, match="5 words but states for 6"):
        word_links(model, x, tokenizer, words[:5])


def test_island_tree_links_the_fragments_of_a_discontinuous_island():
    words = "He shut the noisy kids up".split()
    tree = island_tree(words, find_islands(plant(SHUT_UP, 6), nested=True))
    assert to_ptb(tree) == "(L3 He (L2 (L1*1 shut) (L1 the noisy kids) (L1*1 up)))"


def test_island_tree_refines_islands_that_are_not_nested_and_rejects_bad_ones():
    words = list("abc")
    islands = find_islands(plant([[[0, 1], [2]], [[0], [1, 2]]], 3))  # level 0 {0,1} crosses level 1 {1,2}
    assert to_ptb(island_tree(words, islands)) == "(X a (L1 b c))"  # level 0 refined to {0} {1} {2}
    assert island_tree([], [[], []]) == Tree("X", [])
    with pytest.raises(ValueError, match="do not cover word 2"):
        island_tree(words, [[Island(0, (0, 1), 1.0)]])
    with pytest.raises(ValueError, match="in two islands"):
        island_tree(words, [[Island(0, (0, 1), 1.0), Island(0, (1, 2), 1.0)]])


def test_ptb_escapes_brackets_inside_words():
    assert to_ptb(Tree("X", ["f(x)", Tree("X", [")", "é🙂"])])) == "(X f-LRB-x-RRB- (X -RRB- é🙂))"


def test_word_trajectory_by_hand():
    # word 0 turns from e0 to e1 over two iterations at its only level; word 1 stays at e1
    e0, e1 = torch.eye(2)
    w0 = torch.stack([e0, (e0 + e1) / 2**0.5, e1])  # (T+1, D)
    all_states = torch.stack([w0, e1.expand(3, 2)], dim=1)[:, :, None]  # (T+1=3, W=2, L=1, D=2)
    to_initial, to_words = word_trajectory(all_states, 0)
    assert to_initial[:, 0].tolist() == pytest.approx([1.0, 2**-0.5, 0.0])
    assert to_words[:, 0, 1].tolist() == pytest.approx([0.0, 2**-0.5, 1.0])  # joins word 1
    with pytest.raises(ValueError):
        word_trajectory(all_states, 2)


# ------------------------------------------------------------------------------------------------
# a tiny random model


def test_word_states_shapes_norms_and_pooling():
    model, tok = tiny_model()
    sentences = ["He shut the noisy kids up.", "", ["new", "york"]]
    states = word_states(model, tok, sentences, batch_size=2)
    assert [tuple(s.shape) for s in states] == [(6, 3, 32), (0, 3, 32), (2, 3, 32)]
    assert torch.allclose(states[0].norm(dim=-1), torch.ones(6, 3))
    # the same as running the model by hand and pooling pieces to words
    enc = tok([sentences[0].split()], is_split_into_words=True, return_tensors="pt").to(model.device)  # word_states may move the model to a GPU
    with torch.no_grad():
        piece = model(enc["input_ids"], enc["attention_mask"]).states[0].cpu()  # (N, L, D)
    pooled = torch.nn.functional.normalize(pool_to_words(piece, enc.word_ids(0), 6), dim=-1)
    assert torch.allclose(states[0], pooled, atol=1e-5)


def test_batching_and_iterations_do_not_change_results():
    model, tok = tiny_model()
    sentences = ["the cat sat on the mat .", "new york", "he shut the noisy kids up ."]
    one_by_one = [word_states(model, tok, [s])[0] for s in sentences]
    together = word_states(model, tok, sentences, batch_size=3)
    assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(one_by_one, together))
    trajectory = word_states(model, tok, sentences, all_iterations=True, num_iterations=2)
    assert tuple(trajectory[0].shape) == (3, 7, 3, 32)  # (T+1, W, L, D)
    two = word_states(model, tok, sentences, num_iterations=2)
    assert all(torch.allclose(t[-1], s, atol=1e-5) for t, s in zip(trajectory, two))


def test_long_sentences_are_split_into_windows_of_whole_words():
    model, tok = tiny_model(max_position_embeddings=12)  # 10 pieces + [CLS] [SEP] per window
    words = ("the cat sat on the mat . " * 3).split()  # 21 one-piece words -> windows of 10, 10, 1
    result = next(extract_islands(model, tok, [words], keep_states=True))
    assert result.windows == 3 and result.words == words and result.states.shape[0] == 21
    alone = word_states(model, tok, [words[10:20]])[0]
    assert torch.allclose(result.states[10:20], alone, atol=1e-5)


def test_extract_islands_streams_and_handles_odd_text():
    model, tok = tiny_model()
    endless = (s for _ in itertools.count() for s in ["He shut the noisy kids up.", "   ", "Ünïcödé 🙂 x\x07y"])
    results = extract_islands(model, tok, endless, batch_size=2)
    assert isinstance(results, types.GeneratorType)
    first = list(itertools.islice(results, 3))  # works on an endless input: nothing is collected
    assert [r.words for r in first] == [["He", "shut", "the", "noisy", "kids", "up."], [], ["Ünïcödé", "🙂", "x\x07y"]]
    empty = first[1].to_dict()
    assert empty["islands"] == [[], [], []] and empty["trees"] == {"distance": None, "islands": None}
    odd = json.loads(json.dumps(first[2].to_dict(), ensure_ascii=False))
    assert odd["words"] == ["Ünïcödé", "🙂", "x\x07y"] and len(odd["islands"]) == 3
    for level in odd["islands"]:  # every level partitions the three words
        assert sorted(w for isl in level for w in isl["members"]) == [0, 1, 2]
    assert odd["trees"]["distance"].startswith("(X") and len(odd["distances"]) == 2


def test_write_jsonl_streams_one_object_per_sentence():
    model, tok = tiny_model()
    out = io.StringIO()
    assert write_jsonl(extract_islands(model, tok, ["the cat sat", "", "new york"]), out) == 3
    objects = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [o["words"] for o in objects] == [["the", "cat", "sat"], [], ["new", "york"]]
    assert set(objects[0]) == {"sentence", "words", "levels", "islands", "distances", "trees", "windows"}


def test_extract_islands_at_piece_level():
    model, tok = tiny_model()
    result = next(extract_islands(model, tok, "newyork cats"))
    pieces = next(extract_islands(model, tok, "newyork cats", pieces=True))
    assert result.words == ["newyork", "cats"]
    assert pieces.words == tok.tokenize("newyork cats") and len(pieces.words) > 2
    assert sorted(i for isl in pieces.islands[0] for i in isl.members) == list(range(len(pieces.words)))


def test_grouping_several_forward_batches_at_once_does_not_change_results():
    model, tok = tiny_model()
    sentences = ["the cat sat on the mat .", "", "new york", "he shut the noisy kids up .", "a", "the the the cat"] * 2
    runs = {r: list(extract_islands(model, tok, sentences, batch_size=2, readout_batch_size=r, threshold=0.5))
            for r in (1, 2, 5, 100)}
    for r in (2, 5, 100):
        assert [members(x.islands) for x in runs[r]] == [members(x.islands) for x in runs[1]]
        assert [s for x in runs[r] for level in x.islands for s in (i.score for i in level)] == pytest.approx(
            [s for x in runs[1] for level in x.islands for s in (i.score for i in level)], abs=1e-6)
        assert [d for x in runs[r] for d in x.distances] == pytest.approx([d for x in runs[1] for d in x.distances])
    assert any(len(isl.members) > 1 for x in runs[1] for level in x.islands for isl in level)  # some words grouped
    single = [isl for x in runs[1] + runs[100] for level in x.islands for isl in level if isl.members == (0,) and isl.level == 0]
    assert all(isl is single[0] for isl in single)  # single-word islands are shared, immutable objects
    with pytest.raises(ValueError, match="readout_batch_size must be >= 1, got 0"):
        next(extract_islands(model, tok, sentences, readout_batch_size=0))


def test_pieces_are_numbered_across_a_padded_batch_worked_out_by_hand():
    batch = [_Window(0, [2, 7, 8, 9, 3], [None, 0, 0, 1, None], 2), _Window(1, [2, 9, 3], [None, 0, None], 1)]
    nan = float("nan")
    words, sizes = _unit_ids(batch, 5, pieces=False)
    assert sizes == [2, 1]
    np.testing.assert_array_equal(words, [nan, 0, 0, 1, nan, nan, 2, nan, nan, nan])
    pieces, sizes = _unit_ids(batch, 5, pieces=True)
    assert sizes == [3, 1]
    np.testing.assert_array_equal(pieces, [nan, 0, 1, 2, nan, nan, 3, nan, nan, nan])
    states = torch.tensor([[9.0], [1.0], [3.0], [5.0], [9.0], [9.0], [7.0], [9.0], [9.0], [9.0]])  # (pieces, 1)
    assert pool_to_words(states, words, 3).flatten().tolist() == [2.0, 5.0, 7.0]  # mean of pieces 1, 2; 3; 6
    assert pool_to_words(states[:5], [None, 0, 0, 1, None]).flatten().tolist() == [2.0, 5.0]  # a list with None
    assert pool_to_words(states[:3], [None, None, 2]).flatten().tolist() == [0.0, 0.0, 3.0]  # words without pieces: 0
    with pytest.raises(ValueError, match="2 word ids for 3 pieces"):
        pool_to_words(states[:3], [None, 0])


def test_load_model_reads_a_saved_run_and_fails_clearly(tmp_path):
    save_tiny_model(tmp_path / "run")
    model, tok = load_model(tmp_path / "run")
    assert isinstance(model, GlomTextModel) and model.config.num_levels == 3
    assert len(word_states(model, tok, ["the cat"])[0]) == 2
    with pytest.raises(FileNotFoundError, match="not found"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="no config.json"):
        load_model(tmp_path)
