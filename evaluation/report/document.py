"""A small document model rendered to Markdown (GitHub), a self-contained HTML page and LaTeX.

The benchmark report and the user-study analysis describe their content once, as blocks (headings, paragraphs,
bullet lists, tables, pictures, galleries of image cards, comments), and every output format is rendered from the
same blocks, so the formats cannot drift apart.

Text is escaped for each format unless a span says otherwise: `Span.plain` marks text written by the suite itself
(numbers, intervals, captions) that holds no Markdown markup and goes into Markdown as it is; `Span.latex` gives a
span's LaTeX when escaping its text is not enough (a thin space, a dash). LaTeX output needs the booktabs, graphicx
and hyperref packages.

Imports neither torch nor matplotlib: the study analysis renders through this module on machines that have neither.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from urllib.parse import quote

# ---------------------------------------------------------------------------------------------------- blocks


@dataclass(frozen=True)
class Span:
    """A run of text; `href` (a path relative to the document) makes it a link, `code` a code span (formulas such
    as edit rules), `note` a side note of a table cell (such as its N), on a line of its own in HTML so that wide
    tables stay narrow."""

    text: str
    href: str | None = None
    strong: bool = False
    code: bool = False
    plain: bool = False
    latex: str | None = None
    note: bool = False


Inline = tuple[Span, ...]


@dataclass(frozen=True)
class Heading:
    level: int
    content: Inline

    @property
    def text(self) -> str:
        return "".join(span.text for span in self.content)


@dataclass(frozen=True)
class Paragraph:
    content: Inline


@dataclass(frozen=True)
class Bullets:
    items: tuple[Inline, ...]


@dataclass(frozen=True)
class Table:
    """`numeric` says per column whether it holds right-aligned numbers; None leaves the alignment to the viewer.
    A caption above the table is its title; one below (`caption_below`) is a note on how to read it. `label` is the
    LaTeX label that other text refers to."""

    header: tuple[Inline, ...]
    rows: tuple[tuple[Inline, ...], ...]
    numeric: tuple[bool, ...] | None = None
    caption: Inline = ()
    caption_below: bool = False
    label: str | None = None


@dataclass(frozen=True)
class Picture:
    src: str
    alt: str


@dataclass(frozen=True)
class Card:
    """An image (`panel`, None when missing) with its animations ((name, path) of each GIF) and a caption."""

    title: str
    details: Inline
    panel: str | None
    animations: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class Gallery:
    """Cards side by side; in Markdown a table whose first two columns are headed by `columns`."""

    cards: tuple[Card, ...]
    columns: tuple[str, str] = ("Item", "Details")


@dataclass(frozen=True)
class Comment:
    """Text for whoever reads the source (a LaTeX comment), not shown on the page."""

    text: str


Block = Heading | Paragraph | Bullets | Table | Picture | Gallery | Comment


def inline(*parts: str | Span | Iterable[Span]) -> Inline:
    """Spans from text (escaped in every format), spans and sequences of spans."""
    spans: list[Span] = []
    for part in parts:
        if isinstance(part, str):
            spans.append(Span(part))
        elif isinstance(part, Span):
            spans.append(part)
        else:
            spans.extend(part)
    return tuple(spans)


def plain(text: str, latex: str | None = None) -> Span:
    return Span(text, plain=True, latex=latex)


def heading(level: int, *parts: str | Span | Iterable[Span]) -> Heading:
    return Heading(level, inline(*parts))


def table(header: Sequence[str | Span | Inline], rows: Iterable[Sequence[str | Span | Inline]],
          numeric: Sequence[bool] | None = None, caption: Inline = (), *, caption_below: bool = False,
          label: str | None = None) -> Table:
    def cells(row: Sequence[str | Span | Inline]) -> tuple[Inline, ...]:
        return tuple(inline(cell) for cell in row)

    return Table(cells(header), tuple(cells(row) for row in rows), None if numeric is None else tuple(numeric),
                 caption, caption_below, label)


def _render_inline(content: Inline, text_of: Callable[[Span], str], *, code: Callable[[str], str],
                   strong: Callable[[str], str], link: Callable[[str, str], str]) -> str:
    """Spans in one format: each span's escaped text, marked up as code, then strong, then as a link."""
    parts = []
    for span in content:
        text = text_of(span)
        if span.code:
            text = code(text)
        if span.strong:
            text = strong(text)
        if span.href is not None:
            text = link(span.href, text)
        parts.append(text)
    return "".join(parts)


# ---------------------------------------------------------------------------------------------------- Markdown


_MARKDOWN_SPECIALS = re.compile(r"([\\`*_\[\]<>|#])")


def _md_escape(text: str) -> str:
    return _MARKDOWN_SPECIALS.sub(r"\\\1", " ".join(text.split("\n")))


def _md_code(text: str) -> str:
    """A code span whose fence is longer than any backtick run inside; `|` escaped, which GFM tables need even
    inside code."""
    text = " ".join(text.split("\n")).replace("|", "\\|")
    fence = "`" * (max((len(run) for run in re.findall(r"`+", text)), default=0) + 1)
    padding = " " if text.startswith("`") or text.endswith("`") else ""
    return f"{fence}{padding}{text}{padding}{fence}"


def _md_inline(content: Inline, in_table: bool = False) -> str:
    def text_of(span: Span) -> str:
        if span.code:
            return _md_code(span.text)
        if span.plain:
            return span.text.replace("|", "\\|") if in_table else span.text  # GFM splits table cells on any |
        return _md_escape(span.text)

    def strong(text: str) -> str:
        if not text.strip():
            return text
        # CommonMark only closes ** that is not preceded by whitespace: keep spaces outside the markers
        return f"{text[:len(text) - len(text.lstrip())]}**{text.strip()}**{text[len(text.rstrip()):]}"

    return _render_inline(content, text_of, code=lambda text: text, strong=strong,
                          link=lambda href, text: f"[{text}]({quote(href)})")


def _md_rows(header: Sequence[Inline], rows: Iterable[Sequence[Inline]], numeric: Sequence[bool] | None) -> str:
    alignment = ["---"] * len(header) if numeric is None else ["---:" if right else ":---" for right in numeric]
    lines = ["| " + " | ".join(_md_inline(cell, in_table=True) for cell in header) + " |",
             "|" + "|".join(alignment) + "|"]
    lines += ["| " + " | ".join(_md_inline(cell, in_table=True) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _md_links(links: Iterable[tuple[str, str | None]]) -> Inline:
    """Named links separated by commas; "missing" when there is none to show."""
    spans: list[Span] = []
    for name, path in links:
        if path:
            spans += [plain(", ")] * bool(spans) + [Span(name, href=path)]
    return tuple(spans) or (plain("missing"),)


def _md_table(block: Table) -> str:
    table_text = _md_rows(block.header, block.rows, block.numeric)
    if not block.caption:
        return table_text
    if block.caption_below:
        return f"{table_text}\n\n{_md_inline(block.caption)}"
    return f"*{_md_inline(block.caption)}*\n\n{table_text}"


def _md_gallery(block: Gallery) -> str:
    rows = [[inline(card.title), card.details, _md_links([("panel", card.panel)]), _md_links(card.animations)]
            for card in block.cards]
    return _md_rows([inline(name) for name in (*block.columns, "Panel", "Animations")], rows, [False] * 4)


def render_markdown(document: Sequence[Block]) -> str:
    chunks = []
    for block in document:
        if isinstance(block, Heading):
            chunks.append(f"{'#' * block.level} {_md_inline(block.content)}")
        elif isinstance(block, Paragraph):
            chunks.append(_md_inline(block.content))
        elif isinstance(block, Bullets):
            chunks.append("\n".join(f"- {_md_inline(item)}" for item in block.items))
        elif isinstance(block, Table):
            chunks.append(_md_table(block))
        elif isinstance(block, Picture):
            chunks.append(f"![{_md_escape(block.alt)}]({quote(block.src)})")
        elif isinstance(block, Gallery):
            chunks.append(_md_gallery(block))
        elif isinstance(block, Comment):
            chunks.append(_html_comment(block.text))
    return "\n\n".join(chunks) + "\n"


# ---------------------------------------------------------------------------------------------------- HTML


STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", sans-serif; line-height: 1.5;
       color: #1f2328; background: #fff; max-width: 1180px; margin: 2rem auto; padding: 0 1.25rem; }
h1 { font-size: 1.8rem; border-bottom: 2px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.35rem; border-bottom: 1px solid #d0d7de; padding-bottom: .2rem; margin-top: 2.4rem; }
h3 { font-size: 1.1rem; margin-top: 1.6rem; }
a { color: #0969da; }
ul { padding-left: 1.3rem; }
.table-wrap { overflow-x: auto; margin: .6rem 0 1.4rem; }
table { border-collapse: collapse; font-size: .92rem; }
caption { caption-side: top; text-align: left; color: #57606a; font-size: .88rem; padding-bottom: .35rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .65rem; vertical-align: top; text-align: left; }
thead th { background: #eaeef2; }
tbody tr:nth-child(even) { background: #f6f8fa; }
.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
.note { display: block; font-size: .8rem; color: #57606a; }
figure.plot { margin: 1rem 0; }
figure.plot img { max-width: 100%; height: auto; border: 1px solid #d0d7de; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(360px, 1fr)); gap: 1rem; }
.card { border: 1px solid #d0d7de; border-radius: 6px; padding: .6rem; margin: 0; background: #fff; }
.card figcaption { font-size: .9rem; margin-top: .4rem; }
.card .media { display: flex; gap: .6rem; align-items: flex-start; }
.card .panel { flex: 1 1 auto; min-width: 0; }
.card .panel img { max-width: 100%; height: auto; image-rendering: pixelated; }
.card .animations { display: flex; flex-direction: column; gap: .4rem; font-size: .78rem; color: #57606a; }
.card .animations img { display: block; width: 96px; height: auto; image-rendering: pixelated; }
.missing { color: #9a6700; font-style: italic; }
"""


def _escape(text: str) -> str:
    return html.escape(text, quote=True)


def _html_comment(text: str) -> str:
    return f"<!-- {text.replace('--', '- -')} -->"


def _html_inline(content: Inline) -> str:
    def text_of(span: Span) -> str:
        return f'<span class="note">{_escape(span.text)}</span>' if span.note else _escape(span.text)

    return _render_inline(content, text_of, code="<code>{}</code>".format,
                          strong="<strong>{}</strong>".format,
                          link=lambda href, text: f'<a href="{_escape(quote(href))}">{text}</a>')


def _slug(text: str, taken: set[str]) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "section"
    slug, counter = base, 2
    while slug in taken:
        slug, counter = f"{base}-{counter}", counter + 1
    taken.add(slug)
    return slug


def _html_table(block: Table) -> str:
    numeric = block.numeric or (False,) * len(block.header)

    def row(tag: str, cells: Iterable[Inline]) -> str:
        return "<tr>" + "".join(f'<{tag} class="num">{_html_inline(cell)}</{tag}>' if right else
                                f"<{tag}>{_html_inline(cell)}</{tag}>"
                                for cell, right in zip(cells, numeric, strict=True)) + "</tr>"

    lines = ['<div class="table-wrap"><table>']
    if block.caption:
        side = ' style="caption-side: bottom"' if block.caption_below else ""
        lines.append(f"<caption{side}>{_html_inline(block.caption)}</caption>")
    lines.append("<thead>" + row("th", block.header) + "</thead>")
    lines.append("<tbody>")
    lines += [row("td", cells) for cells in block.rows]
    lines.append("</tbody></table></div>")
    return "\n".join(lines)


def _html_card(card: Card) -> str:
    if card.panel:
        panel = (f'<a href="{_escape(quote(card.panel))}"><img src="{_escape(quote(card.panel))}" '
                 f'alt="{_escape("Panel: " + card.title)}"></a>')
    else:
        panel = '<span class="missing">panel missing</span>'
    animations = "".join(
        f'<div><img src="{_escape(quote(path))}" alt="{_escape(f"{name}: {card.title}")}">{_escape(name)}</div>'
        for name, path in card.animations) or '<span class="missing">no animations</span>'
    return (f'<figure class="card"><div class="media"><div class="panel">{panel}</div>'
            f'<div class="animations">{animations}</div></div>'
            f"<figcaption><strong>{_escape(card.title)}</strong><br>{_html_inline(card.details)}</figcaption></figure>")


def render_html(document: Sequence[Block], title: str) -> str:
    """A complete page with its stylesheet inline and no scripts: it opens from the folder it was written to."""
    body = []
    anchors: set[str] = set()
    for block in document:
        if isinstance(block, Heading):
            body.append(f'<h{block.level} id="{_slug(block.text, anchors)}">{_html_inline(block.content)}'
                        f"</h{block.level}>")
        elif isinstance(block, Paragraph):
            body.append(f"<p>{_html_inline(block.content)}</p>")
        elif isinstance(block, Bullets):
            body.append("<ul>" + "".join(f"<li>{_html_inline(item)}</li>" for item in block.items) + "</ul>")
        elif isinstance(block, Table):
            body.append(_html_table(block))
        elif isinstance(block, Picture):
            body.append(f'<figure class="plot"><img src="{_escape(quote(block.src))}" alt="{_escape(block.alt)}">'
                        f"<figcaption>{_escape(block.alt)}</figcaption></figure>")
        elif isinstance(block, Gallery):
            body.append('<div class="gallery">\n' + "\n".join(_html_card(card) for card in block.cards) + "\n</div>")
        elif isinstance(block, Comment):
            body.append(_html_comment(block.text))
    return ("<!DOCTYPE html>\n"
            '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
            '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
            f"<title>{_escape(title)}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n"
            + "\n".join(body) + "\n</body>\n</html>\n")


# ---------------------------------------------------------------------------------------------------- LaTeX


_LATEX_SPECIALS = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                   "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}",
                   "±": r"$\pm$"}  # ± as math: the file compiles without inputenc tricks
_LATEX_SECTIONS = ("section", "subsection", "subsubsection")


def latex_escape(text: str) -> str:
    """Text that LaTeX typesets literally (dataset names such as celeba_hq would otherwise break a table)."""
    return "".join(_LATEX_SPECIALS.get(character, character) for character in text)


def _latex_url(path: str) -> str:
    """A path as \\href takes it: percent-encoded like the other formats, with each % escaped for LaTeX."""
    return quote(path).replace("%", r"\%")


def _latex_inline(content: Inline) -> str:
    return _render_inline(content, lambda span: latex_escape(span.text) if span.latex is None else span.latex,
                          code=r"\texttt{{{}}}".format, strong=r"\textbf{{{}}}".format,
                          link=lambda href, text: rf"\href{{{_latex_url(href)}}}{{{text}}}")


def _latex_table(block: Table, indent: str) -> list[str]:
    inner, cells = indent * 2, len(block.header)
    caption = [f"{indent}\\caption{{{_latex_inline(block.caption)}}}"] if block.caption else []
    caption += [f"{indent}\\label{{{block.label}}}"] if block.label else []
    lines = [r"\begin{table}[t]", f"{indent}\\centering", *([] if block.caption_below else caption),
             # the paper's layout: row names left, numbers centred
             f"{indent}\\begin{{tabular}}{{l{'c' * (cells - 1)}}}", f"{inner}\\toprule",
             f"{inner}{' & '.join(map(_latex_inline, block.header))} \\\\", f"{inner}\\midrule"]
    lines += [f"{inner}{' & '.join(map(_latex_inline, row))} \\\\" for row in block.rows]
    lines += [f"{inner}\\bottomrule", f"{indent}\\end{{tabular}}", *(caption if block.caption_below else []),
              r"\end{table}"]
    return lines


def _latex_card(card: Card, indent: str) -> list[str]:
    item = [rf"{indent}\item \textbf{{{latex_escape(card.title)}}}: {_latex_inline(card.details)}"]
    if card.panel:
        item.append(rf"{indent * 2}\\ \includegraphics[width=0.8\linewidth]{{{card.panel}}}")
    return item


def _latex_block(block: Block, indent: str) -> list[str]:
    if isinstance(block, Heading):
        command = _LATEX_SECTIONS[block.level - 1] if block.level <= len(_LATEX_SECTIONS) else "paragraph"
        return [rf"\{command}*{{{_latex_inline(block.content)}}}"]
    if isinstance(block, Paragraph):
        return [_latex_inline(block.content), ""]  # the empty line ends the paragraph
    if isinstance(block, Bullets):
        return [r"\begin{itemize}", *(rf"{indent}\item {_latex_inline(item)}" for item in block.items),
                r"\end{itemize}"]
    if isinstance(block, Table):
        return _latex_table(block, indent)
    if isinstance(block, Picture):
        return [r"\begin{figure}[t]", f"{indent}\\centering",
                rf"{indent}\includegraphics[width=\linewidth]{{{block.src}}}",
                rf"{indent}\caption{{{latex_escape(block.alt)}}}", r"\end{figure}"]
    if isinstance(block, Gallery):
        return [r"\begin{itemize}", *(line for card in block.cards for line in _latex_card(card, indent)),
                r"\end{itemize}"]
    return [f"% {line}" for line in block.text.split("\n")]


def render_latex(document: Sequence[Block], indent: str = "  ") -> str:
    """LaTeX for `\\input`; `indent` is the indentation of each nesting level inside an environment."""
    return "".join(line + "\n" for block in document for line in _latex_block(block, indent))
