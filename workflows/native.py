"""The native definition format's checks and its lowering to the plan.

`NativeCompiler` runs over one parsed document (workflows/source.py); the pipeline in
workflows/compiler.py calls its stages in order and times them:

- schema: the pydantic models of workflows/definition.py, the `inputs` JSON Schema;
- references: unique step ids, `needs`, switch targets, kind parameters, connections, durations;
- expressions: every `${ }` checked by workflows/expressions.py (syntax, forbidden builtins) and the
  steps each one reads, which must be upstream;
- graph: cycles, steps that can never run, outputs nobody reads;
- lower: the Plan.

After a schema error the analysis goes on with whatever validated, so one compile lists as many
independent problems as it can.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Iterator
from typing import Any

from jsonschema import Draft202012Validator
from pydantic import ValidationError

from rte.errors import ExpressionError
from workflows.definition import (
    KINDS,
    LOCAL_ACTIVITY_MAX_TIMEOUT_S,
    SAFE_HTTP_METHODS,
    StepDefinition,
    SwitchParameters,
    WorkflowDefinition,
)
from workflows.diagnostics import (
    DataPath,
    Diagnostic,
    make_diagnostic,
    validation_diagnostics,
)
from workflows.durations import parse_duration
from workflows.expressions import (
    check_program,
    evaluate,
    expression_problems,
    referenced_steps,
    scan,
    split_template,
    strip_expression,
    truthy,
)
from workflows.graph import (
    DEFAULT_BRANCH,
    Gate,
    Graph,
    Upstream,
    find_cycles,
    possible_branches,
    strongly_connected,
    switch_gates,
    topological_levels,
)
from workflows.params import violation_message
from workflows.plan import ForEachSpec, Plan, PlanBlock, PlanStep, RetrySpec, StepKind, SwitchCase
from workflows.source import Source, SourceMap

DEFAULT_VERSION = "0"
# Words a switch's `then` means something else by in sequence blocks (see workflows/plan.py).
_RESERVED_TARGETS = frozenset({"continue", "exit", "end"})
_DASHED_STEP = re.compile(r"\.steps\s*\.\s*([A-Za-z_][A-Za-z0-9_]*(?:-[A-Za-z0-9_]+)+)")

_Expression = tuple[DataPath, str, bool]  # where, the jq program, whether it reads the native scope


class NativeCompiler:
    """The native format's checks and lowering over one parsed document.

    The pipeline (workflows/compiler.py) calls the stages in order and times them: `check_schema`,
    then — when a definition came of it — `check_references`, `check_expressions`, `check_graph`,
    and `lower` when no stage reported an error. Each stage appends to `diagnostics`.
    """

    def __init__(self, source: Source, diagnostics: list[Diagnostic]) -> None:
        self.data = source.data
        self.positions: SourceMap = source.positions
        self.diagnostics = diagnostics
        self.definition: WorkflowDefinition | None = None
        self.steps: list[tuple[int, StepDefinition]] = []  # (index in the document, step); ids unique
        self.known_ids: set[str] = set()  # includes steps that failed validation: no knock-on errors
        self.switches: dict[str, SwitchParameters] = {}
        self.gates: dict[str, list[Gate]] = {}
        self.graph = Graph.build(())
        self.upstream: Upstream | None = None
        self.edge_paths: dict[tuple[str, str], DataPath] = {}
        self.reads: dict[str, list[str]] = {}
        self.output_reads: set[str] | None = set()  # None: `outputs` reads `.steps` whole
        self.seconds: dict[DataPath, float] = {}
        self.components: list[list[str]] = []
        self.steps_by_id: dict[str, StepDefinition] = {}
        self.mentioned: set[str] = set()  # step ids any expression names, valid or not

    def report(
        self, code: str, message: str, path: DataPath, hint: str | None = None, *, at_key: bool = False
    ) -> None:
        position = self.positions.locate(path, at_key=at_key)
        self.diagnostics.append(make_diagnostic(code, message, path, position, hint))

    # schema --------------------------------------------------------------------------------------

    def check_schema(self) -> None:
        try:
            self.definition = WorkflowDefinition.model_validate(self.data)
            self.steps = list(enumerate(self.definition.steps))
        except ValidationError as error:
            self.diagnostics.extend(
                validation_diagnostics(error, self.data, self.positions, WorkflowDefinition)
            )
            self._keep_valid_steps(error)
        self.known_ids |= {step.id for _, step in self.steps}
        if self.definition is not None:
            self._check_input_schema(self.definition.inputs)

    def _keep_valid_steps(self, error: ValidationError) -> None:
        """After a schema error, go on with what is valid — the steps that validate, the top-level
        fields without errors — so that one compile reports as much as it can."""
        raw_steps = self.data.get("steps")
        if not isinstance(raw_steps, list):
            return
        valid: list[tuple[int, StepDefinition]] = []
        for index, raw in enumerate(raw_steps):
            if isinstance(raw, dict) and isinstance(raw.get("id"), str):
                self.known_ids.add(raw["id"])
            try:
                valid.append((index, StepDefinition.model_validate(raw)))
            except ValidationError:
                continue
        wrong_fields = {
            item["loc"][0] for item in error.errors() if item["loc"] and item["loc"][0] != "steps"
        }
        partial = {key: value for key, value in self.data.items() if key not in wrong_fields}
        partial["id"] = partial.get("id", "invalid")  # only names plan paths, and no plan comes of this
        partial["steps"] = [raw_steps[index] for index, _ in valid]
        try:
            self.definition = WorkflowDefinition.model_validate(partial)
        except ValidationError:
            return  # e.g. no valid step left: nothing sound to analyse
        self.steps = valid

    def _check_input_schema(self, schema: dict[str, Any]) -> None:
        validator = Draft202012Validator(Draft202012Validator.META_SCHEMA)
        problems = sorted(validator.iter_errors(schema), key=lambda e: list(map(str, e.absolute_path)))
        for problem in problems:
            path = ("inputs", *problem.absolute_path)
            self.report("E101", f"`inputs` is not a valid JSON Schema: {problem.message}", path)
        if problems:
            return
        if schema.get("type") != "object":
            self.report(
                "E101",
                "`inputs` must be a JSON Schema of type object (the run parameters by name)",
                ("inputs",),
                "start it with `type: object` and list the parameters under `properties`",
            )
            return
        for name, property_schema in (schema.get("properties") or {}).items():
            if isinstance(property_schema, dict) and "default" in property_schema:
                wrong = next(
                    Draft202012Validator(property_schema).iter_errors(property_schema["default"]), None
                )
                if wrong is not None:
                    self.report(
                        "E101",
                        f"the default of input '{name}' does not match its own schema: {violation_message(wrong)}",
                        ("inputs", "properties", name, "default"),
                    )

    # references ----------------------------------------------------------------------------------

    def check_references(self) -> None:
        definition = self.definition
        assert definition is not None
        first_index: dict[str, int] = {}
        unique: list[tuple[int, StepDefinition]] = []
        for index, step in self.steps:
            if step.id in first_index:
                line = (self.positions.value(("steps", first_index[step.id], "id")) or (None,))[0]
                where = f" (first defined on line {line})" if line else ""
                self.report(
                    "E102",
                    f"duplicate step id '{step.id}'{where}",
                    ("steps", index, "id"),
                    "give every step its own id",
                )
                continue
            first_index[step.id] = index
            unique.append((index, step))
        self.steps = unique
        self.steps_by_id = {step.id: step for _, step in unique}
        declared = set(definition.connections)
        for index, step in self.steps:
            base: DataPath = ("steps", index)
            self._check_parameters(step, base)
            self._check_connection(step, base, declared)
            self._check_local(step, base)
            self._check_durations(step, base)
            for position, upstream in enumerate(step.needs):
                self._check_step_reference(upstream, (*base, "needs", position), f"step '{step.id}' needs")
        if definition.timeout is not None:
            self._duration(definition.timeout, ("timeout",), positive=True)
        self._build_graph()

    def _check_step_reference(self, target: str, path: DataPath, what: str) -> None:
        if target not in self.known_ids:
            self.report("E103", f"{what} unknown step '{target}'", path, self._did_you_mean(target))

    def _did_you_mean(self, target: str) -> str | None:
        close = difflib.get_close_matches(target, sorted(self.known_ids), n=1)
        return f"did you mean '{close[0]}'?" if close else None

    def _check_parameters(self, step: StepDefinition, base: DataPath) -> None:
        spec = KINDS[step.kind]
        parameters = step.with_
        missing = [key for key in spec.required if key not in parameters]
        if spec.one_of and not any(key in parameters for key in spec.one_of):
            missing.append(" or ".join(spec.one_of))
        for key in missing:
            self.report(
                "E105",
                f"step '{step.id}' ({step.kind}) is missing the parameter `with.{key}`",
                (*base, "with") if "with" in self.data["steps"][base[1]] else (*base, "kind"),
                f"{step.kind} takes: {', '.join(spec.known_keys)}",
            )
        for key in spec.text:
            if key in parameters and not isinstance(parameters[key], str):
                self.report(
                    "E105",
                    f"step '{step.id}' ({step.kind}): `with.{key}` must be text, found {json.dumps(parameters[key])}",
                    (*base, "with", key),
                )
        if not spec.any_keys:
            for key in parameters:
                if key not in spec.known_keys:
                    self.report(
                        "W302",
                        f"step '{step.id}' ({step.kind}) does not use the parameter `with.{key}`",
                        (*base, "with", key),
                        _suggestion(key, list(spec.known_keys)),
                        at_key=True,
                    )
        if step.kind == "switch" and "cases" in parameters:
            self._check_switch(step, base)

    def _check_switch(self, step: StepDefinition, base: DataPath) -> None:
        path = (*base, "with")
        try:
            parameters = SwitchParameters.model_validate(step.with_)
        except ValidationError as error:
            self.diagnostics.extend(
                validation_diagnostics(error, self.data, self.positions, SwitchParameters, path, "E105")
            )
            return
        seen: set[str] = set()
        for number, case in enumerate(parameters.cases):
            case_path = (*path, "cases", number)
            if case.name in seen or case.name == DEFAULT_BRANCH:
                why = "is reserved for the default branch" if case.name == DEFAULT_BRANCH else "is used twice"
                self.report(
                    "E105", f"switch '{step.id}': case name '{case.name}' {why}", (*case_path, "name")
                )
            seen.add(case.name)
            for position, target in enumerate(case.then):
                target_path = (*case_path, "then", position)
                self._check_step_reference(
                    target, target_path, f"switch '{step.id}' case '{case.name}' names"
                )
        for position, target in enumerate(parameters.default):
            target_path = (*path, "default", position)
            self._check_step_reference(target, target_path, f"switch '{step.id}' default names")
        self.switches[step.id] = parameters

    def _check_local(self, step: StepDefinition, base: DataPath) -> None:
        if not step.local:
            return
        if not KINDS[step.kind].activity:
            self.report(
                "E105",
                f"step '{step.id}' ({step.kind}) does not run as an activity: `local` does not apply",
                (*base, "local"),
                "remove `local`; only http, ai, python and script steps run as activities",
                at_key=True,
            )
        elif step.for_each is not None:
            self.report(
                "W303",
                f"`local` has no effect on step '{step.id}': for_each items always run as regular activities",
                (*base, "local"),
                "remove `local`",
                at_key=True,
            )

    def _check_connection(self, step: StepDefinition, base: DataPath, declared: set[str]) -> None:
        spec = KINDS[step.kind]
        if step.connection is None:
            if spec.connection == "required":
                self.report(
                    "E105",
                    f"step '{step.id}' ({step.kind}) needs a `connection`",
                    (*base, "kind"),
                    "add `connection: <id>` and list the id under the top-level `connections`",
                )
            return
        if spec.connection == "none":
            self.report(
                "E105",
                f"step '{step.id}' ({step.kind}) does not use a connection",
                (*base, "connection"),
                "remove `connection`",
                at_key=True,
            )
        elif step.connection not in declared:
            self.report(
                "E106",
                f"step '{step.id}' uses connection '{step.connection}', which is not declared in `connections`",
                (*base, "connection"),
                f"add '{step.connection}' to the top-level `connections` list",
            )

    def _check_durations(self, step: StepDefinition, base: DataPath) -> None:
        if step.timeout is not None:
            self._duration(step.timeout, (*base, "timeout"), positive=True)
        if step.retry is not None:
            self._duration(step.retry.initial_interval, (*base, "retry", "initial_interval"), positive=True)
            self._duration(step.retry.max_interval, (*base, "retry", "max_interval"), positive=True)
        for key in KINDS[step.kind].durations:
            value = step.with_.get(key)
            if value is not None and not _is_template(value):
                self._duration(value, (*base, "with", key), positive=key != "duration")
        timeout_s = step.with_.get("timeout_s")
        positive = _is_number(timeout_s) and timeout_s > 0
        if timeout_s is not None and not _is_template(timeout_s) and not positive:
            self.report(
                "E107",
                f"`with.timeout_s` must be a positive number of seconds, found {json.dumps(timeout_s)}",
                (*base, "with", "timeout_s"),
            )

    def _duration(self, value: Any, path: DataPath, *, positive: bool) -> None:
        try:
            seconds = parse_duration(value)
        except ValueError as error:
            self.report("E107", str(error), path)
            return
        if positive and seconds == 0:
            self.report("E107", f"the duration {json.dumps(value)} must be longer than zero", path)
            return
        self.seconds[path] = seconds

    def _build_graph(self) -> None:
        self.gates = switch_gates(self.switches)
        nodes: list[tuple[str, list[str]]] = []
        index_of = {step.id: index for index, step in self.steps}
        for index, step in self.steps:
            upstream: list[str] = []
            for position, need in enumerate(step.needs):
                upstream.append(need)
                self.edge_paths.setdefault((step.id, need), ("steps", index, "needs", position))
            for gate in self.gates.get(step.id, []):
                upstream.append(gate.switch)
                self.edge_paths.setdefault((step.id, gate.switch), self._gate_path(index_of, gate, step.id))
            nodes.append((step.id, upstream))
        self._check_gates(index_of)
        self.graph = Graph.build(nodes)
        self.components = strongly_connected(self.graph)
        self.upstream = Upstream(self.graph, self.components)

    def _check_gates(self, index_of: dict[str, int]) -> None:
        """The interpreter lets one switch decide whether a step runs, and keeps a few target names."""
        for step_id, gates in self.gates.items():
            if step_id not in index_of:
                continue  # an unknown target, already reported
            if len(gates) > 1:
                switches = " and ".join(f"'{gate.switch}'" for gate in gates)
                self.report(
                    "E105",
                    f"step '{step_id}' is named by two switches ({switches}); one switch at most may gate a step",
                    self._gate_path(index_of, gates[1], step_id),
                    "chain them: let the second switch be gated by the first",
                )
            if step_id in _RESERVED_TARGETS:
                self.report(
                    "E105",
                    f"a switch cannot name a step called '{step_id}': the name is reserved",
                    self._gate_path(index_of, gates[0], step_id),
                    "rename the step",
                )

    def _gate_path(self, index_of: dict[str, int], gate: Gate, step_id: str) -> DataPath:
        parameters = self.switches[gate.switch]
        base = ("steps", index_of[gate.switch], "with")
        for number, case in enumerate(parameters.cases):
            if step_id in case.then:
                return (*base, "cases", number, "then", case.then.index(step_id))
        return (*base, "default", parameters.default.index(step_id))

    # expressions ---------------------------------------------------------------------------------

    def check_expressions(self) -> None:
        definition = self.definition
        assert definition is not None and self.upstream is not None
        found: list[tuple[str | None, DataPath, str, bool]] = []  # (step id or None for outputs, …)
        for index, step in self.steps:
            found.extend(
                (step.id, *expression) for expression in self._expressions_of(step, ("steps", index))
            )
        found.extend(
            (None, path, program, True) for path, program in self._programs(definition.outputs, ("outputs",))
        )
        problems = expression_problems([program for _, _, program, _ in found])
        reads: dict[str, set[str]] = {step.id: set() for _, step in self.steps}
        reads_all: set[str] = set()
        for (step_id, path, program, in_scope), program_problems in zip(found, problems, strict=True):
            for problem in program_problems:
                # A dashed step id is the likeliest cause of an E201 and the hint names the step.
                dashed = self._dashed_id_hint(program) if problem.code == "E201" else None
                hint = dashed or problem.hint
                self.report(problem.code, _problem_message(problem.message, program), path, hint)
            if not in_scope:
                continue
            named = referenced_steps(program)
            self.mentioned |= named or set()  # even a wrong read is not an "unused output"
            if program_problems:
                self.mentioned |= {match.group(1) for match in _DASHED_STEP.finditer(program)}
                continue
            if step_id is None:
                self._record_output_reads(named, path)
            elif named is None:
                reads_all.add(step_id)
            else:
                reads[step_id].update(
                    target for target in sorted(named) if self._check_read(step_id, target, path)
                )
        for _, step in self.steps:
            if step.id in reads_all:
                self.reads[step.id] = self.upstream.of(step.id)
            else:
                self.reads[step.id] = sorted(reads[step.id], key=self.graph.position.__getitem__)

    def _dashed_id_hint(self, program: str) -> str | None:
        """jq reads `.steps.fetch-orders` as `.steps.fetch - orders`: name the id the user meant."""
        for match in _DASHED_STEP.finditer(program):
            if match.group(1) in self.known_ids:
                return f'step ids with "-" are read as .steps["{match.group(1)}"]'
        return None

    def _record_output_reads(self, named: set[str] | None, path: DataPath) -> None:
        if named is None:
            self.output_reads = None
            return
        for target in sorted(named):
            if target not in self.known_ids:
                self.report(
                    "E203", f"`outputs` reads unknown step '{target}'", path, self._did_you_mean(target)
                )
            elif self.output_reads is not None:
                self.output_reads.add(target)

    def _expressions_of(self, step: StepDefinition, base: DataPath) -> Iterator[_Expression]:
        with_path = (*base, "with")
        if step.kind == "switch":
            for number, case in enumerate(step.with_.get("cases") or []):
                when = case.get("when") if isinstance(case, dict) else None
                if isinstance(when, str):
                    yield from self._single((*with_path, "cases", number, "when"), when, True)
        elif step.kind == "transform":
            # Without `input` the program reads the step's scope itself.
            has_input = "input" in step.with_
            yield from self._templates(step.with_.get("input"), (*with_path, "input"))
            if isinstance(step.with_.get("jq"), str):
                yield from self._single((*with_path, "jq"), step.with_["jq"], not has_input)
        else:
            yield from self._templates(step.with_, with_path)
        if isinstance(step.if_, str):
            yield from self._single((*base, "if"), step.if_, True)
        if step.for_each is not None:
            items_path = (*base, "for_each", "items")
            if isinstance(step.for_each.items, str):
                yield from self._single(items_path, step.for_each.items, True)
            elif any(True for _ in self._programs(step.for_each.items, items_path)):
                self.report(
                    "E201",
                    "a literal `for_each.items` list cannot hold ${ } expressions",
                    items_path,
                    'build the list in one expression, e.g. items: "${ [.inputs.a, .inputs.b] }"',
                )

    def _templates(self, template: Any, path: DataPath) -> Iterator[_Expression]:
        for program_path, program in self._programs(template, path):
            yield program_path, program, True

    def _single(self, path: DataPath, value: str, in_scope: bool) -> Iterator[_Expression]:
        try:
            yield path, strip_expression(value), in_scope
        except ExpressionError as error:
            self.report("E201", error.message, path, "write the whole value as one ${ … } expression")

    def _programs(self, template: Any, path: DataPath) -> Iterator[tuple[DataPath, str]]:
        """Every `${ }` program in a template; a malformed template is reported where it is."""
        if isinstance(template, str):
            try:
                parts = split_template(template)
            except ExpressionError as error:
                self.report("E201", error.message, path, _TEMPLATE_HINT)
                return
            for part in parts or ():
                if part.is_expression:
                    yield path, part.text
        elif isinstance(template, dict):
            for key, value in template.items():
                yield from self._programs(value, (*path, key))
        elif isinstance(template, list):
            for index, value in enumerate(template):
                yield from self._programs(value, (*path, index))

    def _check_read(self, step_id: str, target: str, path: DataPath) -> bool:
        assert self.upstream is not None
        if target not in self.known_ids:
            self.report(
                "E203", f"step '{step_id}' reads unknown step '{target}'", path, self._did_you_mean(target)
            )
            return False
        if target == step_id:
            self.report(
                "E204",
                f"step '{step_id}' reads its own output",
                path,
                "a step's expressions see only the steps that finished before it",
            )
            return False
        if target in self.graph.needs and not self.upstream.contains(step_id, target):
            self.report(
                "E204",
                f"step '{step_id}' reads step '{target}', which is not upstream of it",
                path,
                f"add '{target}' to needs",
            )
            return False
        return target in self.graph.needs

    # graph ---------------------------------------------------------------------------------------

    def check_graph(self) -> None:
        in_cycle: set[str] = set()
        for cycle in find_cycles(self.graph, self.components):
            in_cycle.update(cycle)
            closing = self.edge_paths.get((cycle[0], cycle[-2]), ("steps",))
            self.report(
                "E301",
                f"steps form a cycle: {' → '.join(cycle)}",
                closing,
                "a step cannot (even indirectly) need itself: remove one of these needs or switch branches",
            )
        levels = topological_levels(self.graph)
        for step_id in self.graph.order:
            if step_id in levels.blocked and step_id not in in_cycle:
                waits_for = next(need for need in self.graph.needs[step_id] if need in levels.blocked)
                why = "is part of a cycle" if waits_for in in_cycle else "waits on a cycle"
                self.report(
                    "E302",
                    f"step '{step_id}' can never run: it needs '{waits_for}', which {why}",
                    self.edge_paths.get((step_id, waits_for), self._step_path(step_id)),
                )
        self._report_never_running(levels.levels)
        self._warn_unused_outputs()

    def _report_never_running(self, levels: list[list[str]]) -> None:
        """Steps that are always skipped: a constant false `if`, a switch branch that can never be
        chosen, or every step they need always skipped (the interpreter's skip rule)."""
        possible = {
            switch: possible_branches(parameters, _constant_truth)
            for switch, parameters in self.switches.items()
        }
        never: set[str] = set()
        index_of = {step.id: index for index, step in self.steps}
        for step_id in (step_id for level in levels for step_id in level):
            index = index_of[step_id]
            step = self.steps_by_id[step_id]
            why, path, hint = self._never_reason(step, index, possible, never)
            if why is not None:
                never.add(step_id)
                self.report("E302", f"step '{step_id}' can never run: {why}", path, hint)

    def _never_reason(
        self, step: StepDefinition, index: int, possible: dict[str, set[str]], never: set[str]
    ) -> tuple[str | None, DataPath, str | None]:
        if step.if_ is not None and _constant_truth(step.if_) is False:
            hint = "remove the step, or make `if` depend on inputs or step results"
            return "its `if` is always false", ("steps", index, "if"), hint
        for gate in self.gates.get(step.id, []):
            path = self.edge_paths[(step.id, gate.switch)]
            if gate.switch in never:
                return f"switch '{gate.switch}', which decides whether it runs, never runs", path, None
            if not possible[gate.switch] & set(gate.branches):
                branches = " or ".join(f"'{branch}'" for branch in gate.branches)
                hint = "a case whose `when` is always false, or that follows an always-true case, is never chosen"
                return f"switch '{gate.switch}' can never choose {branches}", path, hint
        needs = self.graph.needs[step.id]
        if needs and all(need in never for need in needs):
            listed = ", ".join(f"'{need}'" for need in needs)
            return f"every step it needs ({listed}) never runs", ("steps", index, "id"), None
        return None, (), None

    def _warn_unused_outputs(self) -> None:
        read_by_steps = {target for reads in self.reads.values() for target in reads} | self.mentioned
        for index, step in self.steps:
            if not KINDS[step.kind].pure or step.kind == "switch" or step.id in read_by_steps:
                continue
            if self.output_reads is None or step.id in self.output_reads:
                continue
            self.report(
                "W301",
                f"the output of step '{step.id}' ({step.kind}) is never read",
                ("steps", index, "id"),
                f"read it as ${{ {_step_output(step.id)} }} in a later step or in `outputs`, or remove the step",
            )

    def _step_path(self, step_id: str) -> DataPath:
        index = next(index for index, step in self.steps if step.id == step_id)
        return ("steps", index, "id")

    # plan ----------------------------------------------------------------------------------------

    def lower(self) -> Plan:
        definition = self.definition
        assert definition is not None
        steps = tuple(self._lower_step(index, step, definition.id) for index, step in self.steps)
        return Plan(
            source_format="native",
            definition_id=definition.id,
            name=definition.name or definition.id,
            version=definition.version or DEFAULT_VERSION,
            description=definition.description,
            input_schema=definition.inputs,
            connections=tuple(definition.connections),
            root=PlanBlock(mode="dag", steps=steps),
            outputs=definition.outputs,
            timeout_s=self.seconds.get(("timeout",)),
            max_concurrency=definition.max_concurrency,
            expression_mode="native",
        ).with_hash()

    def _lower_step(self, index: int, step: StepDefinition, definition_id: str) -> PlanStep:
        spec = KINDS[step.kind]
        base = ("steps", index)
        gates = self.gates.get(step.id, [])
        parameters = dict(step.with_)
        cases: tuple[SwitchCase, ...] = ()
        if step.kind == "switch":
            switch = self.switches[step.id]
            parameters = {}
            cases = (
                *(
                    SwitchCase(name=c.name, when=_program(c.when), then=",".join(c.then))
                    for c in switch.cases
                ),
                SwitchCase(name=DEFAULT_BRANCH, when=None, then=",".join(switch.default)),
            )
        elif step.kind == "transform":
            parameters["jq"] = strip_expression(parameters["jq"])
        for_each = None
        if step.for_each is not None:
            items = step.for_each.items
            for_each = ForEachSpec(
                items=_program(items) if isinstance(items, str) else json.dumps(items),
                concurrency=step.for_each.concurrency,
                batch_size=step.for_each.batch_size,
            )
        timeout_s = self.seconds.get((*base, "timeout"))
        if timeout_s is None and spec.activity and _is_number(parameters.get("timeout_s")):
            timeout_s = float(parameters["timeout_s"])
        if timeout_s is None:
            timeout_s = spec.default_timeout_s
        return PlanStep(
            id=step.id,
            path=f"{definition_id}/{step.id}",
            kind=StepKind(step.kind),
            name=step.name,
            description=step.description,
            needs=tuple(dict.fromkeys([*step.needs, *(gate.switch for gate in gates)])),
            with_=parameters,
            if_=_program(step.if_) if isinstance(step.if_, str) else None,
            for_each=for_each,
            retry=self._retry(step, base),
            timeout_s=timeout_s,
            on_error=step.on_error,
            connection=step.connection,
            local=self._runs_locally(step, timeout_s),
            reads=tuple(self.reads.get(step.id, ())),
            cases=cases,
            metadata={"gates": {gate.switch: list(gate.branches) for gate in gates}} if gates else {},
        )

    def _runs_locally(self, step: StepDefinition, timeout_s: float | None) -> bool:
        """`local` when given; else short http GETs and HEADs (safe to repeat) that do not batch.

        Everything else defaults to a regular activity: its completion is recorded by the server,
        so a worker that dies never runs a completed step again.
        """
        if not KINDS[step.kind].activity:
            return False
        if step.local is not None:
            return step.local
        batch_size = step.for_each.batch_size if step.for_each else 1
        method = step.with_.get("method", "GET") if isinstance(step.with_, dict) else None
        return (
            KINDS[step.kind].local_when_short
            and isinstance(method, str)
            and method.upper() in SAFE_HTTP_METHODS
            and timeout_s is not None
            and timeout_s <= LOCAL_ACTIVITY_MAX_TIMEOUT_S
            and batch_size == 1
        )

    def _retry(self, step: StepDefinition, base: DataPath) -> RetrySpec | None:
        if step.retry is None:
            return RetrySpec() if KINDS[step.kind].activity else None
        return RetrySpec(
            max_attempts=step.retry.max_attempts,
            initial_interval_s=self.seconds[(*base, "retry", "initial_interval")],
            backoff=step.retry.backoff,
            max_interval_s=self.seconds[(*base, "retry", "max_interval")],
            non_retryable=tuple(step.retry.non_retryable),
        )


def _program(value: str | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return strip_expression(value)


_TEMPLATE_HINT = (
    'an expression is ${ program }, ending at the } that matches its {: e.g. "Hello ${ .inputs.name }"'
)


def _problem_message(message: str, program: str) -> str:
    return f"{message} in ${{ {program} }}"


def _step_output(step_id: str) -> str:
    """How an expression reads a step's output: `.steps.fetch.output`, `.steps["fetch-all"].output`."""
    return f".steps.{step_id}.output" if "-" not in step_id else f'.steps["{step_id}"].output'


def _is_template(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _suggestion(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    listing = f"it takes: {', '.join(choices)}"
    return f"did you mean '{close[0]}'? {listing}" if close else listing


# Tokens a program may hold and still not read its input: literals, operators and control words.
_CONSTANT_WORDS = frozenset(
    {"true", "false", "null", "not", "and", "or", "if", "then", "elif", "else", "end"}
)
_CONSTANT_SYMBOLS = frozenset(
    {"(", ")", "[", "]", "{", "}", ":", ",", "|", "==", "!=", "<", "<=", ">", ">=", "+", "-", "/", "%", "//"}
)


def _constant_truth(value: str | bool) -> bool | None:
    """True/False when a condition is a constant (`false`, `1 > 2`), None when it depends on data."""
    if isinstance(value, bool):
        return value
    try:
        program = strip_expression(value)
    except ExpressionError:
        return None
    for token in scan(program).tokens:
        constant = (
            token.kind in ("number", "key")
            or (token.kind == "string" and token.value is not None)
            or (token.kind == "call" and token.text in _CONSTANT_WORDS)
            or (token.kind == "symbol" and token.text in _CONSTANT_SYMBOLS)
        )
        if not constant:
            return None
    if check_program(program):
        return None
    try:
        return truthy(evaluate(program, None))
    except ExpressionError:
        return None
