"""Authentication policies of `call: http` → an engine connection, or credentials from the data.

Secrets never enter Temporal: a policy that names a secret — `bearer: {use: crm}`, or
`token: ${ $secrets.crm.token }` — becomes the step's `connection`, and the worker's activity adds
the stored credentials (the connection's own type decides the scheme). A policy whose values come
from the workflow's data (`token: ${ .token }`) is evaluated in the workflow like any other value: the
data is already there. Digest, OAuth2 and OpenID Connect are not supported (E110).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from workflows.diagnostics import DataPath
from workflows.swf import model as m
from workflows.swf import unsupported as u
from workflows.swf.expressions import whole_expression

if TYPE_CHECKING:
    from workflows.swf.lower import _Lowering

_SECRET_VALUE = re.compile(r"\$secrets\s*\.\s*([A-Za-z0-9_-]+)(?:\s*\.\s*[A-Za-z_]\w*)?")
_REQUIRED = {"basic": ("username", "password"), "bearer": ("token",)}


@dataclass(frozen=True)
class Authentication:
    connection: str | None = None  # the connection whose stored credentials the activity adds
    inline: dict[str, dict[str, Any]] | None = None  # {"basic"|"bearer": {field: template}}


def lower_authentication(raw: Any, path: DataPath, lowering: _Lowering) -> Authentication | None:
    followed: list[str] = []
    while True:
        if not isinstance(raw, dict):
            lowering.report("E101", "an authentication policy must be a mapping", path)
            return None
        for scheme, construct in u.AUTHENTICATIONS.items():
            if scheme in raw:
                lowering.unsupported(construct, "an authentication policy", (*path, scheme))
                return None
        policy = lowering.validate(m.Authentication, raw, path)
        if policy is None:
            return None
        if policy.use is None:
            break
        definitions = lowering.use.authentications or {}
        if policy.use not in definitions or policy.use in followed:
            known = ", ".join(sorted(definitions)) or "none"
            problem = (
                "refers to itself"
                if policy.use in followed
                else f"is unknown (use.authentications defines: {known})"
            )
            lowering.report("E111", f"authentication '{policy.use}' {problem}", (*path, "use"))
            return None
        followed.append(policy.use)
        raw, path = definitions[policy.use], ("use", "authentications", policy.use)
    scheme = "basic" if policy.basic is not None else "bearer"
    config = policy.basic if policy.basic is not None else policy.bearer
    assert config is not None
    if config.use is not None:
        return Authentication(connection=config.use)
    values = {key: getattr(config, key) for key in _REQUIRED[scheme]}
    for key, value in values.items():
        if value is None:
            lowering.report(
                "E101", f"{scheme} authentication needs `{key}` (or `use: <connection>`)", (*path, scheme)
            )
            return None
    secret_names = {_secret_name(value) for value in values.values()}
    if secret_names != {None}:
        if None in secret_names or len(secret_names) > 1:
            lowering.report(
                "E205",
                "an authentication policy takes its credentials either all from one connection "
                "(`${ $secrets.<connection>.<field> }`) or all from the workflow's data",
                (*path, scheme),
            )
            return None
        return Authentication(connection=secret_names.pop())
    templates = {
        key: lowering.template(value, (*path, scheme, key), frozenset()) for key, value in values.items()
    }
    return Authentication(inline={scheme: templates})


def _secret_name(value: str) -> str | None:
    """The connection of a value that is exactly `${ $secrets.<name>[.<field>] }`; None otherwise
    (a value that uses `$secrets` in any other way is reported by the expression check)."""
    program = whole_expression(value)
    match = _SECRET_VALUE.fullmatch(program.strip()) if program else None
    return match.group(1) if match else None
