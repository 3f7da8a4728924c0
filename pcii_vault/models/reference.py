"""Reference vocabularies of the PCII program, kept as data in `pcii_vault/data/*.json`.

The government renames sectors and sharing labels from time to time, so the lists live in
versioned JSON files, not in code: sectors (the 16 PPD-21 names), TLP 2.0 labels, grounds
for non-validation, intended uses, 29.8(f) disclosure-exception authorities, and US
states and territories. Invariants:
- every file is validated when loaded (strict, frozen models, `extra="forbid"`); a
  malformed or empty list is a packaging error (`ValueError`), never an empty vocabulary
  that would silently accept or refuse everything;
- ids are unique within a list; lookups are exact (no case folding), so a value stored in
  a record is always one the list spells the same way.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

__all__ = [
    "REFERENCE_FORMAT_VERSION",
    "DisclosureException",
    "ReferenceData",
    "Term",
    "Use",
    "load_reference_data",
    "reference_data",
]

REFERENCE_FORMAT_VERSION = 1


class Term(BaseModel):
    """One entry of a vocabulary: a stable id and its display name."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=1000)


class Use(Term):
    """An intended use of PCII that an analyst declares and the policies reason about."""

    federal_only: bool


class DisclosureException(Term):
    """A disclosure without the submitter's consent (6 CFR 29.8(f))."""

    citation: str = Field(min_length=1, max_length=100)
    notice_required: bool = Field(
        description="a contemporaneous written notice to the program office is required"
    )


class _TermFile(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    version: Literal[1]
    source: str = Field(min_length=1)
    entries: tuple[Term, ...] = Field(min_length=1)


class _UseFile(_TermFile):
    entries: tuple[Use, ...] = Field(min_length=1)


class _ExceptionFile(_TermFile):
    entries: tuple[DisclosureException, ...] = Field(min_length=1)


class ReferenceData(BaseModel):
    """All vocabularies, loaded together."""

    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    sectors: tuple[Term, ...]
    tlp_labels: tuple[Term, ...]
    non_validation_grounds: tuple[Term, ...]
    uses: tuple[Use, ...]
    disclosure_exceptions: tuple[DisclosureException, ...]
    states: tuple[Term, ...]

    @property
    def sector_names(self) -> tuple[str, ...]:
        """The sector names a submission may carry (PPD-21 spelling)."""
        return tuple(term.name for term in self.sectors)

    @property
    def tlp_names(self) -> tuple[str, ...]:
        """The TLP labels a submission may carry, e.g. `TLP:AMBER`."""
        return tuple(term.id for term in self.tlp_labels)

    @property
    def state_codes(self) -> tuple[str, ...]:
        """Two-letter USPS codes of the states, DC and territories."""
        return tuple(term.id for term in self.states)

    @property
    def ground_ids(self) -> tuple[str, ...]:
        """Ids of the grounds for non-validation (for `pcii reject --ground`)."""
        return tuple(term.id for term in self.non_validation_grounds)

    @property
    def use_ids(self) -> tuple[str, ...]:
        """Ids of the intended uses (for `pcii get --use`)."""
        return tuple(term.id for term in self.uses)

    @property
    def exception_ids(self) -> tuple[str, ...]:
        """Ids of the 29.8(f) disclosure exceptions (for `pcii get --authority`)."""
        return tuple(term.id for term in self.disclosure_exceptions)

    def disclosure_exception(self, exception_id: str) -> DisclosureException:
        """Look up one disclosure exception by id.

        Raises:
            KeyError: no exception has this id.
        """
        for term in self.disclosure_exceptions:
            if term.id == exception_id:
                return term
        raise KeyError(exception_id)


_FILES: dict[str, type[_TermFile]] = {
    "sectors": _TermFile,
    "tlp_labels": _TermFile,
    "non_validation_grounds": _TermFile,
    "uses": _UseFile,
    "disclosure_exceptions": _ExceptionFile,
    "states": _TermFile,
}
_FILE_NAMES = {
    "sectors": "sectors.json",
    "tlp_labels": "tlp.json",
    "non_validation_grounds": "non_validation_grounds.json",
    "uses": "uses.json",
    "disclosure_exceptions": "disclosure_exceptions.json",
    "states": "states.json",
}


def load_reference_data(files: dict[str, bytes]) -> ReferenceData:
    """Validate the vocabularies from the bytes of each data file.

    Args:
        files: file name (e.g. `sectors.json`) to its bytes; every known file must be there.

    Returns:
        The validated vocabularies.

    Raises:
        ValueError: a file is missing, malformed, empty, or repeats an id or a name.
    """
    lists: dict[str, tuple[Term, ...]] = {}
    for field, file_name in _FILE_NAMES.items():
        if file_name not in files:
            raise ValueError(f"reference data: {file_name} is missing")
        try:
            parsed = _FILES[field].model_validate_json(files[file_name])
        except ValidationError as exc:
            raise ValueError(f"reference data: {file_name} is malformed: {exc}") from exc
        for attribute in ("id", "name"):
            values = [getattr(term, attribute) for term in parsed.entries]
            if len(set(values)) != len(values):
                raise ValueError(f"reference data: {file_name} repeats an {attribute}")
        lists[field] = parsed.entries
    return ReferenceData.model_validate(lists)


@cache
def reference_data() -> ReferenceData:
    """The vocabularies shipped in `pcii_vault/data/`, loaded and validated once.

    Raises:
        ValueError: the packaged data is missing or malformed.
    """
    directory = resources.files("pcii_vault") / "data"
    files = {name: (directory / name).read_bytes() for name in _FILE_NAMES.values()}
    return load_reference_data(files)
