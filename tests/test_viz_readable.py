"""The report's drawings are readable: no tiny text, numbers that contrast with their cells, labels that do not
overlap, axes with units, and the validation and search-progress curves drawn."""

import itertools

import pytest
from matplotlib.text import Text

from gmgraph import viz
from tests.test_viz import TREE, split_of

LEAVES = [{"id": "root/1<-0=none+nor_conv_3x3", "space": {"1<-0": ["none", "nor_conv_3x3"]}},
          {"id": "root/1<-0=skip_connect+nor_conv_1x1+avg_pool_3x3",
           "space": {"1<-0": ["skip_connect", "nor_conv_1x1", "avg_pool_3x3"]}}]
HISTORY = [{"epoch": e, "loss": 2.0 / e, "accuracy": 0.1 * e, "val_accuracy": 0.08 * e} for e in range(1, 4)]


@pytest.fixture
def figures(monkeypatch):
    """The figures the drawing functions make, kept open (and closed at the end) to measure."""
    kept = []
    monkeypatch.setattr(viz, "_save", lambda fig, path: kept.append(fig) or path)
    yield kept
    for fig in kept:
        viz.plt.close(fig)


def texts(fig) -> list[Text]:
    return [t for t in fig.findobj(Text) if t.get_text().strip() and t.get_visible()]


def boxes(fig, items):
    fig.canvas.draw()  # lays the figure out as saving it does
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in items]


def tree_of_three_levels():
    a, b = TREE[0]["children"]
    return [TREE[0], split_of(a), split_of(b), split_of(split_of(a)["children"][0], label="2<-1")]


def five_point_front():
    """A typical small front: five points, two of them close, one pair at the same spot."""
    values = [(0.125, 0.0083), (0.121, 0.0080), (0.116, 0.0048), (0.116, 0.0048), (0.119, 0.0061)]
    front = [{"arch": {"1<-0": op}, "values": {"accuracy": acc, "params": params}}
             for op, (acc, params) in zip(["none", "nor_conv_3x3", "skip_connect", "nor_conv_1x1", "avg_pool_3x3"],
                                          values)]
    return {"objectives": [{"name": "accuracy", "sense": "max"}, {"name": "params", "sense": "min"}],
            "front": front, "history": front, "chosen": 0}


def test_no_text_is_smaller_than_the_smallest_readable_size(tmp_path, figures):
    viz.draw_split_tree(tree_of_three_levels(), tmp_path / "tree.png")
    viz.draw_training_curves({leaf["id"]: HISTORY for leaf in LEAVES}, tmp_path / "curves.png")
    viz.draw_front(five_point_front(), LEAVES, tmp_path / "front.png")
    viz.draw_search_progress([({"1<-0": "none"}, 0.1), ({"1<-0": "nor_conv_1x1"}, 0.2)], LEAVES, tmp_path / "s.png")
    assert len(figures) == 4
    for fig in figures:
        small = [(t.get_text(), t.get_fontsize()) for t in texts(fig) if t.get_fontsize() < viz.SMALL]
        assert not small  # was 5-7 pt: heatmap numbers, tree nodes, legends


def test_heatmap_numbers_contrast_with_their_cells(tmp_path, figures):
    viz.draw_split_tree(TREE, tmp_path / "tree.png")
    heat = next(ax for ax in figures[0].axes if ax.images)
    image = heat.images[0]
    matrix = image.get_array()
    numbers = [t for t in heat.texts]
    assert len(numbers) == 25
    for t in numbers:
        j, i = (round(v) for v in t.get_position())
        cell = image.cmap(image.norm(matrix[i, j]))
        assert viz.contrast(t.get_color(), cell) >= 4.5, (t.get_text(), t.get_color())  # white on yellow: 1.1


def test_contrast_and_text_colour():
    assert viz.contrast("black", "white") == pytest.approx(21.0)
    assert viz.contrast("white", "white") == pytest.approx(1.0)
    assert viz.text_colour_on("#fde725") == "black"  # viridis' yellow
    assert viz.text_colour_on("#440154") == "white"  # viridis' purple


def test_split_tree_boxes_do_not_overlap_and_edges_do_not_cross(tmp_path, figures):
    tree = tree_of_three_levels()
    viz.draw_split_tree(tree, tmp_path / "tree.png")
    fig = figures[0]
    panel = fig.axes[0]
    nodes = boxes(fig, [t for t in panel.texts])
    assert len(nodes) == 9
    for a, b in itertools.combinations(nodes, 2):
        assert not a.overlaps(b)
    where = viz.tree_layout(tree)
    for split in tree:  # children of one node lie between the children of its neighbours
        xs = [where[child][0] for child in split["children"]]
        assert xs == sorted(xs) and min(xs) <= where[split["node"]][0] <= max(xs)
    assert {where[n][1] for n in where} == {0, -1, -2, -3}


def test_training_curves_draw_validation_dashed_and_a_legend_outside_the_plots(tmp_path, figures):
    viz.draw_training_curves({leaf["id"]: HISTORY for leaf in LEAVES}, tmp_path / "curves.png")
    fig = figures[0]
    loss_ax, acc_ax = fig.axes
    dashed = [line for line in acc_ax.lines if line.get_linestyle() == "--" and len(line.get_xdata())]
    assert [list(line.get_ydata()) for line in dashed] == [[h["val_accuracy"] for h in HISTORY]] * 2
    assert [float(x) for x in acc_ax.get_xticks() if 1 <= x <= 3] == [1.0, 2.0, 3.0]  # whole epochs
    (legend,) = fig.legends
    assert {t.get_text() for t in legend.get_texts()} >= {"training", "validation"}
    legend_box = legend.get_window_extent(fig.canvas.get_renderer())
    for ax in (loss_ax, acc_ax):
        assert not legend_box.overlaps(ax.get_window_extent(fig.canvas.get_renderer()))


def test_training_curves_without_validation_draw_no_dashed_lines(tmp_path, figures):
    history = [{k: v for k, v in h.items() if k != "val_accuracy"} for h in HISTORY]
    viz.draw_training_curves({"root": history}, tmp_path / "curves.png")
    acc_ax = figures[0].axes[1]
    assert not [line for line in acc_ax.lines if line.get_linestyle() == "--"]
    assert acc_ax.get_title() == "training accuracy"


def test_front_labels_do_not_overlap_and_axes_carry_units(tmp_path, figures):
    pareto = five_point_front()
    viz.draw_front(pareto, LEAVES, tmp_path / "front.png", units={"params": "M params", "accuracy": "0-1"})
    fig = figures[0]
    ax = fig.axes[0]
    labels = [t for t in ax.texts]
    assert sorted(t.get_text() for t in labels) == ["0", "1", "2,3", "4"]  # one label for the two at one spot
    placed = boxes(fig, labels)
    for a, b in itertools.combinations(placed, 2):
        assert not a.overlaps(b)
    page = fig.bbox
    for box in placed:
        assert page.x0 <= box.x0 and box.x1 <= page.x1 and page.y0 <= box.y0 and box.y1 <= page.y1
    assert ax.get_xlabel() == "params (M params, lower is better)"
    assert ax.get_ylabel() == "accuracy (0-1, higher is better)"


def test_search_progress_draws_each_evaluation_and_the_best_so_far(tmp_path, figures):
    points = [({"1<-0": "none"}, 0.3), ({"1<-0": "nor_conv_1x1"}, 0.2), ({"1<-0": "skip_connect"}, 0.5),
              ({"1<-0": "nor_conv_3x3"}, 0.4)]
    path = viz.draw_search_progress(points, LEAVES, tmp_path / "search.png")
    assert path.name == "search.png"
    ax = figures[0].axes[0]
    first, second = (collection.get_offsets().tolist() for collection in ax.collections)
    assert first == [[1, 0.3], [4, 0.4]] and second == [[2, 0.2], [3, 0.5]]  # coloured by sub-supernet
    (best,) = ax.lines
    assert list(best.get_ydata()) == [0.3, 0.3, 0.5, 0.5]
    assert ax.get_title() == "search progress: 4 evaluations"
