"""Reading records, for every model family (files, folders, globs, bundled samples, Hugging Face
data sets; file:line errors or skip-and-count).

    base.py     Record, ReadStats, ReadContext (the bad-record rule)
    formats.py  one file of each format, sequentially
    chunks.py   local files in independent pieces (byte ranges, Parquet row groups)
    hub.py      Hugging Face data sets (streaming, shuffle, skip)
    records.py  specs -> sources; `iter_records`, `read_texts`

Submodules are not imported here so that `import mlmkit.data` stays cheap (no `datasets` or
`pyarrow` import until something is actually read).
"""
