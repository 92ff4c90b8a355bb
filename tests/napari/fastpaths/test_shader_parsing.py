"""vispy's shader comment stripping answered in linear time, with the same text."""

from __future__ import annotations

import random
import re
from pathlib import Path

from napari_conch._napari.fastpaths import shader_parsing as P


def _by_regex(code: str) -> str:
    return re.sub(P.LINE_COMMENT_PATTERN, r"\1", code, flags=re.M)


def test_the_same_text_as_vispys_regular_expression():
    rng = random.Random(7)
    cases = ["", "//", "///", "a//b//c", "x // y\n// z\n\nw", "a\r// b\r\nc//", "\n\n//\n"]
    for _ in range(2000):
        cases.append("".join(rng.choice("/a \n\r*") for _ in range(rng.randrange(60))))
    for code in cases:
        assert P.strip_line_comments(code) == _by_regex(code), repr(code)


def test_the_same_text_for_vispys_own_shaders():
    import vispy

    sources = sorted((Path(vispy.__file__).parent / "glsl").rglob("*.glsl"))
    assert sources, "vispy ships its GLSL sources"
    for source in sources:
        code = source.read_text()
        assert P.strip_line_comments(code) == _by_regex(code), source.name


def test_installed_vispy_programs_find_the_same_variables(monkeypatch):
    from vispy.gloo import program

    monkeypatch.setattr(program, "re", re)  # put back after the test
    assert P.speed_up_shader_parsing()
    assert isinstance(program.re, P.LinearCommentStripping)
    vert = "uniform mat4 u_m; // the transform\nattribute vec2 a_pos; // uniform float hidden;\n"
    vert += "void main() { gl_Position = u_m * vec4(a_pos, 0.0, 1.0); }\n"
    frag = "uniform vec4 u_color; //// four\nvoid main() { gl_FragColor = u_color; }\n"
    fast = program.Program(vert, frag).variables
    monkeypatch.setattr(program, "re", re)
    assert program.Program(vert, frag).variables == fast
    assert sorted(name for _, _, name in fast) == ["a_pos", "u_color", "u_m"]


def test_other_uses_of_re_pass_through_unchanged():
    view = P.LinearCommentStripping(re)
    assert view.compile is re.compile and view.M == re.M
    assert view.sub(r"a+", "b", "caaat") == "cbt"
    assert view.sub(P.LINE_COMMENT_PATTERN, r"\1", "a // b", flags=re.M) == "a "
    assert view.sub(P.LINE_COMMENT_PATTERN, r"\1", "a // b\nc // d", count=1, flags=re.M) == (
        "a \nc // d"
    )  # a call shaped otherwise is re's own


def test_installing_twice_or_over_someone_elses_re_changes_nothing(monkeypatch):
    from vispy.gloo import program

    monkeypatch.setattr(program, "re", re)  # put back after the test
    assert P.speed_up_shader_parsing()
    installed = program.re
    assert P.speed_up_shader_parsing() and program.re is installed
    other = object()
    monkeypatch.setattr(program, "re", other)
    assert not P.speed_up_shader_parsing() and program.re is other
