"""MkDocs hook (mkdocs.yml `hooks:`): the reference pages are generated from the code, so they
cannot drift from it. A page holds a marker comment; the hook replaces it with what
`mlmkit.reference` renders from the config dataclasses and the typer app."""

from __future__ import annotations

import logging

log = logging.getLogger("mkdocs.plugins.mlmkit")

MARKERS = {
    "<!-- mlmkit:config-reference -->": "config_reference_markdown",
    "<!-- mlmkit:cli-reference -->": "cli_reference_markdown",
}


def on_page_markdown(markdown: str, page, config, files) -> str:
    for marker, name in MARKERS.items():
        if marker not in markdown:
            continue
        try:
            from mlmkit import reference
            render = getattr(reference, name)
        except (ImportError, AttributeError) as e:  # a warning fails `mkdocs build --strict`
            log.warning("%s: cannot generate the reference (mlmkit.reference.%s: %s)", page.file.src_uri, name, e)
            continue
        markdown = markdown.replace(marker, render())
    return markdown
