"""docs/mappings.md: its examples run and it lists every transform."""

import re
import sys
import textwrap
from pathlib import Path

from stripe_sitecore.mapping.transforms import REGISTRY

DOCS = Path(__file__).resolve().parents[3] / "docs" / "mappings.md"


def code_blocks(language):
    return re.findall(rf"```{language}\n(.*?)```", DOCS.read_text(), flags=re.S)


def test_every_transform_is_documented():
    text = DOCS.read_text()
    for name in REGISTRY:
        assert f"`{name}`" in text, name


def test_the_escape_hatch_example_works(tmp_path, monkeypatch, mapping_from):
    (python,) = [b for b in code_blocks("python") if "def customer_number" in b]
    (field,) = [b for b in code_blocks("yaml") if "acme_mappings.erp:customer_number" in b]
    package = tmp_path / "acme_mappings"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "erp.py").write_text(python)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STRIPE_SITECORE_MAPPING_MODULES", "acme_mappings")
    try:
        mapping = mapping_from("fields:\n" + textwrap.indent(field, "  "))
        result = mapping.apply(
            {"ID": "o1", "FromUser": {"ID": "buyer-ada"}, "xp": {"Region": "EU"}}
        )
        assert re.fullmatch(r"EU\d{10}", result.payload["customer"]["number"])
        bad = mapping.apply({"ID": "o2", "FromUser": {"ID": "x"}, "xp": {"Region": "EUR"}})
        assert (bad.rule, bad.reason) == (
            "python.customer_number",
            "customer.number: region 'EUR' is not 2 letters",
        )
    finally:
        for name in [m for m in sys.modules if m.split(".")[0] == "acme_mappings"]:
            del sys.modules[name]
