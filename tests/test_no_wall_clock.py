"""No test reads the wall clock to decide its outcome: how fast a machine is must not pass or fail a test.

A test that needs time injects a fake clock (see ``bench_gpu.clock`` in tests/benchmarks/test_bench_gpu.py).
A clock read that only guards against a hang (a deadline for a subprocess) carries the comment
``# clock: hang guard`` on its line. Reported timings may be checked for structure (>= 0, parts within the
total), never against a number of seconds.
"""

import re
from pathlib import Path

TESTS = Path(__file__).resolve().parent
CLOCK = re.compile(r"\btime\.(time|perf_counter|monotonic|process_time)(_ns)?\(|\bdatetime\.(now|utcnow)\(|"
                   r"from time import")
SECONDS_BOUND = re.compile(r"assert .*seconds\S*\s*<=?\s*\d|assert .*\d\s*>=?\s*\S*seconds")


def offending_lines(text: str) -> list[str]:
    """The lines of a test file that read the clock without saying why, or bound a timing by a number.

    >>> offending_lines("start = time.perf_counter()\\nassert seconds < 10\\nx = 1")
    ['start = time.perf_counter()', 'assert seconds < 10']
    >>> offending_lines("deadline = time.monotonic() + 60  # clock: hang guard")
    []
    """
    found = []
    for line in text.splitlines():
        code = line.strip()
        if (CLOCK.search(code) and "clock: hang guard" not in code) or SECONDS_BOUND.search(code):
            found.append(code)
    return found


def test_no_test_decides_by_the_wall_clock():
    this = Path(__file__).resolve()
    offenders = {str(p.relative_to(TESTS)): lines for p in sorted(TESTS.rglob("*.py")) if p != this
                 for lines in [offending_lines(p.read_text())] if lines}
    assert offenders == {}, f"clock reads in tests (fake the clock, or mark a hang guard): {offenders}"


def test_the_rule_sees_a_planted_clock_read():
    assert offending_lines("    elapsed = time.time() - start") == ["elapsed = time.time() - start"]
    assert offending_lines('    assert report["total_seconds"] < 5.0') == ['assert report["total_seconds"] < 5.0']
