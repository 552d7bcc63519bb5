"""The ``>>>`` examples in the kernel modules' docstrings run with the suite."""

import doctest

import pytest

from pcpemu.kernel import ftrace, layout, pcplists


@pytest.mark.parametrize("module", [ftrace, layout, pcplists], ids=lambda m: m.__name__)
def test_docstring_examples(module):
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.attempted > 0 and result.failed == 0
