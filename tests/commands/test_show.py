from gmgraph.cli import main

ARCH = "|nor_conv_3x3~0|+|none~0|skip_connect~1|+|none~0|none~1|avg_pool_3x3~2|"


def test_show_space_table(capsys):
    assert main(["show", "--space", "nb201"]) == 0
    out = capsys.readouterr().out
    assert "3<-2" in out and "15,625 architectures" in out
    assert "73,306 to 1,531,546" in out  # NAS-Bench-201's all-none and all-conv3x3 counts


def test_show_one_arch_with_cost_and_drawing(capsys, tmp_path):
    assert main(["show", "--space", "nb201", "--arch", ARCH, "--png", str(tmp_path / "a.png")]) == 0
    out = capsys.readouterr().out
    assert "parameters: 316,346" in out
    assert "node 1 = nor_conv_3x3(node 0)" in out and "node 3 = avg_pool_3x3(node 2)" in out
    assert (tmp_path / "a.png").stat().st_size > 1000


def test_bad_arch_and_space_exit_2(capsys):
    assert main(["show", "--space", "nb201", "--arch", "|conv~0|"]) == 2
    assert main(["show", "--space", "nas"]) == 2
    err = capsys.readouterr().err
    assert "node part" in err and "unknown space 'nas'" in err
