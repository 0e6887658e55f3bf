"""Data input for mlmkit: reading text records from files and datasets, and building tokenizers.

- `mlmkit.data.sources`: `iter_records` / `read_texts` stream text from plain text, JSONL, CSV/TSV,
  Parquet, directories, globs and Hugging Face datasets, with errors that name the file and line.
- `mlmkit.data.tokenizers`: `train_tokenizer` (WordPiece or byte-level BPE) and `load_tokenizer`.

Submodules are not imported here so that `import mlmkit.data` stays cheap (no `datasets`,
`pyarrow` or `transformers` import until something is actually read).
"""
