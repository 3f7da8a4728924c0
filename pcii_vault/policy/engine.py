"""The policy engine: Cedar policies from a directory, parsed and validated once.

`PolicyEngine.load()` reads every `*.cedar` file and the one `*.cedarschema` file of a
directory, and refuses to start (`PolicyLoadError`, listing every problem with its file
and line) when anything is wrong: a parse error, a policy that does not validate against
the schema (an unknown attribute, an unguarded optional attribute, a type error), a
policy without `@id`, a repeated `@id`, an unknown annotation, an unknown obligation,
obligations on a forbid, a template, an empty file, or an empty directory.

`PolicyEngine.decide()` evaluates one request. Invariants:
- Only an active principal is ever permitted: a suspended or revoked one (any status but
  "active") is denied by `INACTIVE_PRINCIPAL_RULE` whatever the policies permit.
- Default deny: only a Cedar "Allow" with no evaluation error permits. Any error (a
  policy failing at run time, a request that does not match the schema, an exception
  from Cedar) denies and is reported; Cedar alone would skip an erroring forbid.
- A decision names its determining policies by `@id` (the engine builds the policy set
  with each policy's `@id` as its Cedar id) and carries the union of the obligations of
  the determining permits, and the hash of the policy set that decided it.
- The policy set, schema and policy metadata are immutable after load.
- Every entity that reaches Cedar has been validated against the schema: the principal
  entity when it is parsed into the principal cache, the record entity when its JSON
  enters the record cache, the vault entity at load. Both caches are keyed by the whole,
  immutable facts value (`PrincipalFacts`, `RecordFacts`); equal facts build the same
  entity, so a cached entry is exactly what validation accepted, and a changed
  principal or record is a new key and is validated anew. The request itself (principal
  and resource types for the action, the context) is validated against the schema by
  Cedar on every call.
- Speed without changing meaning: a policy whose action scope names only other actions
  (`action == X`, `action in X`, `action in [X, Y]` where none is the requested action
  or one of its groups in the schema's action hierarchy) can never be satisfied, so
  each action is evaluated against the slice of the set without them (built once per
  action of the schema; an action the schema does not know gets the whole set, and
  Cedar's request validation refuses it). Per request the engine only adds the cached
  record JSON to the cached principal entities (Cedar has no way to merge two parsed
  handles), serialises the context once, and evaluates.
- Decide once: a decision is a pure function of this engine (its policy set and
  schema), the action, the principal's facts, the record's facts and the context
  document (purpose, use, authority, emergency flag, and the time in whole seconds, as
  Cedar sees it). Decisions are memoised on exactly that key, so an act checked first on
  the current state and again at its log position is evaluated once when nothing it
  depends on changed, and afresh when anything did (a suspended principal, a record
  that moved on, another second, another policy set: another engine). Only outcomes
  Cedar returned are memoised, never a deny made of an exception.

Many decisions over the same entities (`search`, a long-running server) can share one
`EntityDirectory` (every principal and record parsed and schema-checked once). It is used
for a request only when it holds that principal and record with exactly the request's
facts, and only when no policy reads an attribute through any entity but the request's
principal and resource (checked on the policies' JSON form at load): the directory's other
entities are then unreachable, so every decision equals the one without it.

The policy-set hash is SHA-256 over a domain tag and, for each file (the `*.cedar`
files and the schema, sorted by name), the 8-byte big-endian length and bytes of its
name, then of its content. Any change to any byte of any file changes the hash.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal

import cedarpy

from pcii_vault.durable import read_regular
from pcii_vault.errors import ConfigError, IntegrityError
from pcii_vault.policy.entities import (
    PrincipalFacts,
    RecordFacts,
    RequestFacts,
    context_json,
    principal_entity,
    record_entity,
    vault_entity,
)
from pcii_vault.policy.obligations import Obligation, canonical_obligations, parse_obligations

__all__ = [
    "HASH_DOMAIN",
    "INACTIVE_PRINCIPAL_RULE",
    "Decision",
    "EntityDirectory",
    "PolicyEngine",
    "PolicyLoadError",
    "PolicyProblem",
    "PolicySource",
    "default_policy_directory",
    "hash_policy_files",
]

HASH_DOMAIN = b"pcii-vault policy-set v1\n"
_KNOWN_ANNOTATIONS = frozenset({"id", "obligations"})
_POLICY_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,79}")
_INTERNAL_ID = re.compile(r"\bpolicy0\b")
_PRINCIPAL_CACHE_SIZE = 4096
_RECORD_CACHE_SIZE = 16384  # about 1 KB each; cleared when full, like the principal cache
# Named as the determining policy of the vault's own rule: only an active principal acts.
INACTIVE_PRINCIPAL_RULE = "principal-not-active"
_DECISION_CACHE_SIZE = 16384  # cleared when full, like the others
_MAX_POLICY_FILE_BYTES = 1 << 20  # a policy file or schema; the shipped ones are a few KiB


@dataclass(frozen=True, slots=True)
class PolicyProblem:
    """One reason a policy directory cannot be loaded."""

    file: str
    line: int | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.message}"


class PolicyLoadError(ConfigError):
    """The policy directory cannot be loaded; `problems` lists every reason."""

    def __init__(self, problems: list[PolicyProblem] | tuple[PolicyProblem, ...]) -> None:
        self.problems = tuple(problems)
        count = len(self.problems)
        super().__init__(
            f"policy set refused ({count} problem{'s' if count != 1 else ''}): "
            + "; ".join(str(p) for p in self.problems)
        )


@dataclass(frozen=True, slots=True)
class PolicySource:
    """Where a policy comes from and what it says about itself."""

    policy_id: str
    effect: Literal["permit", "forbid"]
    file: str
    line: int
    comment: str
    obligations: tuple[Obligation, ...]
    text: str


@dataclass(frozen=True, slots=True)
class Decision:
    """The outcome of one request."""

    allowed: bool
    decision: Literal["permit", "deny"]
    policy_ids: tuple[str, ...]
    obligations: tuple[str, ...]
    errors: tuple[str, ...]
    policy_set_hash: str


@dataclass(frozen=True, slots=True)
class _Statement:
    text: str
    line: int
    comment: str


def default_policy_directory() -> Path:
    """Return the shipped default policies.

    In a source checkout (an editable install) that is the repository's `policies/`, next
    to the package; an installed wheel carries a copy as `pcii_vault/policies/`.

    Returns:
        The directory holding the shipped default policies.

    Raises:
        ConfigError: neither exists.
    """
    package = Path(__file__).resolve().parents[1]
    for directory in (package.parent / "policies", package / "policies"):
        if directory.is_dir():
            return directory
    raise ConfigError(f"default policies not found next to {package}; pass a directory")


def _code(source: str) -> Iterator[tuple[int, str]]:
    """Each character of Cedar text outside strings and `//` comments, with its offset."""
    i = 0
    in_string = False
    length = len(source)
    while i < length:
        char = source[i]
        if in_string:
            if char == "\\":
                i += 1
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char == "/" and source.startswith("//", i):
            newline = source.find("\n", i)
            i = length if newline < 0 else newline
            continue
        else:
            yield i, char
        i += 1


def _split_statements(source: str) -> list[_Statement]:
    """Split Cedar policy text at each `;` outside strings and `//` comments.

    Each statement keeps the line of its first token and the `//` comment block right
    above that token (after the last blank line), for explanations and error messages.
    """
    statements: list[_Statement] = []
    start = 0
    for i, char in _code(source):
        if char == ";":
            statements.append(_statement(source, start, i + 1))
            start = i + 1
    tail = _statement(source, start, len(source))
    if tail.text.strip():
        statements.append(tail)
    return statements


# Far beyond any policy a person writes, far below where Cedar's recursive parser and
# its JSON form overflow the stack (about 600 nested parentheses, 700 chained `&&`).
_MAX_NESTING = 32
_MAX_OPERATORS = 256


def _too_complex(text: str) -> str | None:
    """Why a statement is too deeply nested or too long a chain to parse, or None."""
    depth = deepest = operators = 0
    for _, char in _code(text):
        if char in "([{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in ")]}":
            depth -= 1
        elif char in "&|+-*!<>=":
            operators += 1
    if deepest > _MAX_NESTING:
        return f"brackets nested {deepest} deep (at most {_MAX_NESTING})"
    if operators > _MAX_OPERATORS:
        return f"{operators} operator characters in one policy (at most {_MAX_OPERATORS})"
    return None


def _statement(source: str, start: int, end: int) -> _Statement:
    chunk = source[start:end]
    comment_lines: list[str] = []
    first_line = source.count("\n", 0, start) + 1
    code_lines: list[str] = []
    for offset, raw in enumerate(chunk.split("\n")):
        stripped = raw.strip()
        if code_lines or (stripped and not stripped.startswith("//")):
            if not code_lines:
                first_line += offset
            code_lines.append(raw)
        elif not stripped:
            comment_lines = []
        else:
            comment_lines.append(stripped.removeprefix("//").strip())
    text = "\n".join(code_lines).strip() if code_lines else ""
    return _Statement(text=text, line=first_line, comment=" ".join(comment_lines))


def hash_policy_files(files: Iterable[tuple[str, bytes]]) -> str:
    """The policy-set hash of (file name, bytes) pairs (see the module docstring)."""
    return _hash_files(list(files))


def _hash_files(files: list[tuple[str, bytes]]) -> str:
    digest = hashlib.sha256(HASH_DOMAIN)
    for name, data in sorted(files):
        encoded = name.encode("utf-8")
        digest.update(len(encoded).to_bytes(8, "big"))
        digest.update(encoded)
        digest.update(len(data).to_bytes(8, "big"))
        digest.update(data)
    return digest.hexdigest()


def _action_ancestors(schema: cedarpy.Schema) -> dict[str, frozenset[str]]:
    """Per action of `schema`, every action group it is in, transitively.

    Cedar puts the schema's action entities into every entity set parsed with the schema
    (as the engine's principal sets are), and requests add no action entities, so this
    hierarchy is the one `action in ...` is evaluated against.
    """
    document = json.loads(str(cedarpy.Entities.from_json_str("[]", schema)))
    parents: dict[str, set[str]] = {}
    for entity in document:
        if entity["uid"]["type"] == "Action":
            parents[entity["uid"]["id"]] = {
                parent["id"] for parent in entity["parents"] if parent["type"] == "Action"
            }
    ancestors: dict[str, frozenset[str]] = {}
    for action, direct in parents.items():
        seen: set[str] = set()
        pending = list(direct)
        while pending:
            group = pending.pop()
            if group not in seen:
                seen.add(group)
                pending.extend(parents.get(group, ()))
        ancestors[action] = frozenset(seen)
    return ancestors


def _scope_can_match(scope: Mapping[str, Any], action: str, ancestors: frozenset[str]) -> bool:
    """Whether a policy's action scope can hold for requests with `action`.

    Answers True for anything it does not recognise, so that only a policy proven
    unreachable is ever left out.
    """
    op = scope.get("op")
    if op == "==":
        named = [scope.get("entity")]
    elif op == "in":
        named = [scope["entity"]] if "entity" in scope else list(scope.get("entities", [None]))
    else:
        return True  # "All", or a form this code does not know
    for entity in named:
        if not isinstance(entity, Mapping) or entity.get("type") != "Action":
            return True
        if entity.get("id") == action or (op == "in" and entity.get("id") in ancestors):
            return True
    return False


def _slice_by_action(
    policies: Mapping[str, Any], schema: cedarpy.Schema
) -> dict[str, cedarpy.PolicySet]:
    """Per action of the schema, the policy set without the policies it cannot reach.

    A policy whose action scope is `action == X`, `action in X` or `action in [X, ...]`
    where no X is the action or one of its groups can never be satisfied by a request
    for that action, and is not evaluated past its scope, so it never errors: leaving
    it out cannot change a decision, its reasons or its errors.
    """
    slices: dict[str, cedarpy.PolicySet] = {}
    for action, ancestors in sorted(_action_ancestors(schema).items()):
        kept = {
            policy_id: policy
            for policy_id, policy in policies.items()
            if _scope_can_match(policy["action"], action, ancestors)
        }
        document = {"staticPolicies": kept, "templates": {}, "templateLinks": []}
        slices[action] = cedarpy.PolicySet.from_json_str(json.dumps(document))
    return slices


@dataclass(frozen=True, slots=True)
class _Delta:
    """One schema-checked entity, as the JSON document Cedar adds per request."""

    json: str
    entity_type: str
    entity_id: str


def _sample_entities() -> list[dict[str, Any]]:
    """A principal with every optional attribute and one with none, and a record."""
    bare = PrincipalFacts(
        id="schema-check",
        role="analyst",
        organisation="Schema Check",
        level="federal",
        sectors=frozenset(),
        training_expires=None,
        nda_signed=None,
        contractor=False,
        status="active",
    )
    full = replace(
        bare, training_expires=datetime(2030, 1, 1, tzinfo=UTC), nda_signed=date(2026, 1, 1)
    )
    record = RecordFacts("PCII-2026-00000001", "received", "Energy", "TLP:AMBER", "a", "b")
    return [principal_entity(bare), principal_entity(full), record_entity(record)]


def _check_request_context(schema: cedarpy.Schema) -> None:
    """A request the vault makes (with and without an authority) passes `schema`.

    Decided against no policy at all, so that only the request itself is checked: a
    context type with another required attribute would fail every decision.

    Raises:
        ValueError: Cedar's reason.
    """
    nothing = cedarpy.PolicySet.from_json_str(
        json.dumps({"staticPolicies": {}, "templates": {}, "templateLinks": []})
    )
    [bare, _full, record] = _sample_entities()
    entities = cedarpy.Entities.from_json_str(json.dumps([bare, record]), schema)
    now = datetime(2030, 1, 1, tzinfo=UTC)
    for authority in (None, "sample exception"):
        context = RequestFacts(
            purpose="schema check",
            use="infrastructure-protection",
            authority=authority,
            emergency=False,
            now=now,
        )
        request = {
            "principal": bare["uid"],
            "action": {"type": "Action", "id": "retrieve"},
            "resource": record["uid"],
            "context": context_json(context),
        }
        result = cedarpy.is_authorized(request, nothing, entities, schema)
        errors = [str(e) for e in result.diagnostics.errors]
        if errors:
            raise ValueError("; ".join(errors))


def _validated_delta(entity: dict[str, Any], schema: cedarpy.Schema) -> _Delta:
    """Return `entity` as a Cedar entities JSON document, validated against `schema`.

    Raises:
        ValueError: the entity does not conform to `schema` (Cedar's message).
    """
    document = json.dumps([entity])
    cedarpy.Entities.from_json_str(document, schema)  # validate only; raises ValueError
    return _Delta(document, entity["uid"]["type"], entity["uid"]["id"])


class _Loader:
    """Collects every problem of a directory instead of stopping at the first."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.problems: list[PolicyProblem] = []
        self.files: list[tuple[str, bytes]] = []
        self.sources: dict[str, PolicySource] = {}
        self.policies_json: dict[str, Any] = {}

    def problem(self, file: str, line: int | None, message: str) -> None:
        self.problems.append(PolicyProblem(file, line, " ".join(message.split())))

    def read(self, path: Path) -> str | None:
        try:
            data = read_regular(path, _MAX_POLICY_FILE_BYTES)
        except (OSError, IntegrityError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) else "not a regular file"
            self.problem(path.name, None, f"cannot be read: {reason or exc}")
            return None
        if len(data) > _MAX_POLICY_FILE_BYTES:
            self.problem(path.name, None, f"larger than {_MAX_POLICY_FILE_BYTES >> 20} MiB")
            return None
        self.files.append((path.name, data))
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            self.problem(path.name, None, "not UTF-8 text")
            return None

    def load_schema(self) -> cedarpy.Schema | None:
        schemas = sorted(self.directory.glob("*.cedarschema"))
        if len(schemas) != 1:
            found = ", ".join(p.name for p in schemas) or "none"
            self.problem(self.directory.name, None, f"need exactly one *.cedarschema ({found})")
            for path in schemas:
                self.read(path)
            return None
        text = self.read(schemas[0])
        if text is None:
            return None
        try:
            return cedarpy.Schema.from_str(text)
        except ValueError as exc:
            self.problem(schemas[0].name, None, f"schema error: {exc}")
            return None

    def load_file(self, path: Path, schema: cedarpy.Schema | None) -> None:
        text = self.read(path)
        if text is None:
            return
        statements = [s for s in _split_statements(text) if s.text]
        if not statements:
            self.problem(path.name, None, "holds no policy")
        for statement in statements:
            self.load_statement(path.name, statement, schema)

    def load_statement(
        self, file: str, statement: _Statement, schema: cedarpy.Schema | None
    ) -> None:
        line = statement.line
        shape = _too_complex(statement.text)
        if shape is not None:
            # Cedar's parser recurses: deep enough, it crashes the process (seen here).
            self.problem(file, line, shape)
            return
        try:
            est = json.loads(cedarpy.policies_to_json_str(statement.text))
        except ValueError as exc:
            self.problem(file, line, f"parse error: {exc}")
            return
        except RecursionError:
            self.problem(file, line, "policy nested too deeply to read")
            return
        if est.get("templates"):
            self.problem(file, line, "templates (?principal/?resource) are not allowed")
            return
        (policy,) = est["staticPolicies"].values()
        annotations: dict[str, str] = policy.get("annotations") or {}
        policy_id = annotations.get("id")
        label = policy_id or "policy without @id"
        unknown = sorted(set(annotations) - _KNOWN_ANNOTATIONS)
        if unknown:
            self.problem(file, line, f"{label}: unknown annotation @{', @'.join(unknown)}")
        if policy_id is None:
            self.problem(file, line, "policy has no @id annotation")
        elif not _POLICY_ID.fullmatch(policy_id):
            self.problem(file, line, f"@id {policy_id!r} must be lower-case letters, digits, -")
            policy_id = None
        elif policy_id in self.sources:
            first = self.sources[policy_id]
            self.problem(
                file, line, f"duplicate @id {policy_id!r} (first at {first.file}:{first.line})"
            )
            policy_id = None
        obligations = self.obligations(file, line, label, policy["effect"], annotations)
        if schema is not None:
            result = cedarpy.validate_policies(statement.text, schema)
            for error in result.errors:
                self.problem(file, line, f"{label}: {_INTERNAL_ID.sub(label, error.error)}")
        if policy_id is not None:
            self.sources[policy_id] = PolicySource(
                policy_id=policy_id,
                effect=policy["effect"],
                file=file,
                line=line,
                comment=statement.comment,
                obligations=obligations,
                text=statement.text,
            )
            self.policies_json[policy_id] = policy

    def obligations(
        self, file: str, line: int, label: str, effect: str, annotations: Mapping[str, str]
    ) -> tuple[Obligation, ...]:
        value = annotations.get("obligations")
        if value is None:
            return ()
        if effect != "permit":
            self.problem(file, line, f"{label}: @obligations only belongs on a permit")
            return ()
        try:
            return parse_obligations(value)
        except ValueError as exc:
            self.problem(file, line, f"{label}: {exc}")
            return ()


@dataclass(frozen=True)
class EntityDirectory:
    """Principals and records parsed into one schema-checked Cedar entity set."""

    principals: Mapping[str, PrincipalFacts]
    records: Mapping[str, RecordFacts]
    entities: cedarpy.Entities = field(repr=False)

    def holds(self, principal: PrincipalFacts, resource: RecordFacts | None) -> bool:
        """Whether this directory has exactly these facts for the request's entities."""
        if self.principals.get(principal.id) != principal:
            return False
        return resource is None or self.records.get(resource.tracking_number) == resource


_ENTITY_READS = (".", "has", "getTag", "hasTag")


def _reads_only_request_entities(policies_json: Mapping[str, Any]) -> bool:
    """Whether every attribute read in the policies is of principal, resource or context.

    A read through another entity (`resource.submitter.role`, `User::"x".role`) would
    find that entity in a directory but not in a request's own entities, and could
    decide differently; such a policy set never uses a directory.
    """

    def base_allowed(node: Any) -> bool:  # noqa: ANN401 -- a Cedar JSON expression
        if isinstance(node, dict) and "Var" in node:
            return node["Var"] in {"principal", "resource", "context"}
        # A chain of reads is only a record access when it starts at the context.
        while isinstance(node, dict) and "." in node:
            node = node["."]["left"]
        return isinstance(node, dict) and node.get("Var") == "context"

    def walk(node: Any) -> bool:  # noqa: ANN401 -- a Cedar JSON expression
        if isinstance(node, dict):
            for key, value in node.items():
                reads_entity = key in _ENTITY_READS and isinstance(value, dict)
                if reads_entity and not base_allowed(value.get("left")):
                    return False
                if not walk(value):
                    return False
        elif isinstance(node, list):
            return all(walk(item) for item in node)
        return True

    return all(walk(policy.get("conditions", [])) for policy in policies_json.values())


@dataclass(frozen=True)
class PolicyEngine:
    """A loaded, validated policy set ready to decide requests."""

    directory: Path
    policy_set_hash: str
    policies: Mapping[str, PolicySource]
    files: tuple[tuple[str, bytes], ...] = field(repr=False, compare=False)
    _policy_set: cedarpy.PolicySet = field(repr=False)
    _schema: cedarpy.Schema = field(repr=False)
    _slices: Mapping[str, cedarpy.PolicySet] = field(repr=False)
    _vault: _Delta = field(repr=False)
    _request_entities_only: bool = field(repr=False)
    _principals: dict[PrincipalFacts, cedarpy.Entities] = field(
        repr=False, default_factory=dict, compare=False
    )
    _records: dict[RecordFacts, _Delta] = field(repr=False, default_factory=dict, compare=False)
    _obligations: dict[tuple[str, ...], tuple[str, ...]] = field(
        repr=False, default_factory=dict, compare=False
    )
    _decisions: dict[tuple[str, PrincipalFacts, RecordFacts | None, str], Decision] = field(
        repr=False, default_factory=dict, compare=False
    )

    @classmethod
    def load(cls, directory: Path) -> PolicyEngine:
        """Parse and validate every policy of `directory` against its schema.

        Args:
            directory: a directory with `*.cedar` files and one `*.cedarschema` file.

        Returns:
            The engine.

        Raises:
            PolicyLoadError: anything is wrong; lists every problem with file and line.
        """
        if not directory.is_dir():
            raise PolicyLoadError([PolicyProblem(str(directory), None, "not a directory")])
        loader = _Loader(directory)
        schema = loader.load_schema()
        paths = sorted(directory.glob("*.cedar"))
        if not paths:
            loader.problem(
                directory.name,
                None,
                "no *.cedar policy files: an empty policy set denies everything",
            )
        for path in paths:
            loader.load_file(path, schema)
        if loader.problems or schema is None:
            raise PolicyLoadError(loader.problems)
        document = {"staticPolicies": loader.policies_json, "templates": {}, "templateLinks": []}
        try:
            policy_set = cedarpy.PolicySet.from_json_str(json.dumps(document))
        except ValueError as exc:  # pragma: no cover - every policy parsed on its own
            raise PolicyLoadError([PolicyProblem(directory.name, None, str(exc))]) from exc
        try:
            # Every entity the vault will give Cedar must fit the schema, or each decision
            # would fail (an edited schema: a Vault with attributes, a User with more).
            vault = _validated_delta(vault_entity(), schema)
            for entity in _sample_entities():
                _validated_delta(entity, schema)
            slices = _slice_by_action(loader.policies_json, schema)
            _check_request_context(schema)
        except ValueError as exc:
            [schema_file] = sorted(directory.glob("*.cedarschema"))
            problem = (
                "the schema does not fit the entities and requests the vault gives Cedar "
                "(User, Record, Vault and the request context, as the shipped schema declares "
                f"them): {' '.join(str(exc).split())}"
            )
            raise PolicyLoadError([PolicyProblem(schema_file.name, None, problem)]) from exc
        return cls(
            directory=directory,
            policy_set_hash=_hash_files(loader.files),
            policies=MappingProxyType(dict(loader.sources)),
            files=tuple(sorted(loader.files)),
            _policy_set=policy_set,
            _schema=schema,
            _slices=MappingProxyType(slices),
            _vault=vault,
            _request_entities_only=_reads_only_request_entities(loader.policies_json),
        )

    def entity_directory(
        self, principals: Iterable[PrincipalFacts], records: Iterable[RecordFacts]
    ) -> EntityDirectory:
        """Parse and validate many principals and records once, for many decisions.

        Pass the result to `decide(..., directory=...)`: a request whose principal and
        record are in it, with exactly these facts, skips building its entities.

        Raises:
            ValueError: an entity does not match the schema.
        """
        by_id = {p.id: p for p in principals}
        by_number = {r.tracking_number: r for r in records}
        document = [principal_entity(p) for p in by_id.values()]
        document += [record_entity(r) for r in by_number.values()]
        document.append(vault_entity())
        entities = cedarpy.Entities.from_json_str(json.dumps(document), self._schema)
        return EntityDirectory(MappingProxyType(by_id), MappingProxyType(by_number), entities)

    def decide(
        self,
        principal: PrincipalFacts,
        action: str,
        resource: RecordFacts | None,
        context: RequestFacts,
        *,
        directory: EntityDirectory | None = None,
    ) -> Decision:
        """Decide whether `principal` may do `action` on `resource`.

        Args:
            principal: the requesting principal.
            action: a Cedar action id of the schema (e.g. "retrieve", "read-log").
            resource: the record, or None for actions on the vault itself.
            context: the request's purpose, use, authority, emergency flag and time.
            directory: pre-parsed entities (see `entity_directory`). Used only when it
                holds this principal and record with exactly these facts, and only when
                no policy reads an entity other than the request's principal and resource
                (then the extra entities in it cannot change a decision); otherwise the
                request's own entities are built as without it.

        Returns:
            The decision; a deny on any evaluation error, with the errors.
        """
        policy_set = self._slices.get(action, self._policy_set)
        try:
            # The whole input of the decision (see "Decide once" in the module docstring).
            context_document = context_json(context)
            key = (action, principal, resource, context_document)
            cached = self._decisions.get(key)
            if cached is not None:
                return cached
            if resource is None:
                resource_uid = {"type": self._vault.entity_type, "id": self._vault.entity_id}
            else:
                resource_uid = {"type": "Record", "id": resource.tracking_number}
            if (
                directory is not None
                and self._request_entities_only
                and directory.holds(principal, resource)
            ):
                entities = directory.entities
            else:
                delta = self._vault if resource is None else self._record(resource)
                entities = self._principal_entities(principal).with_added_json_str(delta.json)
            request = {
                "principal": {"type": "User", "id": principal.id},
                "action": {"type": "Action", "id": action},
                "resource": resource_uid,
                # A string: cedarpy passes it through instead of serialising a dict.
                "context": context_document,
            }
            result = cedarpy.is_authorized(request, policy_set, entities, self._schema)
        except Exception as exc:  # noqa: BLE001 -- fail closed on anything Cedar raises
            return self._deny((), (f"{type(exc).__name__}: {exc}",))
        decision = self._outcome(result)
        if decision.allowed and principal.status != "active":
            # The vault's own rule, whatever the policies permit: only an active
            # principal acts (the shipped set says so too, by this id).
            decision = self._deny((INACTIVE_PRINCIPAL_RULE,), ())
        if len(self._decisions) >= _DECISION_CACHE_SIZE:
            self._decisions.clear()
        self._decisions[key] = decision
        return decision

    def _outcome(self, result: cedarpy.AuthzResult) -> Decision:
        """The decision Cedar's answer stands for (default deny)."""
        diagnostics = result.diagnostics
        errors = tuple(str(e) for e in diagnostics.errors)
        reasons = tuple(sorted(diagnostics.reasons))
        outcome = result.decision
        if outcome is not cedarpy.Decision.Allow:
            return self._deny(reasons if outcome is cedarpy.Decision.Deny else (), errors)
        if errors:
            # Cedar skips an erroring policy; it might have been a forbid: deny.
            return self._deny((), errors)
        return Decision(
            allowed=True,
            decision="permit",
            policy_ids=reasons,
            obligations=self._obligations_of(reasons),
            errors=(),
            policy_set_hash=self.policy_set_hash,
        )

    def _principal_entities(self, principal: PrincipalFacts) -> cedarpy.Entities:
        """Return the parsed, schema-checked entity set holding only `principal`."""
        cached = self._principals.get(principal)
        if cached is None:
            if len(self._principals) >= _PRINCIPAL_CACHE_SIZE:
                self._principals.clear()
            cached = cedarpy.Entities.from_json_str(
                json.dumps([principal_entity(principal)]), self._schema
            )
            self._principals[principal] = cached
        return cached

    def _record(self, record: RecordFacts) -> _Delta:
        """Return the schema-checked entities JSON holding only `record`, and its uid."""
        cached = self._records.get(record)
        if cached is None:
            if len(self._records) >= _RECORD_CACHE_SIZE:
                self._records.clear()
            cached = _validated_delta(record_entity(record), self._schema)
            self._records[record] = cached
        return cached

    def _obligations_of(self, reasons: tuple[str, ...]) -> tuple[str, ...]:
        """Return the canonical union of the obligations of the permits `reasons`."""
        cached = self._obligations.get(reasons)
        if cached is None:
            obligations = canonical_obligations(
                o for reason in reasons for o in self.policies[reason].obligations
            )
            cached = tuple(o.value for o in obligations)
            self._obligations[reasons] = cached
        return cached

    def _deny(self, policy_ids: tuple[str, ...], errors: tuple[str, ...]) -> Decision:
        return Decision(
            allowed=False,
            decision="deny",
            policy_ids=policy_ids,
            obligations=(),
            errors=errors,
            policy_set_hash=self.policy_set_hash,
        )
