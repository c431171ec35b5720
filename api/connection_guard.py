"""Least privilege around connections: only an admin may change what a step bound to a connection
sends, or which stored connection a run uses.

An operator may run, debug and recover executions, but a connection holds an admin's credentials,
so these are refused with a 403 for anyone below admin:
- a debugger edit (any variable, or the input) while the execution is paused at a step bound to a
  connection: the step is about to send that data with those credentials;
- a recovery `retry` of such a step with an edited `input`;
- a run that maps a declared connection to another stored one (`connections`, also from a preset).
Edits elsewhere can still flow into a later step's URL, as run parameters always could; what keeps
the credentials home then is their binding to the connection's origins
(`activities/connection_scope.py`), enforced by the worker whatever the URL.
"""

from __future__ import annotations

from temporalio.client import Client

from api.errors import Problem
from api.routes.executions import _describe, _start_input
from rte.store.api_keys import ApiKeyInfo, Role


def is_admin(key: ApiKeyInfo) -> bool:
    return key.role.allows(Role.ADMIN)


async def bound_connection(client: Client, execution_id: str, step: str) -> str | None:
    """The connection the execution's plan binds `step` (a path or an id) to, if any."""
    description = await _describe(client, execution_id)
    run_input = await _start_input(client, execution_id, description.run_id or "")
    for planned in run_input.plan.walk():
        if step in (planned.path, planned.id) and planned.connection:
            return planned.connection
    return None


def refused(key: ApiKeyInfo, action: str, step: str, connection: str) -> Problem:
    return Problem(
        403,
        "Forbidden",
        f"{action} step '{step}', which is bound to connection '{connection}', needs the admin role "
        f"(the data it sends goes out with that connection's credentials); the key '{key.name}' is "
        f"{key.role.value}",
        rule="connection_edit",
        step=step,
        connection=connection,
    )


def refuse_connection_swap(key: ApiKeyInfo, declared: tuple[str, ...], chosen: dict[str, str]) -> None:
    """403 when a non-admin maps a declared connection to another stored one."""
    swapped = {name: target for name, target in chosen.items() if name in declared and target != name}
    if swapped and not is_admin(key):
        shown = ", ".join(f"'{name}' → '{target}'" for name, target in sorted(swapped.items()))
        raise Problem(
            403,
            "Forbidden",
            f"using another stored connection ({shown}) needs the admin role: it changes whose "
            f"credentials the run sends; the key '{key.name}' is {key.role.value}",
            rule="connection_swap",
        )
