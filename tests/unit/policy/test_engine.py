"""PolicyEngine: load-time refusal, fail-closed evaluation, edge cases of the rules."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path

import pytest
from policy_facts import NOW, POLICIES, principal, record, request

from pcii_vault.errors import ConfigError
from pcii_vault.policy.engine import PolicyEngine, PolicyLoadError

MakeDir = Callable[[dict[str, str]], Path]

PERMIT_STATUS = """// a rule
@id("office-status")
permit (principal, action == Action::"status", resource)
when { principal.role == "office" };
"""


def _load_problems(directory: Path) -> list[str]:
    with pytest.raises(PolicyLoadError) as caught:
        PolicyEngine.load(directory)
    return [str(p) for p in caught.value.problems]


# --- edge cases of the default set -------------------------------------------------


def test_training_expiring_exactly_at_request_time_is_denied(engine: PolicyEngine) -> None:
    decision = engine.decide(principal(training_expires=NOW), "retrieve", record(), request())
    assert not decision.allowed
    assert decision.policy_ids == ("training-not-current",)


def test_training_expiring_a_microsecond_after_request_is_still_denied(
    engine: PolicyEngine,
) -> None:
    """Sub-second times round towards denial (expiry down, request time up)."""
    almost = principal(training_expires=NOW + timedelta(microseconds=1))
    assert not engine.decide(almost, "retrieve", record(), request()).allowed
    later = principal(training_expires=NOW + timedelta(seconds=1))
    assert engine.decide(later, "retrieve", record(), request()).allowed


def test_suspended_principal_is_denied_everything(engine: PolicyEngine) -> None:
    suspended = principal(status="suspended")
    for action, resource in (("retrieve", record()), ("search", record()), ("submit", None)):
        decision = engine.decide(suspended, action, resource, request())
        assert not decision.allowed
        assert "principal-not-active" in decision.policy_ids


@pytest.mark.parametrize("status", ["suspended", "revoked"])
def test_an_inactive_principal_is_denied_whatever_the_policies_permit(
    policy_dir: MakeDir, status: str
) -> None:
    """A tester's finding: with a permit-all set (and principal-status.cedar removed) a
    suspended or revoked principal read `status` of records, and nothing was logged."""
    permit_all = '// everything\n@id("permit-all")\npermit (principal, action, resource);\n'
    engine = PolicyEngine.load(policy_dir({"all.cedar": permit_all}))
    assert engine.decide(principal(), "status", record(), request()).allowed
    decision = engine.decide(principal(status=status), "status", record(), request())
    assert (decision.allowed, decision.policy_ids) == (False, ("principal-not-active",))


def test_sector_mismatch_is_denied(engine: PolicyEngine) -> None:
    decision = engine.decide(principal(), "retrieve", record(sector="Dams"), request())
    assert (decision.allowed, decision.policy_ids) == (False, ("no-need-to-know",))


@pytest.mark.parametrize("purpose", ["", "   ", "\t\n"])
def test_missing_or_blank_purpose_is_denied(engine: PolicyEngine, purpose: str) -> None:
    decision = engine.decide(principal(), "retrieve", record(), request(purpose=purpose))
    assert (decision.allowed, decision.policy_ids) == (False, ("no-stated-purpose",))


def test_non_federal_without_nda_is_denied(engine: PolicyEngine) -> None:
    decision = engine.decide(
        principal(level="local", nda_signed=None), "retrieve", record(), request()
    )
    assert decision.policy_ids == ("nda-missing",)
    federal = engine.decide(principal(nda_signed=None), "retrieve", record(), request())
    assert federal.allowed


def test_regulatory_enforcement_is_forbidden_even_to_federal(engine: PolicyEngine) -> None:
    decision = engine.decide(
        principal(), "retrieve", record(), request(use="regulatory-enforcement")
    )
    assert decision.policy_ids == ("no-regulatory-enforcement",)


def test_disclosure_exception_carries_program_office_notice(engine: PolicyEngine) -> None:
    decision = engine.decide(
        principal(),
        "retrieve",
        record(),
        request(use="disclosure-exception", authority="exception:gao"),
    )
    assert decision.allowed
    assert "notify:program-office" in decision.obligations
    no_authority = engine.decide(
        principal(), "retrieve", record(), request(use="disclosure-exception")
    )
    assert no_authority.policy_ids == ("exception-authority-required",)


def test_decision_carries_policy_set_hash(engine: PolicyEngine) -> None:
    decision = engine.decide(principal(), "retrieve", record(), request())
    assert decision.policy_set_hash == engine.policy_set_hash
    assert len(engine.policy_set_hash) == 64


def test_record_action_without_record_denies_with_error(engine: PolicyEngine) -> None:
    decision = engine.decide(principal(), "retrieve", None, request())
    assert not decision.allowed
    assert decision.errors


def test_unknown_action_denies_with_error(engine: PolicyEngine) -> None:
    decision = engine.decide(principal(), "exfiltrate", record(), request())
    assert not decision.allowed
    assert decision.errors


def test_changed_principal_is_not_served_from_cache(engine: PolicyEngine) -> None:
    """The principal-entity cache is keyed by the whole facts value."""
    assert engine.decide(principal(), "retrieve", record(), request()).allowed
    assert not engine.decide(principal(status="revoked"), "retrieve", record(), request()).allowed
    assert engine.decide(principal(), "retrieve", record(), request()).allowed


def test_every_shipped_policy_cites_its_rule(engine: PolicyEngine) -> None:
    for source in engine.policies.values():
        assert "CFR" in source.comment, source.policy_id


def test_explain_metadata_names_file_and_line(engine: PolicyEngine) -> None:
    source = engine.policies["principal-not-active"]
    lines = (POLICIES / source.file).read_text().splitlines()
    assert lines[source.line - 1].startswith('@id("principal-not-active")')


# --- evaluation errors deny -------------------------------------------------------


def test_policy_erroring_at_evaluation_denies_and_reports(policy_dir: MakeDir) -> None:
    """A forbid that fails at run time would be skipped by Cedar; the engine denies.

    (An optional attribute read without `has` is already refused at load by the
    validator, so the run-time error here is a dereference of the submitter, an entity
    the request does not carry.)
    """
    directory = policy_dir(
        {
            "a.cedar": PERMIT_STATUS,
            "b.cedar": """// a forbid that errors at run time
@id("submitter-org-check")
forbid (principal, action == Action::"status", resource)
when { resource.submitter.organisation == "Evil Corp" };
""",
        }
    )
    engine = PolicyEngine.load(directory)
    decision = engine.decide(principal(role="office"), "status", record(), request())
    assert not decision.allowed
    assert decision.decision == "deny"
    assert any("submitter-org-check" in error for error in decision.errors)


def test_overflow_at_evaluation_denies(policy_dir: MakeDir) -> None:
    directory = policy_dir(
        {
            "a.cedar": """// overflow
@id("overflowing")
permit (principal, action == Action::"status", resource)
when { context.now * 9223372036854775807 > 0 };
"""
        }
    )
    decision = PolicyEngine.load(directory).decide(
        principal(role="office"), "status", record(), request()
    )
    assert not decision.allowed
    assert decision.errors


# --- load-time refusal ------------------------------------------------------------


def test_unknown_attribute_is_rejected_at_load(policy_dir: MakeDir) -> None:
    directory = policy_dir(
        {
            "bad.cedar": """// typo
@id("typo")
permit (principal, action == Action::"status", resource)
when { principal.clearance == "secret" };
"""
        }
    )
    problems = _load_problems(directory)
    assert len(problems) == 1
    assert problems[0].startswith("bad.cedar:2: typo:")
    assert "clearance" in problems[0]


def test_optional_attribute_without_has_is_rejected_at_load(policy_dir: MakeDir) -> None:
    directory = policy_dir(
        {
            "bad.cedar": """@id("unguarded")
permit (principal, action == Action::"retrieve", resource)
when { principal.trainingExpires > context.now };
"""
        }
    )
    assert "trainingExpires" in _load_problems(directory)[0]


def test_every_problem_is_listed_with_file_and_line(policy_dir: MakeDir) -> None:
    directory = policy_dir(
        {
            "a.cedar": PERMIT_STATUS + '\n@id("broken")\npermit (principal, action, resource\n;',
            "b.cedar": '// ok\n@id("office-status")\npermit (principal, action, resource);\n',
            "c.cedar": '\n\n@obligations("mark:pcii mark:secret")\n'
            '@id("c1") permit (principal, action, resource);\n',
        }
    )
    problems = _load_problems(directory)
    assert any(p.startswith("a.cedar:6: parse error") for p in problems)
    assert any(p.startswith("b.cedar:2: duplicate @id 'office-status'") for p in problems)
    assert any(p.startswith("c.cedar:3: c1: unknown obligation 'mark:secret'") for p in problems)
    assert len(problems) == 3


def test_empty_policy_directory_is_refused(policy_dir: MakeDir) -> None:
    problems = _load_problems(policy_dir({}))
    assert any("no *.cedar policy files" in p for p in problems)


def test_file_without_policies_is_refused(policy_dir: MakeDir) -> None:
    problems = _load_problems(policy_dir({"a.cedar": PERMIT_STATUS, "empty.cedar": "// nothing\n"}))
    assert problems == ["empty.cedar: holds no policy"]


def test_missing_schema_is_refused(tmp_path: Path) -> None:
    (tmp_path / "a.cedar").write_text(PERMIT_STATUS)
    assert any("cedarschema" in p for p in _load_problems(tmp_path))


def test_missing_directory_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        PolicyEngine.load(tmp_path / "absent")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("permit (principal, action, resource);", "has no @id"),
        ('@id("x") @reason("y") permit (principal, action, resource);', "unknown annotation"),
        ('@id("x") @obligations("") permit (principal, action, resource);', "empty @obligations"),
        (
            '@id("x") @obligations("mark:pcii") forbid (principal, action, resource);',
            "only belongs",
        ),
        ('@id("x") permit (principal == ?principal, action, resource);', "templates"),
        ('@id("Bad Id") permit (principal, action, resource);', "lower-case"),
        (
            '@id("x") @obligations("redact:everything") permit (principal, action, resource);',
            "unknown obligation",
        ),
    ],
)
def test_malformed_policy_is_refused(policy_dir: MakeDir, text: str, expected: str) -> None:
    problems = _load_problems(policy_dir({"a.cedar": text + "\n"}))
    assert len(problems) == 1
    assert expected in problems[0]


def test_semicolon_inside_string_or_comment_does_not_split(policy_dir: MakeDir) -> None:
    directory = policy_dir(
        {
            "a.cedar": """// comment; with a semicolon
@id("semi")
permit (principal, action == Action::"status", resource)
when { principal.organisation == "A; B \\" ; C" };
"""
        }
    )
    engine = PolicyEngine.load(directory)
    assert list(engine.policies) == ["semi"]
    assert engine.policies["semi"].line == 2
    assert engine.policies["semi"].comment == "comment; with a semicolon"


# --- policy-set hash --------------------------------------------------------------


def test_policy_set_hash_changes_with_any_byte(policy_dir: MakeDir, tmp_path: Path) -> None:
    directory = policy_dir({"a.cedar": PERMIT_STATUS})
    first = PolicyEngine.load(directory).policy_set_hash
    assert PolicyEngine.load(directory).policy_set_hash == first
    (directory / "a.cedar").write_text(PERMIT_STATUS + "\n")
    second = PolicyEngine.load(directory).policy_set_hash
    assert second != first
    (directory / "a.cedar").rename(directory / "b.cedar")
    assert PolicyEngine.load(directory).policy_set_hash not in {first, second}
    schema = directory / "pcii.cedarschema"
    schema.write_text(schema.read_text() + "\n")
    assert PolicyEngine.load(directory).policy_set_hash not in {first, second}


def test_nda_signed_after_request_does_not_count(engine: PolicyEngine) -> None:
    late = principal(level="state", nda_signed=date(2026, 6, 2))
    assert engine.decide(late, "retrieve", record(), request()).policy_ids == ("nda-missing",)


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        ("(" * 700 + "true" + ")" * 700, "nested 701 deep"),
        (" && ".join(["true"] * 1000), "operator characters"),
        ("!" * 5000 + "true", "operator characters"),
    ],
    ids=["700 parentheses", "1000 conjuncts", "5000 negations"],
)
def test_a_policy_too_deep_for_the_parser_is_refused_before_it_is_parsed(
    policy_dir: MakeDir, condition: str, reason: str
) -> None:
    """A tester's finding: Cedar's recursive parser crashed the process (signal 11) on
    700 nested parentheses, and its JSON form overflowed Python's stack (exit 1) on a
    long `&&` chain; any command opening the vault, `pcii serve` too, died with it."""
    deep = f'@id("deep")\npermit (principal, action, resource) when {{ {condition} }};\n'
    problems = _load_problems(policy_dir({"office.cedar": PERMIT_STATUS, "deep.cedar": deep}))
    assert any(reason in p and p.startswith("deep.cedar:1:") for p in problems), problems


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("entity Vault;", "entity Vault = { name: String };"),
        ("entity User = {\n", "entity User = {\n  clearance: String,\n"),
        ("entity Record = {\n", "entity Record = {\n  owner: String,\n"),
        ("type RequestContext = {\n", "type RequestContext = {\n  ticket: String,\n"),
        ("  authority?: String,", "  authority: String,"),
    ],
)
def test_a_schema_the_vaults_entities_do_not_fit_is_refused_at_load(
    tmp_path: Path, old: str, new: str
) -> None:
    """A tester's finding: `entity Vault = { name: String };` (Cedar accepts it) made
    `policy check` and every command exit 1; a User with one more required attribute
    passed `policy check`, and then every decision failed."""
    directory = tmp_path / "policies"
    shutil.copytree(POLICIES, directory)
    schema = directory / "pcii.cedarschema"
    text = schema.read_text(encoding="utf-8")
    assert old in text
    schema.write_text(text.replace(old, new, 1), encoding="utf-8")
    [problem] = _load_problems(directory)
    assert problem.startswith("pcii.cedarschema: the schema does not fit the entities"), problem
    assert "Traceback" not in problem
