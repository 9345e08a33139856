"""BN recalibration through sliced norms: a subnet recalibrated inside the OFA supernet gets the statistics
its derived plain network gets from the same batches."""

import torch

import gmgraph
from gmgraph.passes import derive
from gmgraph.search.evaluation import recalibrate_bn
from gmgraph.spaces import ofa


def _batch_norms(net):
    return [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


def test_a_subnet_recalibrated_in_the_supernet_matches_its_derived_network():
    torch.manual_seed(0)
    gm = gmgraph.trace(ofa.supernet(num_classes=10, width_mult=0.25, strides=ofa.strides_for(2), divisor=4))
    arch = gmgraph.sample(gm, torch.Generator().manual_seed(3))
    batches = [torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(s)) for s in range(3)]
    plain = derive(gm, arch)
    assert recalibrate_bn(plain, batches) == 3
    with gmgraph.use(gm, arch):
        assert recalibrate_bn(gm, batches) == 3
        gm.eval()
        x = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(9))
        inside = gm(x)
    # the supernet's statistics, sliced as derive slices them, are the plain network's
    again = derive(gm, arch)
    for mine, theirs in zip(_batch_norms(again), _batch_norms(plain), strict=True):
        torch.testing.assert_close(mine.running_mean, theirs.running_mean, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(mine.running_var, theirs.running_var, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(inside, plain.eval()(x), rtol=1e-5, atol=1e-5)
    # and the statistics did move: before, eval-mode views would have run the reset ones (mean 0, var 1)
    assert any(not torch.allclose(bn.running_mean, torch.zeros_like(bn.running_mean)) for bn in _batch_norms(again))
