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


def test_nested_labels_say_which_candidates_run_them(capsys):
    from torch import nn

    from gmgraph.choice import Choice
    from gmgraph.commands.show import space_table
    from gmgraph.graph import trace

    def block(i):
        kernel = Choice({"k3": nn.Conv2d(2, 2, 3, padding=1), "k5": nn.Conv2d(2, 2, 5, padding=2)}, f"b{i}.kernel")
        return Choice({"e3": nn.Sequential(kernel), "e6": nn.Sequential(kernel)}, f"b{i}.expand")

    blocks = [block(i) for i in range(1, 4)]
    depth = Choice({"d2": nn.Sequential(*blocks[:2]), "d3": nn.Sequential(*blocks)}, "depth")
    table = space_table(trace(nn.Sequential(nn.Conv2d(1, 2, 1), depth)))
    rows = {line.split()[0]: line for line in table.splitlines()[1:-1]}
    assert table.splitlines()[0].split() == ["label", "choices", "candidates", "runs"]
    assert rows["depth"].endswith("  always") and rows["b1.expand"].endswith("  in depth")
    assert rows["b3.expand"].endswith("  depth = d3") and rows["b3.kernel"].endswith("  in b3.expand")
    assert "space size: 80 architectures" in table  # a block: 2 expansions x 2 kernels; 4^2 at d2 + 4^3 at d3
    assert main(["show", "--space", "nb201"]) == 0
    assert "runs" not in capsys.readouterr().out.splitlines()[0]  # nothing nests: no column saying "always"


def test_a_reader_that_goes_away_stops_the_command_quietly(monkeypatch):
    import os
    import sys

    read, write = os.pipe()
    os.close(read)  # `gmgraph show | head` after head has exited
    with os.fdopen(write, "w", buffering=1) as closed:
        monkeypatch.setattr(sys, "stdout", closed)
        assert main(["show", "--space", "nb201"]) == 141
        closed.write("flushing at exit no longer fails\n")


def test_a_broken_pipe_that_is_not_stdout_stays_an_error(monkeypatch):
    import pytest

    import gmgraph.commands.show as show

    def broken(args):
        raise BrokenPipeError("a worker's pipe")

    monkeypatch.setattr(show, "run", broken)
    with pytest.raises(BrokenPipeError, match="a worker's pipe"):
        main(["show", "--space", "nb201"])
