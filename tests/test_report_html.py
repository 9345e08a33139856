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


def test_report_html_embeds_its_images_and_names_the_arch(run_dir):
    page = render_run(run_dir).read_text()
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


def test_report_opens_in_a_headless_browser_without_console_errors(run_dir):
    browser = browser_or_skip()
    render_run(run_dir)
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={run_dir / 'chrome'}",
         "--enable-logging=stderr", "--v=0", "--dump-dom", (run_dir / "report.html").as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert 'id="arch"' in done.stdout
    assert ":CONSOLE(" not in done.stderr, done.stderr[-2000:]
    json.loads((run_dir / "report.json").read_text())


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


def measure_in_browser(page, tmp_path, width: int = 1400) -> dict:
    """Open ``page`` (report.html) in headless Chromium ``width`` px wide and measure its layout."""
    browser = browser_or_skip()
    probe = tmp_path / "probe.html"
    probe.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    done = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={tmp_path / 'chrome'}",
         f"--window-size={width},900", "--dump-dom", probe.as_uri()],
        capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    start = done.stdout.index('<pre id="measured">') + len('<pre id="measured">')
    return json.loads(html.unescape(done.stdout[start:done.stdout.index("</pre>", start)]))


def test_report_fits_a_1400_px_window_without_horizontal_scrolling(run_dir, tmp_path):
    layout = measure_in_browser(render_run(run_dir), tmp_path)
    assert layout["clientWidth"] >= 1380  # the window was that wide
    assert layout["scrollWidth"] <= layout["clientWidth"], layout  # was 1588: the leaves table ran off the page
    assert layout["wide"] == [], layout


def test_report_sections_have_one_heading_each_and_settings_read_as_flags(run_dir):
    page = render_run(run_dir).read_text()
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert len({h.lower() for h in headings}) == len(headings), headings  # not 'split tree' and 'Split tree'
    assert headings[:3] == ["Architecture", "Split tree", "Supernet training"]
    settings = page[page.index("<h2>Settings</h2>"):]
    assert "{" not in settings and "None" not in settings  # no Python dicts or None
    assert re.search(r"<td>--lr</td><td><code>0\.05</code></td>", settings)
    assert re.search(r"<td>--epochs</td><td><strong><code>3</code></strong></td><td>30</td>", settings)
    assert re.search(r"<td>--split-at</td><td><strong><code>1,2</code></strong></td>", settings)


def test_training_curves_show_validation_accuracy(run_dir):
    report = json.loads((run_dir / "report.json").read_text())
    for leaf in report["leaves"]:
        assert [0.0 <= h["val_accuracy"] <= 1.0 for h in leaf["history"]] == [True] * 3
    assert "dashed on validation batches" in render_run(run_dir).read_text()


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
