"""`mlmkit finetune MODEL --task classification --data FILE`: sequence classification on a
pre-trained encoder.

    mlmkit finetune runs/bbc/model --data bbc/ -o runs/bbc-cls          # <label>/*.txt folders
    mlmkit finetune runs/x/model --data reviews.csv --text-column review --label-column stars
    mlmkit finetune runs/bbc/model --data bbc/ --from-scratch -o runs/bbc-cls-random   # baseline

Data: CSV / TSV / JSON Lines with a text and a label column (read with mlmkit's readers, so bad
records are reported by file and line), or a folder of label sub-folders, one document per
file (``bbc/business/001.txt`` ...). Records are split into train / validation (/ test) by a hash
of the text -- the same text always lands on the same side, on every machine and run.

Training runs on the engine (`run.py`): the model family builds the classifier
(`Family.classifier`: for token models `AutoModelForSequenceClassification` on the encoder's
weights with a new, seeded head; for character models `char_mlm.classify.CharClassifier`),
early stopping on validation accuracy, the best weights restored at the end. ``--from-scratch``
re-initialises every weight but keeps the architecture and tokenizer: the baseline that shows
what pre-training bought.

Output: a folder that ``pipeline("text-classification", model=OUT)`` loads with the label
names (token models), plus ``metrics.json`` (validation/test accuracy and macro-F1),
``metrics.jsonl`` (curves for ``mlmkit plot``) and a ``README.md`` model card.

``--task token-classification`` tags every word instead (NER, POS): CoNLL / CoNLL-U / JSON Lines
data, labels on the first sub-token of each word, the family's `Family.tagger`
(`AutoModelForTokenClassification` for token models), early stopping on entity F1 (seqeval
rules; word accuracy for tag sets that are not BIO), and a folder that
``pipeline("token-classification", model=OUT)`` loads with the tag names.

The files, shared ones first, then sequence classification (a label per text), then token
classification (a tag per word):

    run.py               finetune(), FinetuneConfig, FinetuneResult: the run on the engine
    card.py              metrics.json and the README.md model card of the output folder
    splits.py            the hash split into train / validation / test; the training subsample
    labelled_task.py     the engine-task base both tasks share, macro-F1, a prepared run
    sequence_data.py     labelled texts: CSV / TSV / JSON Lines, folders of label folders
    sequence_prepare.py  texts -> split -> the family's classifier -> the task
    sequence_task.py     ClassificationTask: cross-entropy per text, accuracy, macro-F1
    token_data.py        tagged sentences: CoNLL, CoNLL-U, JSON Lines, hub data sets
    token_prepare.py     sentences -> split -> the family's tagger -> aligned labels -> the task
    token_task.py        TokenClassificationTask: a label on each word's first sub-token
    entity_f1.py         entity chunks and entity-level precision / recall / F1 (seqeval rules)
"""

from .run import FinetuneConfig, FinetuneResult, finetune
from .sequence_data import Example, load_examples
from .sequence_task import classification_metrics
from .splits import split_examples

__all__ = ["FinetuneConfig", "FinetuneResult", "finetune", "classification_metrics", "load_examples",
           "split_examples", "Example"]
