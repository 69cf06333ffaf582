"""Contract: the Pipecat internals voicebot relies on are still where pipecat_compat expects."""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect

import pytest

from voicebot import pipecat_compat


def test_the_pinned_pipecat_is_installed() -> None:
    assert importlib.metadata.version("pipecat-ai") == pipecat_compat.PIPECAT_VERSION


@pytest.mark.parametrize("function", sorted(pipecat_compat.CONTRACT))
def test_each_private_detail_is_still_there(function: str) -> None:
    owner, names = pipecat_compat.CONTRACT[function]
    module, _, cls_name = owner.rpartition(".")
    cls = getattr(importlib.import_module(module), cls_name)
    source = "".join(
        inspect.getsource(c) for c in cls.__mro__ if c.__module__.startswith("pipecat")
    )
    missing = [n for n in names if not hasattr(cls, n) and f"self.{n} =" not in source]
    assert not missing, (
        f"pipecat_compat.{function} relies on {owner}.{', '.join(missing)}, which this Pipecat "
        f"({importlib.metadata.version('pipecat-ai')}) no longer has: update pipecat_compat.py"
    )


def test_nothing_else_touches_pipecat_privates() -> None:
    """Only pipecat_compat assigns Pipecat's private attributes or skips a parent __init__."""
    from pathlib import Path

    root = Path(pipecat_compat.__file__).parent
    offenders = []
    for path in root.rglob("*.py"):
        if path.name == "pipecat_compat.py":
            continue
        text = path.read_text()
        for needle in (
            "._text_aggregator",
            "service._process_context(",
            "VADAnalyzer.__init__(",
            "BaseSmartTurn.__init__(",
            "TTSService.__init__(",
            "service.push_frame =",
        ):
            if needle in text:
                offenders.append(f"{path.relative_to(root)}: {needle}")
    assert not offenders, offenders


@pytest.mark.parametrize(("module", "message"), pipecat_compat.ROUTINE_WARNINGS)
def test_routine_warnings_are_still_logged_where_expected(module: str, message: str) -> None:
    source = inspect.getsource(importlib.import_module(module))
    assert f'logger.warning("{message}' in source, (
        f"{module} no longer logs {message!r}: update pipecat_compat.ROUTINE_WARNINGS"
    )
