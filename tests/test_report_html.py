import json
import shutil
import subprocess
from html.parser import HTMLParser

import pytest

from gmgraph.cli import main
from gmgraph.report_html import render_run

TINY = ["search", "--data", "synthetic", "--width", "4", "--cells", "1", "--epochs", "3", "--split-at", "1,2",
        "--rounds", "1", "--evaluations", "4", "--final-epochs", "0", "--quiet"]


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
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    assert main([*TINY, "--out", str(out)]) == 0
    return out


def test_report_html_embeds_its_images_and_names_the_arch(run_dir):
    page = render_run(run_dir).read_text()
    parser = Collect()
    parser.feed(page)
    arch_str = (run_dir / "arch.txt").read_text().strip()
    assert arch_str in "".join(parser.text)
    assert len(parser.images) == 3
    assert all(src.startswith("data:image/png;base64,") for src in parser.images)
    assert all(link.startswith("data:") for link in parser.links)  # nothing fetched from outside
    assert {p.name for p in run_dir.glob("*.png")} == {"arch.png", "split_tree.png", "training.png"}


def test_gmgraph_report_rebuilds_and_errors_clearly(run_dir, tmp_path, capsys):
    (run_dir / "report.html").unlink()
    assert main(["report", str(run_dir)]) == 0
    assert (run_dir / "report.html").exists()
    assert main(["report", str(tmp_path)]) == 2
    assert "holds no report.json" in capsys.readouterr().err


def test_report_opens_in_a_headless_browser_without_console_errors(run_dir):
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Chromium is not installed (apt-get install chromium); report.html was checked by parsing only")
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
