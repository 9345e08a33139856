"""Tests of gmgraph.nasbench.nb201 (the packaged NAS-Bench-201 table and its query API)."""

from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import itertools
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gmgraph.arch import NB201_LABELS, NB201_OPS, format_nb201, parse_nb201
from gmgraph.errors import ArchError, DataError, GmGraphError
from gmgraph.nasbench import nb201
from gmgraph.spaces.nb201 import count_params

ROOT = Path(__file__).resolve().parents[2]
PACKAGED = ROOT / "gmgraph" / "nasbench" / "nb201.csv.gz"
SHARED = ROOT.parent / "shared"  # the ground truth shared by the team; CI copies it beside the clone
SOURCE = SHARED / "data" / "nb201.csv"
BUILD_SCRIPT = ROOT / "scripts" / "build_nb201_table.py"

ROW1 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
ALL_CONV3 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"

# (dataset, split, epochs) -> the CSV column it must read
SETTINGS = {
    ("cifar10", "test", 200): "c10_test_200",
    ("cifar10", "val", 200): "c10valid_val_200",
    ("cifar10-valid", "val", 200): "c10valid_val_200",
    ("cifar100", "test", 200): "c100_test_200",
    ("cifar100", "val", 200): "c100_val_200",
    ("imagenet16-120", "test", 200): "in16_test_200",
    ("imagenet16-120", "val", 200): "in16_val_200",
    ("cifar10", "test", 12): "c10_test_12",
    ("cifar10", "val", 12): "c10valid_val_12",
    ("cifar10-valid", "val", 12): "c10valid_val_12",
    ("cifar100", "test", 12): "c100_test_12",
    ("cifar100", "val", 12): "c100_val_12",
    ("imagenet16-120", "test", 12): "in16_test_12",
    ("imagenet16-120", "val", 12): "in16_val_12",
}

# row 1 of the source CSV, copied by hand
ROW1_VALUES = {
    "c10_test_200": 93.66, "c10valid_val_200": 90.7693, "c100_test_200": 70.2933,
    "c100_val_200": 69.8267, "in16_test_200": 44.0333, "in16_val_200": 44.4889,
    "c10_test_12": 88.22, "c10valid_val_12": 82.834, "c100_test_12": 58.26,
    "c100_val_12": 57.8, "in16_test_12": 33.8, "in16_val_12": 35.4333,
}  # fmt: skip


@pytest.fixture(scope="module")
def raw_rows() -> list[dict[str, str]]:
    """The packaged file read independently of the module, with csv.DictReader."""
    with gzip.open(PACKAGED, "rt", encoding="utf-8", newline="") as text:
        return list(csv.DictReader(text))


@pytest.fixture(scope="module")
def packaged_text() -> str:
    with gzip.open(PACKAGED, "rt", encoding="utf-8", newline="") as text:
        return text.read()


def _counts(arch: dict[str, str]) -> tuple[int, int]:
    ops = list(arch.values())
    return ops.count("nor_conv_1x1"), ops.count("nor_conv_3x3")


# ------------------------------------------------------------------ the table


def test_table_has_every_architecture_once_in_index_order():
    t = nb201.table()
    assert t is nb201.table()  # loaded once
    assert len(t.rows) == nb201.SIZE == 15625
    assert set(t.columns) == set(nb201.COLUMNS)
    assert all(len(column) == 15625 for column in t.columns.values())
    assert np.array_equal(t.columns["index"], np.arange(15625))
    strings = t.columns["arch_str"].tolist()
    assert len(set(strings)) == 15625
    assert all(t.rows[s] == i for i, s in enumerate(strings))
    combos = {tuple(arch[label] for label in NB201_LABELS) for arch in nb201.all_archs()}
    assert combos == set(itertools.product(NB201_OPS, repeat=6))


def test_table_arrays_are_read_only():
    column = nb201.table().columns["c10_test_200"]
    with pytest.raises(ValueError):
        column[0] = 0.0
    with pytest.raises(ValueError):
        nb201.accuracies()[0] = 0.0


def test_maxima_match_the_paper():
    assert round(float(nb201.accuracies("cifar10").max()), 2) == 94.37
    assert round(float(nb201.accuracies("cifar100").max()), 2) == 73.51
    assert round(float(nb201.accuracies("imagenet16-120").max()), 2) == 47.31


def test_row_one_is_the_readme_example():
    assert nb201.arch_of(1) == parse_nb201(ROW1)
    assert nb201.index_of(ROW1) == 1
    assert nb201.query(ROW1) == 93.66
    for (dataset, split, epochs), column in SETTINGS.items():
        assert nb201.query(1, dataset, split, epochs) == ROW1_VALUES[column], (
            dataset,
            split,
            epochs,
        )
    assert nb201.params(1) == 0.802426
    assert nb201.flops(1) == 113.951


def test_every_setting_reads_its_column_on_every_row(raw_rows):
    assert len(raw_rows) == 15625
    for (dataset, split, epochs), column in SETTINGS.items():
        expected = np.array([float(row[column]) for row in raw_rows])
        got = nb201.accuracies(dataset, split, epochs)
        assert got.dtype == np.float64 and got.shape == (15625,)
        assert np.array_equal(got, expected), column
    assert [row["arch_str"] for row in raw_rows] == nb201.table().columns["arch_str"].tolist()


def test_defaults_are_cifar10_test_200_epochs():
    assert nb201.query(7) == nb201.query(7, "cifar10", "test", 200)
    assert nb201.accuracies() is nb201.accuracies("cifar10", "test", 200)
    assert nb201.query(7, "CIFAR10") == nb201.query(7)  # dataset names are case-insensitive


# ------------------------------------------------------------ architectures


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 15624), st.sampled_from(sorted(SETTINGS)))
def test_query_by_string_dict_and_index_agree(index, setting):
    arch = nb201.arch_of(index)
    text = format_nb201(arch)
    shuffled = dict(reversed(list(arch.items())))
    expected = nb201.query(index, *setting)
    assert nb201.query(text, *setting) == expected
    assert nb201.query(f"  {text}\n", *setting) == expected
    assert nb201.query(arch, *setting) == expected
    assert nb201.query(shuffled, *setting) == expected
    assert nb201.query(np.int64(index), *setting) == expected
    assert nb201.index_of(text) == nb201.index_of(arch) == nb201.index_of(index) == index
    assert nb201.params(text) == nb201.params(arch) == nb201.params(index)
    assert nb201.flops(text) == nb201.flops(arch) == nb201.flops(index)
    assert isinstance(expected, float)


def test_all_archs_in_index_order_and_fresh():
    archs = nb201.all_archs()
    assert len(archs) == 15625
    assert all(archs[i] == nb201.arch_of(i) for i in (0, 1, 2, 777, 15624))
    assert [nb201.index_of(arch) for arch in archs[:500]] == list(range(500))
    archs[0]["1<-0"] = "mutated"
    assert nb201.all_archs()[0]["1<-0"] != "mutated"


# ------------------------------------------------------------ params, flops


def test_params_of_all_conv3x3():
    assert nb201.params(ALL_CONV3) == 1.53155
    assert count_params(ALL_CONV3) == 1_531_546


def test_params_match_closed_form_on_every_row():
    column = nb201.table().columns["params_mb_c10"]
    for index, arch in enumerate(nb201.all_archs()):
        assert f"{count_params(arch) / 1e6:.6g}" == f"{column[index]:.6g}", index


def test_flops_match_closed_form_on_every_row():
    n1, n3 = np.array([_counts(arch) for arch in nb201.all_archs()]).T
    expected = 7.78305 + 3.93216 * n1 + 35.38944 * n3
    assert np.abs(nb201.table().columns["flops_m_c10"] - expected).max() < 1e-3
    assert nb201.flops(0) == 15.6474


# ------------------------------------------------------------------- sample


def test_sample_is_deterministic_distinct_and_uniform_without_replacement():
    first = nb201.sample(50, seed=3)
    assert first == nb201.sample(50, seed=3)
    assert first != nb201.sample(50, seed=4)
    indices = [nb201.index_of(arch) for arch in first]
    assert len(set(indices)) == 50
    expected = np.random.default_rng(3).choice(15625, size=50, replace=False)
    assert indices == expected.tolist()
    assert all(set(arch) == set(NB201_LABELS) for arch in first)


def test_sample_extremes():
    assert len(nb201.sample(1, seed=0)) == 1
    everything = nb201.sample(15625, seed=0)
    assert sorted(nb201.index_of(arch) for arch in everything) == list(range(15625))


# ------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("arch", "message"),
    [
        ("|nor_conv_3x3~0|+|none~0|", "has 2 node part"),
        ("|conv~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv'"),
        ({"1<-0": "none"}, "missing label"),
        ({**parse_nb201(ROW1), "1<-0": "conv"}, "op 'conv' is not allowed"),
        (-1, r"index -1 is out of range 0\.\.15624"),
        (15625, r"index 15625 is out of range 0\.\.15624"),
        (True, "got bool"),
        (1.0, "mapping label -> op, an NB201 string or an index, got float"),
        (None, "got NoneType"),
    ],
)
def test_bad_architectures_raise_arch_error(arch, message):
    for function in (nb201.query, nb201.params, nb201.flops, nb201.index_of):
        with pytest.raises(ArchError, match=message):
            function(arch)


@pytest.mark.parametrize(
    ("index", "message"), [(15625, "out of range"), ("1", "got str"), (False, "got bool")]
)
def test_arch_of_rejects_bad_indices(index, message):
    with pytest.raises(ArchError, match=message):
        nb201.arch_of(index)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"dataset": "imagenet"},
            "unknown dataset 'imagenet'; accepted: cifar10, cifar100, imagenet16-120, cifar10-valid",
        ),
        ({"dataset": None}, "unknown dataset None"),
        ({"split": "train"}, "unknown split 'train'; accepted: test, val"),
        ({"split": "valid"}, "unknown split 'valid'; accepted: test, val"),
        ({"epochs": 100}, "unknown epochs 100; accepted: 200, 12"),
        ({"epochs": "200"}, "unknown epochs '200'; accepted: 200, 12"),
        ({"epochs": True}, "unknown epochs True"),
        (
            {"dataset": "cifar10-valid", "split": "test"},
            "dataset 'cifar10-valid' has no 'test' split; accepted: 'val'",
        ),
    ],
)
def test_bad_settings_raise_data_error(kwargs, message):
    with pytest.raises(DataError, match=message):
        nb201.query(1, **kwargs)
    with pytest.raises(DataError, match=message):
        nb201.accuracies(**kwargs)
    assert issubclass(DataError, GmGraphError)


@pytest.mark.parametrize(
    ("n", "seed", "message"),
    [
        (0, 0, r"n=0 is out of range: accepted 1\.\.15625"),
        (15626, 0, r"n=15626 is out of range: accepted 1\.\.15625"),
        (2.0, 0, "n must be an int, got float"),
        (2, -1, "seed=-1 is out of range: accepted >= 0"),
        (2, None, "seed must be an int, got NoneType"),
    ],
)
def test_bad_sample_arguments_raise_data_error(n, seed, message):
    with pytest.raises(DataError, match=message):
        nb201.sample(n, seed)


def _replace_line(text: str, number: int, old: str, new: str) -> str:
    lines = text.splitlines(keepends=True)
    assert old in lines[number]
    lines[number] = lines[number].replace(old, new, 1)
    return "".join(lines)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("flops_m_c10", "flops", 1), "header is"),
        (lambda t: "".join(t.splitlines(keepends=True)[:-1]), "has 15624 rows, expected 15625"),
        (lambda t: _replace_line(t, 2, "93.66,", "93.66,1,"), "line 3 has 17 fields"),
        (lambda t: _replace_line(t, 2, "93.66", "n/a"), "column 'c10_test_200'"),
        (lambda t: _replace_line(t, 2, "93.66", "nan"), "non-finite"),
        (lambda t: _replace_line(t, 2, "1,", "7,"), "not in index order"),
        (
            lambda t: _replace_line(t, 2, "skip_connect~2", "skip_connect~1"),
            "row 1: .* is not a canonical",
        ),
        (lambda t: _replace_line(t, 2, ROW1, format_nb201(nb201.arch_of(0))), "twice"),
    ],
)
def test_parse_table_rejects_damaged_files(packaged_text, edit, message):
    with pytest.raises(DataError, match=message):
        nb201.parse_table(io.StringIO(edit(packaged_text), newline=""))


# ----------------------------------------------------------- packaged file


def test_packaged_file_is_a_reproducible_gzip():
    data = PACKAGED.read_bytes()
    assert data[:4] == b"\x1f\x8b\x08\x00"  # gzip, deflate, no file name
    assert data[4:8] == b"\x00\x00\x00\x00"  # mtime 0
    assert len(data) < 1_500_000


@pytest.mark.skipif(not SHARED.is_dir(), reason=f"no shared/ folder beside the repository ({SHARED}): "
                    "the NAS-Bench-201 source CSV is not available to rebuild the packaged table from")
def test_build_script_reproduces_the_packaged_file_from_the_source(capsys):
    assert SOURCE.is_file(), f"{SHARED} exists but holds no data/nb201.csv"
    spec = importlib.util.spec_from_file_location("build_nb201_table", BUILD_SCRIPT)
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    assert script.SOURCE == SOURCE  # the default is found relative to the repository, not the machine
    assert script.main(["--check"]) == 0, capsys.readouterr().out  # rebuilds the gzip byte for byte
    assert (
        gzip.decompress(PACKAGED.read_bytes()) == SOURCE.read_bytes()
    )  # nothing dropped or rounded
