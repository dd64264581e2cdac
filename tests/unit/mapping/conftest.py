import textwrap

import pytest

from stripe_sitecore.mapping.loader import compile_mapping

HEADER = """\
version: 1
name: test_mapping
source: test.record
target: test.payload
key: ID
"""


@pytest.fixture
def mapping_from():
    """Compile YAML text (the common header is added unless the text has its own ``version``)."""

    def compile_yaml(text: str, file: str = "test.yaml"):
        body = textwrap.dedent(text)
        if body.lstrip().startswith("version"):
            return compile_mapping(body.lstrip(), file)
        return compile_mapping(HEADER + body, file)

    return compile_yaml
