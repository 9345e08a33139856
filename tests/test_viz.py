import pytest
from PIL import Image

from gmgraph import viz
from gmgraph.spaces import nb201

NB201_ARCH = nb201.parse("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|avg_pool_3x3~0|none~1|nor_conv_1x1~2|")
DARTS_STYLE_ARCH = {
    **{f"normal/{d}<-{s}": "sep_conv_3x3" if s % 2 else "skip_connect" for d in range(2, 6) for s in range(d)},
    **{f"reduce/{d}<-{s}": "max_pool_3x3" if s < 2 else "dil_conv_5x5" for d in range(2, 6) for s in range(d)},
}
USER_ARCH = {"conv1": "k5", "layer1_0_conv1": "k3", "act": "gelu"}
TREE = [
    {"node": "root", "epoch": 1, "label": "1<-0", "ops": list(nb201.OPS),
     "groups": [["none", "nor_conv_3x3"], ["skip_connect", "nor_conv_1x1", "avg_pool_3x3"]], "score": 5.5,
     "distances": {"1<-0": [[0.0 if i == j else 1.0 for j in range(5)] for i in range(5)]},
     "children": ["root/1<-0=none+nor_conv_3x3", "root/1<-0=skip_connect+nor_conv_1x1+avg_pool_3x3"]},
]


def png_size(path):
    assert path.stat().st_size > 1000
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


@pytest.mark.parametrize("arch", [NB201_ARCH, DARTS_STYLE_ARCH, USER_ARCH], ids=["nb201", "darts", "user"])
def test_draw_cell_writes_a_png_of_the_expected_size(tmp_path, arch):
    assert png_size(viz.draw_cell(arch, tmp_path / "a.png", title="x")) == (800, 450)


def test_cells_are_recognised_from_labels():
    assert set(viz.cells_of(DARTS_STYLE_ARCH)) == {"normal", "reduce"}
    assert list(viz.cells_of(NB201_ARCH)) == ["cell"]
    assert viz.cells_of(USER_ARCH) is None


def test_split_tree_with_heatmaps(tmp_path):
    assert png_size(viz.draw_split_tree(TREE, tmp_path / "tree.png")) == (1000, 600)


def test_training_curves_and_short_names(tmp_path):
    history = [{"epoch": e, "loss": 2.0 / e, "accuracy": 0.1 * e} for e in range(1, 5)]
    path = viz.draw_training_curves({"root": history, "root/1<-0=none+nor_conv_3x3": history}, tmp_path / "c.png")
    assert png_size(path) == (1000, 422)  # 4 inches of plots and a row of legend under them
    assert viz.short_name("root/1<-0=none+nor_conv_3x3/3<-2=skip_connect") == "1<-0={0,c3} 3<-2={skip}"


def test_ranking_scatter(tmp_path):
    assert png_size(viz.draw_ranking([0.1, 0.5, 0.3], [1.0, 3.0, 2.0], tmp_path / "r.png", title="m")) == (500, 500)



def split_of(node, label="3<-0"):
    """A split of ``node`` like TREE's, into two children."""
    groups = [["none", "nor_conv_3x3"], ["skip_connect", "nor_conv_1x1", "avg_pool_3x3"]]
    return dict(TREE[0], node=node, label=label, distances={label: TREE[0]["distances"]["1<-0"]},
                children=[f"{node}/{label}={'+'.join(g)}" for g in groups])


def test_split_tree_heatmaps_show_whole_op_names_and_titles(tmp_path, monkeypatch):
    figures = []
    monkeypatch.setattr(viz, "_save", lambda fig, path: figures.append(fig) or path)  # keep the figure open
    viz.draw_split_tree([TREE[0], split_of(TREE[0]["children"][1])], tmp_path / "tree.png")
    fig = figures[0]
    fig.canvas.draw()  # lays the figure out as saving it does
    renderer = fig.canvas.get_renderer()
    page = fig.bbox
    heatmaps = [ax for ax in fig.axes if ax.images]
    assert len(heatmaps) == 2
    for ax in heatmaps:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            assert [t.get_text() for t in labels] == list(nb201.OPS)  # not cut to 'nor_conv_1', 'skip_conne'
        for text in [*ax.get_xticklabels(), *ax.get_yticklabels(), ax.title]:  # inside the PNG, not clipped
            box = text.get_window_extent(renderer)
            assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1, text
    title = " ".join(heatmaps[1].get_title().split())  # wrapped to fit: whole names, on more lines
    assert title.endswith("where 1<-0 in {skip_connect, nor_conv_1x1, avg_pool_3x3}")
    viz.plt.close(fig)


def test_split_tree_grows_taller_for_more_splits(tmp_path):
    a, b = TREE[0]["children"]
    tree = [TREE[0], split_of(a), split_of(b), split_of(split_of(a)["children"][0], label="2<-1")]
    assert png_size(viz.draw_split_tree(tree, tmp_path / "tree.png")) == (1000, 1040)  # 4 levels, 2 heatmap rows
