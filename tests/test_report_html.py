import html
import json
import re
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from gmgraph.cli import main
from gmgraph.report_html import render_run


class Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.images, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs["src"])
        for key in ("href", "src"):
            if key in attrs:
                self.links.append(attrs[key])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, finished_search):
    """A copy of the session's tiny run (tests/conftest.py: 3 epochs split at 1 and 2): these tests write into it."""
    return finished_search.copy(tmp_path_factory.mktemp("run") / "run")


@pytest.fixture(scope="module")
def page(run_dir) -> str:
    """The run's report.html, for the tests that only read it: `gmgraph search` rendered it with render_run from
    the finished report.json, so each of them need not render it again (about 0.6 s a rendering)."""
    return (run_dir / "report.html").read_text()


def test_report_html_embeds_its_images_and_names_the_arch(run_dir, page):
    parser = Collect()
    parser.feed(page)
    arch_str = (run_dir / "arch.txt").read_text().strip()
    assert arch_str in "".join(parser.text)
    assert len(parser.images) == 4
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert all(link.startswith("data:") for link in parser.links)  # nothing fetched from outside
    assert {p.name for p in run_dir.glob("*.png")} == {"arch.png", "split_tree.png", "training.png", "search.png"}


def test_gmgraph_report_rebuilds_and_errors_clearly(run_dir, tmp_path, capsys):
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").exists()
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no report.json" in capsys.readouterr().err


def browser_or_skip() -> str:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); report.html was checked by parsing only")
    return browser


# Appended to a copy of the page: once everything is laid out, write the page's widths and every element
# that reaches past the window's right edge into the DOM, for --dump-dom to hand back.
MEASURE = """<script>
window.addEventListener('load', () => {
  const page = document.documentElement, limit = page.clientWidth;
  const wide = [...document.body.querySelectorAll('*')]
    .filter(e => e.getBoundingClientRect().right > limit + 0.5)
    .map(e => e.tagName + ' ' + e.textContent.slice(0, 50));
  const out = document.createElement('pre');
  out.id = 'measured';
  out.textContent = JSON.stringify({scrollWidth: page.scrollWidth, clientWidth: limit, wide: wide.slice(0, 8)});
  document.body.appendChild(out);
});
</script>"""


def open_in_browser(page: str, tmp_path, width: int = 1400):
    """Open ``page`` (report.html's text) in headless Chromium ``width`` px wide, logging its console to stderr:
    (what Chromium printed, the page's measured layout)."""
    browser = browser_or_skip()
    probe = tmp_path / "probe.html"
    probe.write_text(page.replace("</body>", MEASURE + "</body>"))
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
         "--enable-logging=stderr", "--v=0", f"--window-size={width},900", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('<pre id="measured">') + len('<pre id="measured">')
    return done, json.loads(html.unescape(done.stdout[start:done.stdout.index("</pre>", start)]))


def test_report_opens_in_a_headless_browser_without_console_errors_and_fits_1400_px(run_dir, page, tmp_path):
    """Two claims on one browser run (a Chromium start each cost about a second): the page loads without console
    errors, and it fits a 1400 px window without horizontal scrolling."""
    done, layout = open_in_browser(page, tmp_path)
    assert 'id="arch"' in done.stdout
    assert ":CONSOLE(" not in done.stderr, done.stderr[-2000:]
    json.loads((run_dir / "report.json").read_text())
    assert layout["clientWidth"] >= 1380  # the window was that wide
    assert layout["scrollWidth"] <= layout["clientWidth"], layout  # was 1588: the leaves table ran off the page
    assert layout["wide"] == [], layout


def test_report_sections_have_one_heading_each_and_settings_read_as_flags(page):
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert len({h.lower() for h in headings}) == len(headings), headings  # not 'split tree' and 'Split tree'
    assert headings[:3] == ["Architecture", "Split tree", "Supernet training"]
    settings = page[page.index("<h2>Settings</h2>"):]
    assert "{" not in settings and "None" not in settings  # no Python dicts or None
    assert re.search(r"<td>--lr</td><td><code>0\.05</code></td>", settings)
    assert re.search(r"<td>--epochs</td><td><strong><code>3</code></strong></td><td>30</td>", settings)
    assert re.search(r"<td>--split-at</td><td><strong><code>1,2</code></strong></td>", settings)


def test_training_curves_show_validation_accuracy(run_dir, page):
    report = json.loads((run_dir / "report.json").read_text())
    for leaf in report["leaves"]:
        assert [0.0 <= h["val_accuracy"] <= 1.0 for h in leaf["history"]] == [True] * 3
    assert "dashed on validation batches" in page


def test_search_progress_is_drawn_from_the_search_history(run_dir, tmp_path):
    report = json.loads((run_dir / "report.json").read_text())
    report["search"]["history"] = [{"arch": leaf["best_arch"], "fitness": leaf["best_val_accuracy"]}
                                   for leaf in report["leaves"] if leaf["best_arch"]]
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "report.json").write_text(json.dumps(report))
    parser = Collect()
    parser.feed(render_run(copy).read_text())
    assert (copy / "search.png").exists()
    assert len(parser.images) == 4
    assert "Search progress" in "".join(parser.text)
