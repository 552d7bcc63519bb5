import pytest

import pcpemu


@pytest.fixture
def v610():
    def make(memory="1G", cpus=1, **kw):
        return pcpemu.Machine(pcpemu.KernelConfig.preset("v6.10", memory=memory, cpus=cpus, **kw), seed=1)
    return make
