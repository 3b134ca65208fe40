"""Every Kafka client the service makes gets the security options: each construction of an
aiokafka (or kafka-python) client in the shipped code unpacks ``client_options(...)`` or
``producer_options(...)``, directly or through a dict built from one in the same function,
and nothing passes ``bootstrap_servers=`` by hand (which is how a new call site would forget
TLS and SASL)."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("handwerk", "consumer", "producer", "outbox", "api")
CLIENTS = {"AIOKafkaConsumer", "AIOKafkaProducer", "AIOKafkaAdminClient",
           "KafkaConsumer", "KafkaProducer", "KafkaAdminClient"}
OPTION_BUILDERS = {"client_options", "producer_options"}


def _name(node: ast.expr) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return None


def _is_builder_call(node: ast.expr) -> bool:
    return isinstance(node, ast.Call) and _name(node.func) in OPTION_BUILDERS


def _dicts_from_builders(scope: ast.AST) -> set[str]:
    """Names assigned, in ``scope``, a dict display that unpacks an option builder."""
    names: set[str] = set()
    for node in ast.walk(scope):
        value, targets = None, []
        if isinstance(node, ast.Assign):
            value, targets = node.value, node.targets
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            value, targets = node.value, [node.target]
        if isinstance(value, ast.Dict) and any(
                k is None and _is_builder_call(v) for k, v in zip(value.keys, value.values, strict=True)):
            names.update(t.id for t in targets if isinstance(t, ast.Name))
        elif value is not None and _is_builder_call(value):
            names.update(t.id for t in targets if isinstance(t, ast.Name))
    return names


def violations(source: str, filename: str = "<string>") -> tuple[list[str], int]:
    """(problems, number of client constructions seen) in one module's source."""
    tree = ast.parse(source, filename)
    problems: list[str] = []
    seen = 0
    scopes: list[ast.AST] = [n for n in ast.walk(tree)
                             if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)] + [tree]
    checked: set[int] = set()
    for scope in scopes:
        allowed = _dicts_from_builders(scope)
        for node in ast.walk(scope):
            if not isinstance(node, ast.Call) or id(node) in checked:
                continue
            checked.add(id(node))
            where = f"{filename}:{node.lineno}"
            if any(k.arg == "bootstrap_servers" for k in node.keywords):
                problems.append(f"{where}: bootstrap_servers= by hand (use client_options)")
            if _name(node.func) not in CLIENTS:
                continue
            seen += 1
            unpacked = [k.value for k in node.keywords if k.arg is None]
            if not any(_is_builder_call(v) or (isinstance(v, ast.Name) and v.id in allowed)
                       for v in unpacked):
                problems.append(f"{where}: {_name(node.func)} without **client_options(settings)")
    return problems, seen


def test_every_kafka_client_in_the_service_gets_the_security_options() -> None:
    problems: list[str] = []
    seen = 0
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            found, count = violations(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))
            problems += found
            seen += count
    assert problems == []
    # consumer + DLQ producer, DLQ reader and replayer (2 consumers, 1 producer), lag monitor
    # (2 consumers), reindex replay consumer, topic creation's admin client
    assert seen >= 9


def test_the_check_catches_a_client_made_without_the_options() -> None:
    bad = (
        "def f(s):\n"
        "    a = AIOKafkaConsumer('t', bootstrap_servers=bootstrap(s))\n"
        "    b = AIOKafkaProducer(**{'acks': 'all'})\n"
        "    common = {'client_id': 'x'}\n"
        "    c = aiokafka.AIOKafkaConsumer(**common)\n"
    )
    problems, seen = violations(bad)
    assert seen == 3 and len(problems) == 4
    good = (
        "def f(s):\n"
        "    common = {**client_options(s), 'client_id': 'x'}\n"
        "    a = AIOKafkaConsumer('t', **common)\n"
        "    b = AIOKafkaProducer(**producer_options(s))\n"
        "    c = AIOKafkaAdminClient(**client_options(s), request_timeout_ms=1)\n"
    )
    assert violations(good) == ([], 3)
