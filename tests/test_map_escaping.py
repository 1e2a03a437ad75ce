"""The map page holds the config's words as text, never as HTML or script.

A statistic's description ending the page's ``<script>`` block, or a name
holding an ``<img onerror=...>``, must reach the page as the same characters
and nothing more (tests/test_map_browser.py checks, in Chromium, that none of
it runs).
"""

from __future__ import annotations

import html
import html.parser
import json
import re
from pathlib import Path
from urllib.parse import unquote

from hostile import DESCRIPTION, DESCRIPTION_IMG, NAME, NAME_QUOTE, UNIT, hostile_config

from grouputils.core.config import Config
from grouputils.outputs.webmap import script_json, write_map_page


class _Tags(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.scripts: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script and data.strip():
            self.scripts.append(data)


def _page(tmp_path: Path) -> tuple[str, dict]:
    base = Config(dir_input=tmp_path / "in", dir_output=tmp_path / "out")
    (tmp_path / "out").mkdir()
    text = write_map_page(hostile_config(base), basemap=False).read_text()
    m = re.search(r"const SPEC = (\{.*?\});\n", text)
    assert m, "no SPEC in the page"
    return text, json.loads(m.group(1))


def test_script_json_never_holds_markup_and_decodes_to_the_same_value() -> None:
    value = {"a": DESCRIPTION, "b": [NAME, "a & b > c", "\u2028"], "c": 1.5}
    text = script_json(value)
    assert not set("<>&") & set(text)
    assert json.loads(text) == value


def test_hostile_descriptions_and_names_do_not_add_tags_or_scripts(tmp_path: Path) -> None:
    text, _ = _page(tmp_path)
    parser = _Tags()
    parser.feed(text)
    # exactly the page's own elements: no <img> or extra <script> from the config
    assert parser.tags.count("script") == 2
    assert "img" not in parser.tags
    assert (
        len(parser.scripts) == 1 and "__pwned" in parser.scripts[0]
    )  # still inside the one script
    assert "</script><script>" not in text


def test_the_spec_carries_the_words_unchanged_and_labels_escaped(tmp_path: Path) -> None:
    _, spec = _page(tmp_path)
    layers = spec["layers"]
    assert [layer["description"] for layer in layers] == [
        DESCRIPTION,
        DESCRIPTION_IMG,
        DESCRIPTION,
        DESCRIPTION_IMG,
    ]
    assert layers[0]["unit"] == UNIT
    assert [layer["name"] for layer in layers[2:]] == [NAME, NAME_QUOTE]
    for layer in layers:
        assert layer["label"] == html.escape(layer["name"])  # Leaflet's control takes HTML
        folder = layer["legend"].removesuffix("/legend.png")
        assert unquote(folder) == f"web_tiles/{layer['name']}"
        assert not set("<>\"' ") & set(layer["url"] + layer["legend"])  # percent-encoded
