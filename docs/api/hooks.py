"""MkDocs hooks of the site (``hooks:`` in mkdocs.yml): math as MathML, Sphinx roles as links.

* **Math.** ``pymdownx.arithmatex`` (generic mode) marks ``$...$`` and ``$$...$$`` in pages and
  docstrings; this hook converts the TeX to MathML at build time with ``latex2mathml`` (the
  ``docs`` extra), which browsers render natively. mkdocs-material ships no math renderer (its
  guide loads MathJax or KaTeX from a CDN) and no PyPI package ships their scripts for MkDocs,
  so the site fetches nothing when it is viewed. The limit: latex2mathml covers the TeX these
  pages use (fractions, sub/superscripts, ``cases``, aligned equations, operators), not all of
  LaTeX; an expression it cannot convert fails the build, naming the page.
* **Sphinx roles.** A docstring's ``:class:`X```, ``:func:``, ``:meth:``, ``:attr:``,
  ``:data:``, ``:mod:``, ``:exc:`` or ``:obj:`` becomes a cross-reference to ``X`` (to
  ``freqnn.X`` for a short name), resolved by mkdocs-autorefs where the API reference has an
  entry and left as code where it has none.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

ROLE = re.compile(
    r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj):<code>(?P<tilde>~?)(?P<name>[\w.]+)"
    r"(?P<call>\(\))?</code>"
)
# a role inside literal text (a numpydoc type column) keeps just its target's name
LITERAL = re.compile(r":(?:py:)?(?:class|func|meth|attr|data|mod|exc|obj):`~?(?P<name>[\w.]+)`")
INLINE = re.compile(r'<span class="arithmatex">\\\((?P<tex>.*?)\\\)</span>', flags=re.S)
BLOCK = re.compile(r'<div class="arithmatex">\\\[(?P<tex>.*?)\\\]</div>', flags=re.S)


def _identifier(name: str) -> str:
    return name if name.startswith("freqnn.") or name == "freqnn" else f"freqnn.{name}"


def _role(match: re.Match[str]) -> str:
    name = match["name"]
    shown = (name.rsplit(".", 1)[-1] if match["tilde"] else name) + (match["call"] or "")
    return (f'<autoref identifier="{_identifier(name)}" optional><code>{shown}</code>'
            "</autoref>")


def _math(tex: str, display: str, page: Any) -> str:
    # latex2mathml knows align*, not the aligned environment MathJax and KaTeX take in $$
    tex = html.unescape(tex).replace("{aligned}", "{align*}")
    try:
        return convert(tex, display=display)
    except Exception as error:
        raise ValueError(f"{page.file.src_path}: cannot render the math {tex!r}: {error}") \
            from error


def on_page_content(content: str, page: Any, **kwargs: Any) -> str:
    content = LITERAL.sub(lambda m: m["name"], ROLE.sub(_role, content))
    content = BLOCK.sub(lambda m: _math(m["tex"], "block", page), content)
    return INLINE.sub(lambda m: _math(m["tex"], "inline", page), content)
