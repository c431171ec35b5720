"""Lowering Serverless Workflow documents to the plan, and what the compiler says about documents it
cannot run — no server needed."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from workflows.compiler import Compilation, compile_file, compile_source
from workflows.diagnostics import Diagnostic
from workflows.expressions import evaluate_template
from workflows.plan import Plan, StepKind
from workflows.source import parse_source
from workflows.swf import WorkflowCatalog, compile_swf
from workflows.swf.expressions import as_template

HEADER = "document: {dsl: '1.0.3', namespace: test, name: lowered, version: '1.0.0'}\n"


def compiled(body: str) -> Compilation:
    return compile_source(HEADER + body, "lowered.yaml")


def plan_of(body: str) -> Plan:
    compilation = compiled(body)
    assert compilation.ok and compilation.plan is not None, compilation.diagnostics
    return compilation.plan


def errors_of(body: str) -> list[Diagnostic]:
    compilation = compiled(body)
    assert not compilation.ok
    return compilation.errors


def test_every_supported_task_lowers_to_its_plan_kind_at_its_json_pointer() -> None:
    plan = plan_of(
        """
use:
  functions:
    greet: {set: {hello: '${ .name }'}}
do:
  - prepare: {set: {items: [1, 2]}}
  - route:
      switch:
        - many: {when: (.items | length) > 1, then: loop}
        - other: {then: exit}
  - loop:
      for: {each: item, in: .items, at: position}
      while: .stop != true
      do:
        - double: {set: {value: '${ $item + $item }'}}
  - both:
      fork:
        compete: true
        branches:
          - left: {wait: PT1S}
          - right: {call: http, with: {method: get, endpoint: 'https://api.example.com/items/{id}'}}
  - guarded:
      try:
        - fail: {raise: {error: {type: https://example.com/oops, status: 500}}}
      catch: {as: problem, do: [{note: {set: {seen: '${ $problem.status }'}}}]}
  - compute: {call: add, with: {a: 1, b: 2}}
  - hello: {call: greet, with: {name: ada}}
  - child: {run: {workflow: {namespace: test, name: elsewhere, version: '1.0.0'}}}
"""
    )
    assert plan.source_format == "swf" and plan.expression_mode == "swf" and plan.root.mode == "sequence"
    kinds = {step.path: step.kind for step in plan.walk()}
    assert kinds == {
        "do/0/prepare": StepKind.SET,
        "do/1/route": StepKind.SWITCH,
        "do/2/loop": StepKind.DO,
        "do/2/loop/do/0/double": StepKind.SET,
        "do/3/both": StepKind.FORK,
        "do/3/both/fork/branches/0/left": StepKind.DELAY,
        "do/3/both/fork/branches/1/right": StepKind.HTTP,
        "do/4/guarded": StepKind.TRY,
        "do/4/guarded/try/0/fail": StepKind.RAISE,
        "do/4/guarded/catch/do/0/note": StepKind.SET,
        "do/5/compute": StepKind.PYTHON,
        "do/6/hello": StepKind.DO,
        "do/6/hello/greet": StepKind.SET,
        "do/7/child": StepKind.CHILD,
    }
    loop = plan.root.step("loop")
    assert loop.for_each is not None
    assert (loop.for_each.items, loop.for_each.item_var, loop.for_each.index_var) == (
        ".items",
        "item",
        "position",
    )
    assert loop.for_each.while_ == ".stop != true" and loop.for_each.concurrency == 1
    assert [(c.name, c.when, c.then) for c in plan.root.step("route").cases] == [
        ("many", "(.items | length) > 1", "loop"),
        ("other", None, "exit"),
    ]
    assert plan.root.step("both").compete
    guarded = plan.root.step("guarded")
    assert guarded.catch is not None and guarded.catch.as_ == "problem" and guarded.catch.retry is None
    assert plan.root.step("compute").with_ == {"function": "add", "args": {"a": 1, "b": 2}}
    assert plan.root.step("hello").with_ == {"arguments": {"name": "ada"}}


def test_bare_and_wrapped_expressions_lower_to_the_same_program() -> None:
    bare = plan_of("do:\n  - t: {if: .go, set: {a: 1}, input: {from: .x}, output: {as: .a}}\n").root.steps[0]
    wrapped = plan_of(
        "do:\n  - t: {if: '${ .go }', set: {a: 1}, input: {from: '${ .x }'}, output: {as: '${ .a }'}}\n"
    ).root.steps[0]
    assert (bare.if_, bare.input_from, bare.output_as) == (".go", "${ .x }", "${ .a }")
    assert (wrapped.if_, wrapped.input_from, wrapped.output_as) == (bare.if_, bare.input_from, bare.output_as)


def test_strict_mode_keeps_text_around_dollar_braces_literal_and_loose_mode_interpolates() -> None:
    text = "id-${ .n }"
    assert evaluate_template(as_template(text, "strict"), {"n": 7}) == "id-${ .n }"
    assert evaluate_template(as_template(text, "loose"), {"n": 7}) == "id-7"
    assert evaluate_template(as_template("${ .n }", "strict"), {"n": 7}) == 7
    loose = plan_of("evaluate: {mode: loose}\ndo:\n  - t: {set: {label: 'n=${ .n }'}}\n")
    assert loose.root.steps[0].with_ == {"set": {"label": "n=${ .n }"}}


@pytest.mark.parametrize(
    ("body", "construct", "line", "hint"),
    [
        ("do:\n  - e: {emit: {event: {with: {source: x, type: y}}}}\n", "`emit` tasks", 3, "signals"),
        ("do:\n  - l: {listen: {to: {any: []}}}\n", "`listen` tasks", 3, "signals"),
        ("do:\n  - g: {call: grpc, with: {}}\n", "`call: grpc`", 3, "call: http"),
        ("do:\n  - s: {run: {script: {language: js, code: x}}}\n", "`run: script`", 3, "sandbox"),
        ("do:\n  - c: {run: {container: {image: alpine}}}\n", "`run: container`", 3, "call: http"),
        ("do:\n  - f: {call: 'log:1.0.0@default'}\n", "cataloged functions", 3, "use.functions"),
        ("schedule: {cron: '0 0 * * *'}\ndo:\n  - a: {set: {x: 1}}\n", "`schedule`", 2, "Temporal schedule"),
        (
            "do:\n  - h:\n      call: http\n      with:\n        method: get\n        endpoint:\n"
            "          uri: https://x.example\n          authentication: {oauth2: {authority: https://a.example}}\n",
            "`oauth2` authentication",
            9,
            "connection",
        ),
    ],
)
def test_an_unsupported_construct_is_named_with_its_line_and_a_hint(
    body: str, construct: str, line: int, hint: str
) -> None:
    (error,) = errors_of(body)
    assert error.code == "E110"
    assert error.message.startswith(f"not supported: {construct}")
    assert error.line == line and hint in (error.hint or "")


def test_then_must_name_a_task_of_the_same_list() -> None:
    errors = errors_of(
        "do:\n  - a: {set: {x: 1}, then: finsh}\n  - finish: {do: [{inner: {set: {y: 1}, then: a}}]}\n"
    )
    assert [(e.code, e.message, e.line) for e in errors] == [
        ("E103", "`then` names unknown task 'finsh'", 3),
        ("E103", "`then` names unknown task 'a'", 4),
    ]
    assert "did you mean 'finish'?" in (errors[0].hint or "")


def test_references_to_reusable_components_must_exist() -> None:
    errors = errors_of(
        """
use:
  retries: {quick: {delay: {seconds: 1}}}
do:
  - a: {raise: {error: missingError}}
  - b: {try: [{c: {set: {x: 1}}}], catch: {retry: slow}}
  - d: {set: {x: 1}, timeout: never}
  - e: {call: http, with: {method: get, endpoint: {uri: 'https://x.example', authentication: {use: nobody}}}}
"""
    )
    assert [(e.code, e.message) for e in errors] == [
        ("E111", "unknown error 'missingError' (use.errors defines: none)"),
        ("E111", "unknown retry policy 'slow' (use.retries defines: quick)"),
        ("E111", "unknown timeout 'never' (use.timeouts defines: none)"),
        ("E111", "authentication 'nobody' is unknown (use.authentications defines: none)"),
    ]


def test_expressions_are_checked_before_a_run() -> None:
    errors = errors_of(
        """
do:
  - syntax: {set: {x: '${ .a | }'}}
  - clock: {set: {x: '${ now }'}}
  - secret: {set: {x: '${ $secrets.crm.token }'}}
  - unknown: {set: {x: '${ $item }'}}
  - looped:
      for: {in: .list}
      do:
        - fine: {set: {x: '${ $item + $index }'}}
"""
    )
    assert [(e.code, e.path) for e in errors] == [
        ("E201", "/do/0/syntax/set/x"),
        ("E202", "/do/1/clock/set/x"),
        ("E205", "/do/2/secret/set/x"),
        ("E201", "/do/3/unknown/set/x"),
    ]
    assert "$item is not defined" in errors[3].message and "$context" in (errors[3].hint or "")


def test_secrets_in_an_authentication_policy_become_the_steps_connection() -> None:
    plan = plan_of(
        """
use:
  secrets: [crm]
  authentications:
    viaSecret: {bearer: {use: billing}}
do:
  - a: {call: http, with: {method: get, endpoint: {uri: 'https://x.example', authentication: {bearer: {token: '${ $secrets.crm.token }'}}}}}
  - b: {call: http, with: {method: get, endpoint: {uri: 'https://x.example', authentication: {use: viaSecret}}}}
  - c: {call: http, with: {method: get, endpoint: {uri: 'https://x.example', authentication: {basic: {username: '${ .u }', password: '${ .p }'}}}}}
"""
    )
    a, b, c = plan.root.steps
    assert (a.connection, b.connection, c.connection) == ("crm", "billing", None)
    assert "authentication" not in a.with_ and "authentication" not in b.with_
    assert c.with_["authentication"] == {"basic": {"username": "${ .u }", "password": "${ .p }"}}
    assert plan.connections == ("crm", "billing")
    (mixed,) = errors_of(
        "do:\n  - a: {call: http, with: {method: get, endpoint: {uri: 'https://x.example', "
        "authentication: {basic: {username: bob, password: '${ $secrets.crm.password }'}}}}}\n"
    )
    assert mixed.code == "E205"


def test_a_catch_retry_policy_lowers_to_a_retry_spec() -> None:
    step = plan_of(
        """
do:
  - t:
      try: [{c: {set: {x: 1}}}]
      catch:
        retry:
          when: .status >= 500
          delay: {seconds: 2}
          backoff: {linear: {}}
          limit: {attempt: {count: 4, duration: {seconds: 10}}, duration: {minutes: 1}}
          jitter: {from: {milliseconds: 100}, to: {milliseconds: 300}}
"""
    ).root.steps[0]
    assert step.catch is not None and step.catch.retry is not None
    retry = step.catch.retry
    assert (retry.max_attempts, retry.initial_interval_s, retry.linear, retry.backoff) == (4, 2.0, True, 1.0)
    assert (retry.when, retry.max_elapsed_s, retry.attempt_timeout_s, retry.jitter_s) == (
        ".status >= 500",
        60.0,
        10.0,
        (0.1, 0.3),
    )


def test_run_workflow_embeds_the_child_plan_found_in_the_catalog_or_warns() -> None:
    body = "do:\n  - c: {run: {workflow: {namespace: test, name: child, version: latest, input: {n: '${ .n }'}}}}\n"
    warned = compiled(body)
    assert warned.ok and [(d.code, d.severity) for d in warned.diagnostics] == [("W110", "warning")]
    catalog = WorkflowCatalog()
    for version in ("1.2.0", "1.10.0"):
        child = f"document: {{dsl: '1.0.3', namespace: test, name: child, version: '{version}'}}\n"
        compilation = compile_source(child + f"do:\n  - v: {{set: {{v: '{version}'}}}}\n", "child.yaml")
        assert compilation.plan is not None
        catalog.add(compilation.plan)
    source, diagnostics = parse_source(HEADER + body)
    assert source is not None
    plan = compile_swf(source.data, source.positions, diagnostics, catalog=catalog)
    assert plan is not None and diagnostics == []
    embedded = plan.root.steps[0].with_["plan"]
    assert embedded["document"]["document"]["version"] == "1.10.0"  # latest: the highest version
    assert plan.root.steps[0].with_["input"] == {"n": "${ .n }"}


def test_an_invalid_task_is_reported_and_the_others_are_still_checked() -> None:
    errors = errors_of(
        "do:\n  - a: {set: {}}\n  - b: {wait: {hours: -1}}\n  - c: {nothing: 1}\n  - d: {switch: []}\n"
    )
    assert [e.path for e in errors] == ["/do/0/a/set", "/do/1/b/wait", "/do/2/c", "/do/3/d/switch"]
    assert errors[1].message == (
        "`do[1].b.wait` should be a duration like {seconds: 30} (hours should be greater than or equal to 0), "
        "found a mapping"
    )


def test_fields_added_for_serverless_workflow_leave_native_plan_hashes_unchanged() -> None:
    plan = compile_file(Path(__file__).resolve().parents[2] / "examples" / "orders.yaml").plan
    assert plan is not None
    dumped = plan.model_dump(
        mode="json", by_alias=True, exclude={"hash", "input_from", "output_schema", "document"}
    )
    for step in dumped["root"]["steps"]:
        step.pop("schemas")
        for spec in filter(None, (step.get("retry"),)):
            for name in ("linear", "when", "except_when", "max_elapsed_s", "attempt_timeout_s", "jitter_s"):
                spec.pop(name)
    canonical = json.dumps(dumped, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    assert plan.hash == "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
