"""Every ```python block of the README runs as written and prints what its comments say.

The rule for printed values: a line of a block whose statement is a ``print(...)`` call and which
ends in a ``# comment`` states what that call prints, unless the comment is prose:

1. The *value* is the comment up to its first ``", "`` outside brackets and quotes (what follows is
   prose: ``# 802426, as NAS-Bench-201 lists it``); otherwise the whole comment
   (``# {'kernel': ('3x3', '5x5')}``, ``# 16 ('3x3', '5x5')``).
2. The value is checked when every space-separated part of it (outside brackets and quotes) is a
   Python literal (``15625``, ``0.5``, ``('3x3', '5x5')``, ``{...}``, ``None``) or a word holding a
   digit or one of ``_ | ~ = < > : .`` (``nor_conv_3x3``, ``tau=0.71``, an NB201 string). A part that
   is a plain alphabetic word makes the comment prose (``# the logits``): it is not checked.
3. A checked value must equal, character for character, the text that call printed (without the
   final newline), every time the line ran; and the line must have run.
"""

import ast
import builtins
import io
import re
import sys
import tokenize
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


def test_readme_has_examples():
    assert len(BLOCKS) >= 2


def _top_level_split(text: str, separator: str) -> list[str]:
    """``text`` split at ``separator`` where it is outside brackets and quotes."""
    parts, depth, quote, start, i = [], 0, None, 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            quote = None if c == quote else quote
        elif c in "'\"":
            quote = c
        elif c in "([{":
            depth += 1
        elif c in ")]}":
            depth -= 1
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            start = i = i + len(separator)
            continue
        i += 1
    return [*parts, text[start:]]


def _is_value_part(part: str) -> bool:
    try:
        ast.literal_eval(part)
        return True
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return re.search(r"[0-9_|~=<>:.]", part) is not None


def expected_value(comment: str) -> str | None:
    """The value a ``print`` line's comment states (rule in the module docstring), None for prose."""
    value = _top_level_split(comment.strip(), ", ")[0].strip()
    parts = [p for p in _top_level_split(value, " ") if p]
    return value if parts and all(_is_value_part(p) for p in parts) else None


def stated_prints(source: str) -> dict[tuple[int, int], str]:
    """(first line, last line) of each ``print(...)`` statement with a value comment -> that value."""
    comments = {tok.start[0]: tok.string[1:] for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT}
    stated = {}
    for node in ast.walk(ast.parse(source)):
        call = node.value if isinstance(node, ast.Expr) else None
        if isinstance(call, ast.Call) and isinstance(call.func, ast.Name) and call.func.id == "print":
            value = expected_value(comments.get(node.end_lineno, ""))
            if value is not None:
                stated[node.lineno, node.end_lineno] = value
    return stated


def test_the_printed_value_rule():
    assert expected_value(" 15625") == "15625"
    assert expected_value(" 802426, as NAS-Bench-201 lists it") == "802426"
    assert expected_value(" {'kernel': ('3x3', '5x5'), 'act': ('relu', 'gelu')}") == \
        "{'kernel': ('3x3', '5x5'), 'act': ('relu', 'gelu')}"
    assert expected_value(" 16 ('3x3', '5x5')") == "16 ('3x3', '5x5')"
    assert expected_value(" nor_conv_3x3") == "nor_conv_3x3"
    assert expected_value(" kendall_tau=0.71 spearman=0.9") == "kendall_tau=0.71 spearman=0.9"
    for prose in (" the logits", " prints the loss, then the accuracy", " single-path forward", ""):
        assert expected_value(prose) is None, prose
    source = "print(1 + 1)  # 2\nprint('x')  # the letter\nx = 3  # 3\nprint(\n    4,\n)  # 4, in prose\n"
    assert stated_prints(source) == {(1, 1): "2", (4, 6): "4"}


def test_readme_states_printed_values():
    assert sum(len(stated_prints(block)) for block in BLOCKS) >= 1


@pytest.fixture
def registries_restored():
    """What a block adds to gmgraph's tables (the README's extension example registers a dataset, a sampler, a
    splitter and a search) is removed afterwards, so later tests in this process see the built-in tables."""
    from gmgraph import registry

    tables = [t for t in vars(registry).values() if isinstance(t, registry.Table)]
    before = [set(table.names()) for table in tables]
    yield
    for table, names in zip(tables, before):
        for name in set(table.names()) - names:
            del table[name]


@pytest.mark.parametrize("index", range(len(BLOCKS)))
def test_readme_block_runs(index, capsys, registries_restored):
    source = BLOCKS[index]
    name = f"README.md block {index}"
    printed: dict[int, list[str]] = {}

    def recording_print(*args, **kwargs):
        """``print`` for the block: prints as usual and records the text by the line that printed it."""
        frame = sys._getframe(1)
        if frame.f_code.co_filename == name and kwargs.get("file") is None:
            text = io.StringIO()
            builtins.print(*args, **{**kwargs, "file": text})
            printed.setdefault(frame.f_lineno, []).append(text.getvalue().removesuffix("\n"))
        builtins.print(*args, **kwargs)

    exec(compile(source, name, "exec"), {"__name__": "readme", "print": recording_print})
    for (first, last), value in stated_prints(source).items():
        outputs = [text for line in range(first, last + 1) for text in printed.get(line, [])]
        assert outputs, f"{name}, line {first}: the print stating {value!r} never ran"
        for text in outputs:
            assert text == value, f"{name}, line {first}: printed {text!r}, its comment states {value!r}"
