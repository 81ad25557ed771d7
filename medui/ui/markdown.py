"""Text from model cards and files shown inside Streamlit markdown, escaped so it reads as written."""

from __future__ import annotations

import re

# Every character Markdown (and Streamlit's extensions: colour/icon directives, LaTeX `$`) may read as syntax.
_SPECIAL = re.compile(r"([\\`*_{}\[\]()<>#+\-.!|~:$])")


def md(text: str) -> str:
    """`text` escaped for st.markdown: '<patient>_<n>.png' shows as written, not as HTML or italics."""
    return _SPECIAL.sub(r"\\\1", text)
