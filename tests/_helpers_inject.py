"""An exception at every place in turn: where a signal handler's can land, or at every bytecode.

``raise_where_a_signal_can(n, modules)`` raises at the ``n``-th place in the code of
``modules`` where CPython runs a signal handler (its eval-breaker checks), and only there:
what a real ``KeyboardInterrupt`` can do. ``raise_at_opcode(n, modules)`` raises at the
``n``-th bytecode instruction, more than any signal can reach: for code that must hold even
then (it has no ``with`` of a lock: an exception between a ``with`` body's end and its
``__exit__`` call skips the release). A test loops ``n`` from 1 until the call runs through.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from types import CodeType, FrameType, FunctionType, ModuleType
from typing import Any


class Injected(BaseException):
    """What a signal handler raising (``KeyboardInterrupt``) does to the code it lands in."""


def module_codes(module: ModuleType) -> list[CodeType]:
    """Every code object of ``module``'s functions and methods, nested ones too."""
    found: list[CodeType] = []

    def add(code: CodeType) -> None:
        found.append(code)
        for const in code.co_consts:
            if isinstance(const, CodeType):
                add(const)

    for obj in vars(module).values():
        for member in [obj, *vars(obj).values()] if isinstance(obj, type) else [obj]:
            func = member.fget if isinstance(member, property) else member
            code = getattr(func, "__code__", None)
            if isinstance(code, CodeType) and func.__module__ == module.__name__:
                add(code)
    return found


@contextlib.contextmanager
def raise_at_opcode(
    n: int,
    modules: tuple[ModuleType, ...],
    action: Callable[[], None] | None = None,
    exc: type[BaseException] = Injected,
) -> Iterator[Callable[[], int]]:
    """Raise ``exc`` (or run ``action``) at the ``n``-th bytecode instruction run by the
    code of ``modules``; yields a function telling how many were run."""
    seen = 0

    def hit() -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            if action is not None:
                action()  # what a signal handler that does not raise does there
                return
            raise exc

    if sys.version_info >= (3, 12):  # opcode tracing through settrace is broken in 3.12.1
        mon = sys.monitoring
        tool = mon.DEBUGGER_ID
        mon.use_tool_id(tool, "hardtemp-tests")
        codes = [code for module in modules for code in module_codes(module)]
        for code in codes:
            mon.set_local_events(tool, code, mon.events.INSTRUCTION)
        mon.register_callback(tool, mon.events.INSTRUCTION, lambda code, offset: hit())
        try:
            yield lambda: seen
        finally:
            for code in codes:
                mon.set_local_events(tool, code, 0)
            mon.register_callback(tool, mon.events.INSTRUCTION, None)
            mon.free_tool_id(tool)
        return

    names = {module.__name__ for module in modules}

    def local(frame: FrameType, event: str, arg: object) -> Any:
        if event == "opcode" and n > seen:
            hit()
        return local

    def call(frame: FrameType, event: str, arg: object) -> Any:
        if frame.f_globals.get("__name__") not in names:
            return None
        frame.f_trace_opcodes = True
        return local

    sys.settrace(call)
    try:
        yield lambda: seen
    finally:
        sys.settrace(None)


@contextlib.contextmanager
def raise_where_a_signal_can(
    n: int, modules: tuple[ModuleType, ...], exc: type[BaseException] = Injected
) -> Iterator[Callable[[], int]]:
    """Raise ``exc`` at the ``n``-th place in the code of ``modules`` where CPython runs a
    signal handler (its eval-breaker checks), and only there; yields a function telling how
    many such places were passed.

    Those places: the start of a function of ours (``RESUME``), a backward jump in ours,
    the start of a Python function ours calls (its ``RESUME``: the exception unwinds into
    our call), and the return of a C function ours calls (the check after ``CALL``). Not
    between two other instructions: :func:`raise_at_opcode` raises there too, which no
    signal can, and which no Python code survives (between the last instruction of a
    ``with`` body and the call of ``__exit__``, an exception skips ``__exit__``: a
    ``threading.Lock`` stays held, which a real ``KeyboardInterrupt`` cannot cause).
    """
    seen = 0

    def hit() -> None:
        nonlocal seen
        seen += 1
        if seen == n:
            raise exc

    if sys.version_info >= (3, 12):
        mon = sys.monitoring
        ev = mon.events
        tool = mon.DEBUGGER_ID
        mon.use_tool_id(tool, "hardtemp-tests")
        codes = [code for module in modules for code in module_codes(module)]

        def on_call(code: CodeType, offset: int, callee: object, arg0: object) -> None:
            func = getattr(callee, "__func__", callee)
            if isinstance(func, type):  # a class: its __init__ in Python, if it is
                func = vars(func).get("__init__")
            if isinstance(func, FunctionType):  # a Python callee: its RESUME's check
                hit()

        def on_jump(code: CodeType, offset: int, destination: int) -> None:
            if destination < offset:  # JUMP_BACKWARD checks; a forward jump does not
                hit()

        callbacks: dict[int, Callable[..., None]] = {
            ev.PY_START: lambda code, offset: hit(),
            ev.CALL: on_call,
            ev.C_RETURN: lambda code, offset, callee, arg0: hit(),
            ev.JUMP: on_jump,
        }
        for event, callback in callbacks.items():
            mon.register_callback(tool, event, callback)
        for code in codes:
            mon.set_local_events(tool, code, ev.PY_START | ev.CALL | ev.JUMP)  # + C_RETURN
        try:
            yield lambda: seen
        finally:
            for code in codes:
                mon.set_local_events(tool, code, 0)
            for event in callbacks:
                mon.register_callback(tool, event, None)
            mon.free_tool_id(tool)
        return

    # 3.11: the profiler's events (no backward jumps: the caller's loops are not covered).
    names = {module.__name__ for module in modules}

    def ours(frame: FrameType | None) -> bool:
        return frame is not None and frame.f_globals.get("__name__") in names

    def profile(frame: FrameType, event: str, arg: object) -> None:
        if n <= seen:
            return
        if event == "call" and (ours(frame) or ours(frame.f_back)):
            hit()  # our function's start, or a Python callee's of ours
        elif event == "c_return" and ours(frame):
            hit()  # a C function of ours returned (a raise here unsets the profiler)

    sys.setprofile(profile)
    try:
        yield lambda: seen
    finally:
        sys.setprofile(None)
