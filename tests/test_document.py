"""evaluation.report.document: one block renders to the expected Markdown, HTML and LaTeX, text is escaped for each
format, and importing the renderer loads neither torch nor matplotlib."""

import subprocess
import sys

from evaluation.report import document as doc

INTERVAL = doc.plain("82.8% [75.3, 88.4]", latex=r"82.8\,[75.3, 88.4]")
RESULTS = doc.table(["Dataset", "Wu et al."], [["celeba_hq", INTERVAL]], [False, True],
                    doc.inline("Sufficiency at k = 10"), label="tab:sufficiency")


def test_a_table_in_markdown():
    assert doc.render_markdown([RESULTS]) == ("*Sufficiency at k = 10*\n\n"
                                              "| Dataset | Wu et al. |\n"
                                              "|:---|---:|\n"
                                              "| celeba\\_hq | 82.8% [75.3, 88.4] |\n")


def test_a_table_in_html():
    page = doc.render_html([RESULTS], "Results")
    assert ('<div class="table-wrap"><table>\n<caption>Sufficiency at k = 10</caption>\n'
            '<thead><tr><th>Dataset</th><th class="num">Wu et al.</th></tr></thead>\n<tbody>\n'
            '<tr><td>celeba_hq</td><td class="num">82.8% [75.3, 88.4]</td></tr>\n</tbody></table></div>') in page
    assert page.startswith("<!DOCTYPE html>") and "<title>Results</title>" in page and "<script" not in page


def test_a_table_in_latex():
    assert doc.render_latex([doc.Comment("needs booktabs"), RESULTS]) == "\n".join([
        "% needs booktabs",
        r"\begin{table}[t]",
        r"  \centering",
        r"  \caption{Sufficiency at k = 10}",
        r"  \label{tab:sufficiency}",
        r"  \begin{tabular}{lc}",
        r"    \toprule",
        r"    Dataset & Wu et al. \\",
        r"    \midrule",
        r"    celeba\_hq & 82.8\,[75.3, 88.4] \\",
        r"    \bottomrule",
        r"  \end{tabular}",
        r"\end{table}",
        ""])


def test_a_note_below_a_table_without_alignment():
    """The study's layout: the caption is a note under the table, columns carry no alignment, no indentation."""
    note = doc.table([doc.plain("Domain"), doc.plain("wu_et|al")], [[doc.plain("faces"), doc.plain("–", latex="--")]],
                     caption=(doc.plain("Accuracy ± s.d. [Wilson 95% CI]"),), caption_below=True)
    assert doc.render_markdown([note]) == ("| Domain | wu_et\\|al |\n|---|---|\n| faces | – |\n\n"
                                           "Accuracy ± s.d. [Wilson 95% CI]\n")
    assert doc.render_latex([note], indent="") == "\n".join([
        r"\begin{table}[t]", r"\centering", r"\begin{tabular}{lc}", r"\toprule", r"Domain & wu\_et|al \\",
        r"\midrule", r"faces & -- \\", r"\bottomrule", r"\end{tabular}",
        r"\caption{Accuracy $\pm$ s.d. [Wilson 95\% CI]}", r"\end{table}", ""])
    assert '<caption style="caption-side: bottom">' in doc.render_html([note], "t")


def test_text_is_escaped_for_each_format_and_plain_text_is_not_marked_up():
    content = doc.inline("a_b <i>|</i> ", doc.Span("x|y", code=True), " ", doc.Span("bold", strong=True), " ",
                         doc.Span("link", href="figures/a b.png"), doc.plain(" 5% *as is*"))
    assert doc.render_markdown([doc.Paragraph(content)]) == (
        "a\\_b \\<i\\>\\|\\</i\\> `x\\|y` **bold** [link](figures/a%20b.png) 5% *as is*\n")
    assert ('<p>a_b &lt;i&gt;|&lt;/i&gt; <code>x|y</code> <strong>bold</strong> '
            '<a href="figures/a%20b.png">link</a> 5% *as is*</p>') in doc.render_html([doc.Paragraph(content)], "t")
    assert doc.render_latex([doc.Paragraph(content)]) == (
        r"a\_b <i>|</i> \texttt{x|y} \textbf{bold} \href{figures/a\%20b.png}{link} 5\% *as is*" + "\n\n")
    assert doc.latex_escape(r"50% & #1 {a_b} ~^\ ±") == (
        r"50\% \& \#1 \{a\_b\} \textasciitilde{}\textasciicircum{}\textbackslash{} $\pm$")


def test_headings_lists_pictures_and_comments():
    formula = doc.heading(2, doc.plain("GEE ("), doc.Span("y ~ x", code=True), doc.plain(")"))
    blocks = [doc.heading(1, "Report"), formula, doc.Bullets((doc.inline("one"), doc.inline("two"))),
              doc.Picture("fid.png", "FID curves"), doc.Comment("source note")]
    assert doc.render_markdown(blocks) == ("# Report\n\n## GEE (`y ~ x`)\n\n- one\n- two\n\n"
                                           "![FID curves](fid.png)\n\n<!-- source note -->\n")
    page = doc.render_html(blocks, "t")
    assert '<h1 id="report">Report</h1>' in page and '<h2 id="gee-y-x">GEE (<code>y ~ x</code>)</h2>' in page
    assert "<ul><li>one</li><li>two</li></ul>" in page and '<img src="fid.png" alt="FID curves">' in page
    assert doc.render_latex(blocks) == "\n".join([
        r"\section*{Report}", r"\subsection*{GEE (\texttt{y \textasciitilde{} x})}", r"\begin{itemize}",
        r"  \item one", r"  \item two", r"\end{itemize}", r"\begin{figure}[t]", r"  \centering",
        r"  \includegraphics[width=\linewidth]{fid.png}", r"  \caption{FID curves}", r"\end{figure}",
        "% source note", ""])


def test_a_gallery_shows_what_is_missing():
    cards = (doc.Card("#1 b8.conv1, channel 14", doc.inline("max toward ", "other"), "figures/a.png",
                      (("flicker", "figures/a-flicker.gif"), ("sweep", "figures/a-sweep.gif"))),
             doc.Card("#2 b4.conv0, channel 3", doc.inline("min"), None, ()))
    gallery = doc.Gallery(cards, columns=("Attribute", "Change"))
    assert doc.render_markdown([gallery]).splitlines() == [
        "| Attribute | Change | Panel | Animations |",
        "|:---|:---|:---|:---|",
        "| \\#1 b8.conv1, channel 14 | max toward other | [panel](figures/a.png) | "
        "[flicker](figures/a-flicker.gif), [sweep](figures/a-sweep.gif) |",
        "| \\#2 b4.conv0, channel 3 | min | missing | missing |"]
    page = doc.render_html([gallery], "t")
    assert '<img src="figures/a.png" alt="Panel: #1 b8.conv1, channel 14">' in page
    assert "panel missing" in page and "no animations" in page
    assert r"\item \textbf{\#2 b4.conv0, channel 3}: min" in doc.render_latex([gallery])


def test_importing_the_renderer_loads_neither_torch_nor_matplotlib():
    code = ("import sys, evaluation.report.document, evaluation.report; "
            "print(sorted(name for name in ('torch', 'matplotlib') if name in sys.modules))")
    shown = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert shown.strip() == "[]"
