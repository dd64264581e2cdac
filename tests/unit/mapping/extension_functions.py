"""Functions the Python escape-hatch tests call from mapping files (module allowed by the test)."""

from stripe_sitecore.mapping import TransformError


def initials(value, *, separator=""):
    return separator.join(part[0].upper() for part in value.split())


def checked_vat_number(value, *, country):
    if not str(value).startswith(country):
        raise TransformError("python.vat_number", f"{value} is not a {country} VAT number")
    return str(value)


def strict_int(value):
    return int(value)


NOT_CALLABLE = 5
